using TorchSharp;
using TorchSharp.Modules;
using Trainer.Models;
using static TorchSharp.torch;

namespace Trainer.Parallel;

/// <summary>
/// One tensor-parallel rank's shard of a <see cref="CausalLm"/> (GPT-2 or LLaMA-3), cut from the full model so that a
/// TP run starts from exactly the single-device parameters. Build it with <see cref="TensorParallelModels"/>.
/// <para>forward(idx (B,T)) → this rank's vocabulary columns of the logits (B,T,Vl); <see cref="Loss"/> → the
/// vocab-parallel cross entropy, the same value on every TP rank. After backward, call
/// <see cref="AllReduceSequenceParallelGrads"/> (a no-op without SP) before using the gradients.</para>
/// <para><see cref="WeightFileOrder"/> lists this rank's local tensors under the full model's names;
/// <see cref="GatherFullWeights"/> / <see cref="GatherFullGrads"/> reassemble the full tensors (collective).</para>
/// </summary>
public abstract class TensorParallelLm : CausalLm
{
    protected TensorParallelLm(string name, ModelConfig config, ICommunicator tp, bool sequenceParallel, ModelPart? part) : base(name, config)
    {
        Tp = tp; SequenceParallel = sequenceParallel;
        Part = part ?? ModelPart.Whole(config);
        if (Part.Start < 0 || Part.Count < 1 || Part.Start + Part.Count > config.NLayer)
            throw new ArgumentException($"layers [{Part.Start}, {Part.Start + Part.Count}) are not inside the {config.NLayer} layers of '{config.Name}'");
    }

    /// <summary>Which part of the model this holds: all of it, or one pipeline chunk (a layer range, with the
    /// embeddings on the first chunk and the final norm + head on the last).</summary>
    public ModelPart Part { get; }

    /// <summary>GPT-2 under pipeline parallelism: the last chunk's copy of wte for the tied head (null elsewhere).
    /// It starts equal to the first chunk's wte, and its gradient is summed with that one before every step.</summary>
    public virtual Tensor? TiedHeadCopy => null;

    /// <summary>The tied embedding whose gradient is summed over the first and last pipeline stage: the first chunk's
    /// wte or the last chunk's head copy (GPT-2 only; null for LLaMA-3 and for middle chunks).</summary>
    public virtual Tensor? TiedEmbedding => null;

    /// <summary>The tensor-parallel group this shard belongs to.</summary>
    public ICommunicator Tp { get; }
    /// <summary>Norms and residuals run on this rank's T/tp positions; requires T % tp == 0.</summary>
    public bool SequenceParallel { get; }
    /// <summary>Rows of the vocabulary held by each rank (the vocabulary padded to a multiple of TP, divided by TP).</summary>
    public long LocalVocab => VocabSpec.LocalLength(Tp.Size);

    /// <summary>This rank's parameters in llm.c weight-file order, with the full model's names and how each is cut
    /// (null: replicated on every TP rank).</summary>
    public abstract IReadOnlyList<(string Name, Tensor Tensor, ShardSpec? Spec)> Shards();

    /// <summary>How the vocabulary rows (wte, and LLaMA's lm_head) are cut.</summary>
    protected ShardSpec VocabSpec => ShardSpec.Even(0, Config.PaddedVocabSize, Tp.Size);

    public override IReadOnlyList<(string Name, Tensor Tensor)> WeightFileOrder() => Shards().Select(s => (s.Name, s.Tensor)).ToList();

    /// <summary>Parameters every TP rank holds whole (norm weights/biases, row-parallel biases, GPT-2's wpe).
    /// A global gradient norm counts them once; under SP their gradients are partial sums (see
    /// <see cref="AllReduceSequenceParallelGrads"/>).</summary>
    public IReadOnlyList<Tensor> ReplicatedParameters() => ShardsWithAdapters().Where(s => s.Spec is null).Select(s => s.Tensor).ToList();

    /// <summary>Parameters split over the TP ranks (each rank's slice is distinct).</summary>
    public IReadOnlyList<Tensor> ShardedParameters() => ShardsWithAdapters().Where(s => s.Spec is not null).Select(s => s.Tensor).ToList();

    /// <summary><see cref="Shards"/> plus the LoRA adapters' matrices (the replicated one of each adapter has a null spec).</summary>
    IEnumerable<(string Name, Tensor Tensor, ShardSpec? Spec)> ShardsWithAdapters() => Shards().Concat(LoraAdapters.SelectMany(a => a.Shards()));

    /// <summary>
    /// Megatron's finalize_model_grads step for SP: under sequence parallelism each replicated parameter saw only this
    /// rank's positions, so its gradient is summed over the TP group (in place, rank order). Without SP every TP rank
    /// already holds the full, identical gradient and this does nothing. Collective: every TP rank calls it.
    /// </summary>
    public void AllReduceSequenceParallelGrads()
    {
        if (SequenceParallel) TensorParallelOps.AllReduceGrads(ReplicatedParameters(), Tp);
    }

    /// <summary>
    /// Σ grad² over the full model's parameters, as the single-device model would compute it (replicated parameters
    /// counted once), accumulated in float64; the same value on every TP rank. Call after
    /// <see cref="AllReduceSequenceParallelGrads"/>. Collective: every TP rank calls it.
    /// </summary>
    public double GradSquaredNorm()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Tensor Sum(IEnumerable<Tensor> ps)
        {
            var acc = zeros(1, dtype: ScalarType.Float64, device: ps.FirstOrDefault()?.device ?? CPU);
            foreach (var p in ps) if (p.grad is { } g) acc += g.to(ScalarType.Float64).pow(2).sum();
            return acc;
        }
        var sharded = Sum(ShardedParameters());
        Tp.AllReduce(sharded, ReduceOp.Sum);
        return (sharded + Sum(ReplicatedParameters())).cpu().item<double>();
    }

    /// <summary>Collective: the full model's parameters in weight-file order (full shapes, on every TP rank).</summary>
    public IReadOnlyList<(string Name, Tensor Tensor)> GatherFullWeights() => GatherFull(t => t);

    /// <summary>Collective: the full model's gradients in weight-file order (zeros where a parameter has no gradient).</summary>
    public IReadOnlyList<(string Name, Tensor Tensor)> GatherFullGrads() => GatherFull(t => t.grad ?? zeros_like(t));

    IReadOnlyList<(string Name, Tensor Tensor)> GatherFull(Func<Tensor, Tensor> select)
    {
        using var _ = no_grad();
        return Shards().Select(s =>
        {
            var local = select(s.Tensor);
            return (s.Name, s.Spec is null ? local.detach().clone() : s.Spec.Gather(local.detach(), Tp));
        }).ToList();
    }

    /// <summary>Vocab-parallel mean cross entropy over the local logits (B,T,Vl); targets (B,T), -1 ignored.</summary>
    public override Tensor Loss(Tensor logits, Tensor targets) =>
        VocabParallelCrossEntropy.Loss(logits, targets, Tp, Config.VocabSize);

    internal override void InitializeWeights(Generator g) =>
        throw new InvalidOperationException("a tensor-parallel shard is cut from a full model; it is never initialised on its own");

    /// <summary>The input of this part: token ids (B,T) for the part with the embeddings, else the hidden states
    /// (B,T,C) — (B,T/tp,C) under SP — of the part before it.</summary>
    protected Tensor CheckPartInput(Tensor input)
    {
        if (Part.Embedding) return CheckShardIdx(input);
        if (input.dim() != 3 || input.shape[2] != Config.NEmbd)
            throw new ArgumentException($"pipeline chunk from layer {Part.Start}: input must be hidden states (B,T,{Config.NEmbd}); got shape [{string.Join(",", input.shape)}]");
        return input;
    }

    /// <summary>The full sequence length of this part's input (its hidden states hold T/tp positions under SP).</summary>
    protected long FullLength(Tensor input) => Part.Embedding ? input.shape[1] : input.shape[1] * (SequenceParallel ? Tp.Size : 1);

    /// <summary>Validates idx; under SP also that T divides by the TP size.</summary>
    protected Tensor CheckShardIdx(Tensor idx)
    {
        idx = CheckIdx(idx);
        if (SequenceParallel && idx.shape[1] % Tp.Size != 0)
            throw new ArgumentException($"sequence parallelism: sequence length {idx.shape[1]} is not divisible by the tensor-parallel size {Tp.Size}");
        return idx;
    }

    /// <summary>This rank's positions [r·T/tp, (r+1)·T/tp) under SP, else [0, T).</summary>
    protected (long Start, long Length) LocalPositions(long t) =>
        SequenceParallel ? (Tp.Rank * (t / Tp.Size), t / Tp.Size) : (0, t);

    /// <summary>A parameter copied from a full-model tensor (replicated on every TP rank).</summary>
    internal static void CopyInto(Tensor target, Tensor full)
    {
        using var _ = no_grad();
        target.copy_(full);
    }
}

/// <summary>Builds tensor-parallel shards of the catalog models.</summary>
public static class TensorParallelModels
{
    /// <summary>
    /// Throws <see cref="ArgumentException"/> naming the numbers when <paramref name="cfg"/> cannot be split over
    /// <paramref name="tpSize"/> ranks: query heads, KV heads and the MLP width must divide by TP (the vocabulary is
    /// padded to a multiple of TP instead). Sequence length under SP is checked per batch.
    /// </summary>
    public static void Validate(ModelConfig cfg, int tpSize)
    {
        if (tpSize < 1) throw new ArgumentException($"tensor-parallel size must be ≥ 1 (got {tpSize})");
        void Require(bool ok, string what) { if (!ok) throw new ArgumentException($"model '{cfg.Name}' cannot be split over {tpSize} tensor-parallel ranks: {what}"); }
        Require(cfg.NHead % tpSize == 0, $"n_head {cfg.NHead} is not divisible by {tpSize}");
        Require(cfg.NKvHead % tpSize == 0, $"n_kv_head {cfg.NKvHead} is not divisible by {tpSize}");
        Require(cfg.FfnHidden % tpSize == 0, $"MLP width {cfg.FfnHidden} is not divisible by {tpSize}");
    }

    /// <summary>
    /// Rank <c>tp.Rank</c>'s shard of the model <see cref="ModelFactory.Create(ModelConfig, long, Device, ScalarType)"/>
    /// builds from (<paramref name="cfg"/>, <paramref name="seed"/>): the full model is built on the CPU in float32, sliced,
    /// then the shard is cast to <paramref name="dtype"/> and moved to <paramref name="device"/>.
    /// </summary>
    public static TensorParallelLm Create(ModelConfig cfg, long seed, Device device, ScalarType dtype, ICommunicator tp, bool sequenceParallel)
    {
        Validate(cfg, tp.Size);
        using var full = ModelFactory.Create(cfg, seed, CPU, ScalarType.Float32);
        return FromFull(full, device, dtype, tp, sequenceParallel);
    }

    /// <summary>Rank <c>tp.Rank</c>'s shard of <paramref name="full"/> (e.g. loaded from an llm.c file); <paramref name="full"/>
    /// is only read, so several ranks may slice the same model concurrently.</summary>
    /// <param name="part">One pipeline chunk's layers (null: the whole model).</param>
    public static TensorParallelLm FromFull(CausalLm full, Device device, ScalarType dtype, ICommunicator tp, bool sequenceParallel, ModelPart? part = null)
    {
        ArgumentNullException.ThrowIfNull(full);
        Validate(full.Config, tp.Size);
        var weights = full.WeightFileOrder().ToDictionary(w => w.Name, w => w.Tensor);
        TensorParallelLm shard = full.Config.Kind switch
        {
            ModelKind.GPT2 => new TensorParallelGpt2(full.Config, weights, tp, sequenceParallel, part),
            ModelKind.LLaMA3 => new TensorParallelLlama3(full.Config, weights, tp, sequenceParallel, part),
            _ => throw new ArgumentException($"unknown model kind {full.Config.Kind}"),
        };
        shard.to(dtype);
        if (device is not null && device.type != DeviceType.CPU) shard.to(device);
        return shard;
    }
}

/// <summary>A part of a model: layers [Start, Start+Count), with the embeddings (the first part) and/or the final norm,
/// head and loss (the last part). The whole model is both.</summary>
public sealed record ModelPart(int Start, int Count, bool Embedding, bool Head)
{
    public static ModelPart Whole(ModelConfig cfg) => new(0, cfg.NLayer, true, true);

    /// <summary>Pipeline chunk <paramref name="chunk"/> of <paramref name="chunks"/> (<see cref="PipelineChunks.Layers"/>).</summary>
    public static ModelPart Chunk(ModelConfig cfg, int chunk, int chunks)
    {
        var (start, count) = PipelineChunks.Layers(cfg.NLayer, chunks, chunk);
        return new(start, count, chunk == 0, chunk == chunks - 1);
    }
}
