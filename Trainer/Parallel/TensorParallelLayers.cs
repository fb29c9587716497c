using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static Trainer.Parallel.TensorParallelOps;

namespace Trainer.Parallel;

/// <summary>
/// What the two parallel linear layers share: this rank's weight shard, the bias (this rank's entries for a
/// column-parallel layer, the whole bias for a row-parallel one), how the weight is cut from the full layer's
/// (<see cref="Spec"/>: rows for column-parallel, columns for row-parallel), the TP group and whether SP is on.
/// </summary>
public abstract class ParallelLinear : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    public readonly Parameter? bias;
    private protected readonly ICommunicator tp;
    private protected readonly bool sequenceParallel;

    /// <summary>How this layer's weight is cut from the full layer's.</summary>
    public ShardSpec Spec { get; }

    private protected ParallelLinear(string name, Tensor localWeight, Tensor? bias, ShardSpec spec, ICommunicator tp, bool sequenceParallel)
        : base(name)
    {
        weight = new Parameter(localWeight);
        this.bias = bias is null ? null : new Parameter(bias);
        Spec = spec; this.tp = tp; this.sequenceParallel = sequenceParallel;
        RegisterComponents();   // the subclasses add no modules or tensors, only flags
    }
}

/// <summary>
/// y = x Aᵀ + b with A's rows (output features) split over the TP group: this rank holds rows
/// <see cref="Spec"/>.Slice(A) and the matching bias entries. Input: replicated (B,T,C) — or, under sequence
/// parallelism, this rank's (B,T/tp,C), all-gathered along T first. Output: this rank's (B,T,out/tp), or the full
/// (B,T,out) when <c>gatherOutput</c>.
/// </summary>
public sealed class ColumnParallelLinear : ParallelLinear
{
    readonly bool gatherOutput;

    ColumnParallelLinear(Tensor localWeight, Tensor? localBias, ShardSpec spec, ICommunicator tp, bool gatherOutput, bool sequenceParallel)
        : base(nameof(ColumnParallelLinear), localWeight, localBias, spec, tp, sequenceParallel) => this.gatherOutput = gatherOutput;

    /// <summary>This rank's shard of the full layer (<paramref name="fullWeight"/> (out,in), <paramref name="fullBias"/> (out)).
    /// <paramref name="rows"/>: how the output dim is cut (dim 0; default: one even block, which must divide by TP) —
    /// e.g. <c>ShardSpec.Fused(0, C, C, C)</c> for GPT-2's [q | k | v], or <c>ShardSpec.Even</c> for a padded vocabulary.</summary>
    public static ColumnParallelLinear FromFull(Tensor fullWeight, Tensor? fullBias, ICommunicator tp,
        bool gatherOutput = false, bool sequenceParallel = false, ShardSpec? rows = null)
    {
        var spec = rows ?? ShardSpec.Fused(0, fullWeight.shape[0]);
        if (spec.Dim != 0) throw new ArgumentException("a column-parallel layer is cut along its output dim (0)");
        using var _ = no_grad();
        return new ColumnParallelLinear(spec.Slice(fullWeight, tp.Rank, tp.Size),
            fullBias is null ? null : spec.Slice(fullBias, tp.Rank, tp.Size), spec, tp, gatherOutput, sequenceParallel);
    }

    public override Tensor forward(Tensor x) => Apply(x, weight, bias, tp, sequenceParallel, gatherOutput, Spec);

    /// <summary>The column-parallel product for a weight held elsewhere (GPT-2's head tied to the vocab-parallel wte).
    /// With <paramref name="gatherOutput"/>, the gathered features are put back in the full layer's order (and padding
    /// dropped) as <paramref name="rows"/> says.</summary>
    public static Tensor Apply(Tensor x, Tensor localWeight, Tensor? localBias, ICommunicator tp, bool sequenceParallel, bool gatherOutput, ShardSpec? rows = null)
    {
        using var scope = NewDisposeScope();
        var input = sequenceParallel ? GatherFromSequenceParallelRegion(x, tp) : CopyToTensorParallelRegion(x, tp);
        var y = nn.functional.linear(input, localWeight, localBias);
        if (gatherOutput)
        {
            y = GatherFromTensorParallelRegion(y, tp);   // rank order: [rank 0's features | rank 1's | …]
            if (rows is not null && (rows.Blocks.Length > 1 || rows.Blocks[0] != rows.FullLength))
                y = (rows with { Dim = (int)y.dim() - 1 }).Unslice(y.chunk(tp.Size, -1));
        }
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// y = x Aᵀ + b with A's columns (input features) split over the TP group: this rank holds columns
/// [r·in/tp, (r+1)·in/tp) and the whole bias, which is added once, after the partial products are summed
/// (all-reduce, or reduce-scatter along T under sequence parallelism — then the output is this rank's (B,T/tp,out)).
/// Input: this rank's (B,T,in/tp) (<c>inputIsParallel</c>, the default), or the full (B,T,in), split here.
/// The bias is replicated on every TP rank; under SP its gradient covers only the local positions and must be
/// all-reduced over TP after backward (<see cref="TensorParallelLm.AllReduceSequenceParallelGrads"/>).
/// </summary>
public sealed class RowParallelLinear : ParallelLinear
{
    readonly bool inputIsParallel;

    RowParallelLinear(Tensor localWeight, Tensor? fullBias, ShardSpec spec, ICommunicator tp, bool inputIsParallel, bool sequenceParallel)
        : base(nameof(RowParallelLinear), localWeight, fullBias, spec, tp, sequenceParallel) => this.inputIsParallel = inputIsParallel;

    /// <summary>This rank's shard of the full layer (<paramref name="fullWeight"/> (out,in), <paramref name="fullBias"/> (out)).</summary>
    public static RowParallelLinear FromFull(Tensor fullWeight, Tensor? fullBias, ICommunicator tp,
        bool inputIsParallel = true, bool sequenceParallel = false)
    {
        if (sequenceParallel && !inputIsParallel) throw new ArgumentException("a sequence-parallel RowParallelLinear needs a parallel input");
        var spec = ShardSpec.Fused(1, fullWeight.shape[1]);
        using var _ = no_grad();
        return new RowParallelLinear(spec.Slice(fullWeight, tp.Rank, tp.Size), fullBias?.detach().clone(), spec, tp, inputIsParallel, sequenceParallel);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var input = inputIsParallel ? x : ScatterToTensorParallelRegion(x, tp);
        var partial = nn.functional.linear(input, weight);
        var y = sequenceParallel ? ReduceScatterToSequenceParallelRegion(partial, tp) : ReduceFromTensorParallelRegion(partial, tp);
        if (bias is not null) y = y + bias;
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Token embedding with the vocabulary rows split over the TP group: rank r holds rows [r·Vl, (r+1)·Vl), Vl = ceil(V/tp)
/// (the full table is padded with zero rows to tp·Vl when V does not divide). Ids outside the local range look up row 0
/// and their output is zeroed; the per-rank outputs are then summed (all-reduce), or reduce-scattered along T under
/// sequence parallelism (output: this rank's (B,T/tp,C)).
/// </summary>
public sealed class VocabParallelEmbedding : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    readonly ICommunicator tp;
    readonly bool sequenceParallel;

    /// <summary>How the rows are cut from the full table.</summary>
    public ShardSpec Spec { get; }
    /// <summary>First vocabulary id held by this rank.</summary>
    public long VocabStart { get; }
    /// <summary>Rows held by this rank (Vl).</summary>
    public long LocalVocab => weight.shape[0];

    VocabParallelEmbedding(Tensor localWeight, ShardSpec spec, ICommunicator tp, bool sequenceParallel) : base(nameof(VocabParallelEmbedding))
    {
        weight = new Parameter(localWeight);
        Spec = spec; this.tp = tp; this.sequenceParallel = sequenceParallel;
        VocabStart = tp.Rank * weight.shape[0];   // (the Parameter took over localWeight's handle)
        RegisterComponents();
    }

    /// <summary>This rank's rows of the full table <paramref name="fullWeight"/> (V,C).</summary>
    public static VocabParallelEmbedding FromFull(Tensor fullWeight, ICommunicator tp, bool sequenceParallel = false)
    {
        var spec = ShardSpec.Even(0, fullWeight.shape[0], tp.Size);
        using var _ = no_grad();
        return new VocabParallelEmbedding(spec.Slice(fullWeight, tp.Rank, tp.Size), spec, tp, sequenceParallel);
    }

    public override Tensor forward(Tensor idx)
    {
        using var scope = NewDisposeScope();
        var outside = idx.lt(VocabStart).logical_or(idx.ge(VocabStart + LocalVocab));
        var local = (idx - VocabStart).masked_fill(outside, 0);
        var shape = idx.shape.Append(weight.shape[1]).ToArray();
        var rows = weight.index_select(0, local.reshape(-1)).view(shape);
        rows = rows.masked_fill(outside.unsqueeze(-1), 0.0);
        var y = sequenceParallel ? ReduceScatterToSequenceParallelRegion(rows, tp) : ReduceFromTensorParallelRegion(rows, tp);
        return y.MoveToOuterDisposeScope();
    }
}
