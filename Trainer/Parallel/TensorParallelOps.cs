using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Trainer.Parallel;

/// <summary>
/// Megatron's conjugate communication operators ("f" and "g") for tensor and sequence parallelism, as TorchSharp custom
/// autograd functions. Each call names the <see cref="ICommunicator"/> of its TP group; the function stores it in its
/// autograd context, so backward (which libtorch may run on another thread) talks to the same group.
/// <para>Layout: activations stay (B,T,C) as in the single-device models. Collectives split and join along dim 0, so the
/// sequence-parallel operators move the sequence dim to the front (transpose + contiguous) around each collective and
/// back afterwards; the last-dim operators do the same with the last dim. This costs one copy per SP collective, which
/// Megatron avoids by keeping (T,B,C) throughout; it keeps the TP models' code the same as the single-device models'.</para>
/// </summary>
public static class TensorParallelOps
{
    /// <summary>f: forward identity, backward all-reduce (sum) — the input of a column-parallel layer.</summary>
    public static Tensor CopyToTensorParallelRegion(Tensor x, ICommunicator tp) =>
        tp.Size == 1 ? x : CopyToRegion.apply(x, tp, LastDim);

    /// <summary>g: forward all-reduce (sum), backward identity — the output of a row-parallel layer.</summary>
    public static Tensor ReduceFromTensorParallelRegion(Tensor x, ICommunicator tp) =>
        tp.Size == 1 ? x : ReduceFromRegion.apply(x, tp, LastDim);

    /// <summary>Forward: this rank's chunk of the last dim; backward: all-gather along the last dim.</summary>
    public static Tensor ScatterToTensorParallelRegion(Tensor x, ICommunicator tp) =>
        tp.Size == 1 ? x : ScatterToRegion.apply(x, tp, LastDim);

    /// <summary>Forward: all-gather along the last dim (rank order); backward: this rank's chunk of the gradient.</summary>
    public static Tensor GatherFromTensorParallelRegion(Tensor x, ICommunicator tp) =>
        tp.Size == 1 ? x : GatherFromRegion.apply(x, tp, LastDim);

    /// <summary>Forward: reduce-scatter (sum) along <paramref name="seqDim"/> (each rank keeps its T/tp positions);
    /// backward: all-gather along it. The output of a row-parallel layer (and of the embedding) under SP.</summary>
    public static Tensor ReduceScatterToSequenceParallelRegion(Tensor x, ICommunicator tp, int seqDim = 1) =>
        tp.Size == 1 ? x : ReduceScatterToSequence.apply(x, tp, seqDim);

    /// <summary>Forward: all-gather along <paramref name="seqDim"/>; backward: reduce-scatter (sum) along it, because
    /// every rank's column-parallel layer contributes a partial gradient for every position. The input of a
    /// column-parallel layer under SP.</summary>
    public static Tensor GatherFromSequenceParallelRegion(Tensor x, ICommunicator tp, int seqDim = 1) =>
        tp.Size == 1 ? x : GatherFromSequence.apply(x, tp, seqDim);

    /// <summary>Sums the gradients of <paramref name="parameters"/> over the group, in place (parameters without a
    /// gradient are skipped; every rank must pass the same list). The SP finalize step for TP-replicated parameters.</summary>
    public static void AllReduceGrads(IEnumerable<Tensor> parameters, ICommunicator tp)
    {
        if (tp.Size == 1) return;
        using var _ = no_grad();
        foreach (var p in parameters)
            if (p.grad is { } g) tp.AllReduce(g, ReduceOp.Sum);
    }

    // ---- collectives along an arbitrary dim (the communicator works on dim 0 of contiguous tensors) ----

    /// <summary>Concatenation of every rank's <paramref name="x"/> along <paramref name="dim"/>, in rank order.</summary>
    public static Tensor AllGatherAlong(Tensor x, ICommunicator tp, int dim)
    {
        using var scope = NewDisposeScope();
        dim = Normalize(x, dim);
        var front = x.movedim(new long[] { dim }, new long[] { 0 }).contiguous();
        var shape = front.shape.ToArray(); shape[0] *= tp.Size;
        var gathered = empty(shape, dtype: x.dtype, device: x.device);
        tp.AllGather(gathered, front);
        return gathered.movedim(new long[] { 0 }, new long[] { dim }).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>This rank's chunk of the sum over ranks of <paramref name="x"/>, split evenly along <paramref name="dim"/>.</summary>
    public static Tensor ReduceScatterAlong(Tensor x, ICommunicator tp, int dim)
    {
        using var scope = NewDisposeScope();
        dim = Normalize(x, dim);
        long n = x.shape[dim];
        if (n % tp.Size != 0) throw new ArgumentException($"cannot reduce-scatter a dim of {n} over {tp.Size} ranks");
        var front = x.movedim(new long[] { dim }, new long[] { 0 }).contiguous();
        var shape = front.shape.ToArray(); shape[0] /= tp.Size;
        var mine = empty(shape, dtype: x.dtype, device: x.device);
        tp.ReduceScatter(mine, front, ReduceOp.Sum);
        return mine.movedim(new long[] { 0 }, new long[] { dim }).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>This rank's chunk of <paramref name="x"/> split evenly along <paramref name="dim"/> (a contiguous copy).</summary>
    public static Tensor SplitAlong(Tensor x, ICommunicator tp, int dim)
    {
        dim = Normalize(x, dim);
        long n = x.shape[dim];
        if (n % tp.Size != 0) throw new ArgumentException($"cannot split a dim of {n} over {tp.Size} ranks");
        long part = n / tp.Size;
        return x.narrow(dim, tp.Rank * part, part).contiguous();
    }

    /// <summary>In-place sum over the group of a copy of <paramref name="x"/>.</summary>
    static Tensor AllReduceSum(Tensor x, ICommunicator tp)
    {
        var y = x.contiguous().clone();
        tp.AllReduce(y, ReduceOp.Sum);
        return y;
    }

    static int Normalize(Tensor x, int dim) => dim < 0 ? dim + (int)x.dim() : dim;

    // Custom autograd functions, each a conjugate pair: backward applies the adjoint of forward's collective
    // (identity <-> all-reduce, split <-> all-gather, reduce-scatter <-> all-gather). Instances are process-wide
    // singletons (TorchSharp's design) and hold no state: the communicator and the dim travel in the context.
    // Every function takes (x, communicator, dim); the all-reduce pair ignores the dim.

    const int LastDim = -1;

    delegate Tensor Collective(Tensor x, ICommunicator tp, int dim);

    // (Megatron's name, forward, backward)
    sealed class CopyToRegion() : ConjugatePair<CopyToRegion>("CopyToTensorParallelRegion", Alias, AllReduceSum);
    sealed class ReduceFromRegion() : ConjugatePair<ReduceFromRegion>("ReduceFromTensorParallelRegion", AllReduceSum, Unchanged);
    sealed class ScatterToRegion() : ConjugatePair<ScatterToRegion>("ScatterToTensorParallelRegion", SplitAlong, AllGatherAlong);
    sealed class GatherFromRegion() : ConjugatePair<GatherFromRegion>("GatherFromTensorParallelRegion", AllGatherAlong, SplitAlong);
    sealed class ReduceScatterToSequence() : ConjugatePair<ReduceScatterToSequence>("ReduceScatterToSequenceParallelRegion", ReduceScatterAlong, AllGatherAlong);
    sealed class GatherFromSequence() : ConjugatePair<GatherFromSequence>("GatherFromSequenceParallelRegion", AllGatherAlong, ReduceScatterAlong);

    static Tensor Alias(Tensor x, ICommunicator tp, int dim) => x.alias();
    static Tensor Unchanged(Tensor grad, ICommunicator tp, int dim) => grad;
    static Tensor AllReduceSum(Tensor x, ICommunicator tp, int dim) => AllReduceSum(x, tp);

    abstract class ConjugatePair<TSelf>(string name, Collective forwardOp, Collective backwardOp) : SingleTensorFunction<TSelf>
        where TSelf : ConjugatePair<TSelf>, new()
    {
        public override string Name => name;

        public sealed override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            ctx.save_data("tp", vars[1]); ctx.save_data("dim", vars[2]);
            return forwardOp((Tensor)vars[0], (ICommunicator)vars[1], (int)vars[2]);
        }

        // One entry per forward argument: null for the communicator and the dim.
        public sealed override List<Tensor> backward(AutogradContext ctx, Tensor grad) =>
            new() { backwardOp(grad, (ICommunicator)ctx.get_data("tp"), (int)ctx.get_data("dim")), null!, null! };
    }
}
