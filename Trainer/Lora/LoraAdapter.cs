using TorchSharp;
using TorchSharp.Modules;
using Trainer.Models;
using Trainer.Parallel;
using static TorchSharp.torch;
using static Trainer.Parallel.TensorParallelOps;

namespace Trainer.Lora;

/// <summary>How an adapter follows the tensor-parallel split of the layer it wraps.</summary>
public enum LoraSharding
{
    /// <summary>A whole layer (single device, data parallelism).</summary>
    None,
    /// <summary>ColumnParallelLinear: B's rows are split like the layer's output rows; A is replicated.</summary>
    Column,
    /// <summary>RowParallelLinear: A's columns are split like the layer's input columns; B is replicated.</summary>
    Row,
}

/// <summary>
/// The low-rank update of one linear layer: delta(x) = scale · B (A dropout(x)), added to the layer's output by a
/// forward hook; registered as the layer's submodule "lora" (so it is in parameters(), state dicts and checkpoints).
/// <para>Tensor parallelism (Megatron's conjugate operators around the rank-r activation h = A x, so a TP run computes
/// the single-device function): column-parallel — h from the layer's (replicated) input, then copy-to-TP (backward:
/// all-reduce; under SP: gather along T, backward reduce-scatter), then the local rows of B; row-parallel — the partial
/// h = A_r x_r of the local input columns, summed over TP (under SP: reduce-scattered along T), then the replicated B.
/// The replicated matrix (A of a column layer, B of a row layer) then gets the same full gradient on every TP rank
/// without SP, and a partial (local positions) gradient under SP — exactly like the other replicated parameters, so
/// <see cref="TensorParallelLm.AllReduceSequenceParallelGrads"/> and the norm's count-once rule cover it.</para>
/// </summary>
public sealed class LoraAdapter : nn.Module<Tensor, Tensor>
{
    public readonly Parameter lora_A;   // (rank, in) — row-parallel: this rank's columns
    public readonly Parameter lora_B;   // (out, rank) — column-parallel: this rank's rows
    readonly ICommunicator? tp;
    readonly bool sequenceParallel;

    /// <summary>The wrapped layer's name in the full model (h.0.attn.c_attn).</summary>
    public LoraLayer Layer { get; }
    public LoraSharding Sharding { get; }
    /// <summary>How the sharded matrix (B for column, A for row) is cut from the full one: the layer's weight spec.</summary>
    public ShardSpec? Spec { get; }
    public double Scale { get; }
    public double Dropout { get; }

    internal LoraAdapter(LoraLayer layer, Tensor a, Tensor b, LoraConfig cfg, LoraSharding sharding, ShardSpec? spec, ICommunicator? tp, bool sp)
        : base("LoRA")
    {
        Layer = layer; Sharding = sharding; Spec = spec; Scale = cfg.Scale; Dropout = cfg.Dropout;
        this.tp = tp; sequenceParallel = sp;
        lora_A = new Parameter(a, requires_grad: true);
        lora_B = new Parameter(b, requires_grad: true);
        RegisterComponents();
    }

    /// <summary>The adapter's contribution to the wrapped layer's output for the layer's input <paramref name="x"/>.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var input = Dropout > 0 ? nn.functional.dropout(x, Dropout, training) : x;
        var h = nn.functional.linear(input, lora_A);
        h = Sharding switch
        {
            LoraSharding.Column => sequenceParallel ? GatherFromSequenceParallelRegion(h, tp!) : CopyToTensorParallelRegion(h, tp!),
            LoraSharding.Row => sequenceParallel ? ReduceScatterToSequenceParallelRegion(h, tp!) : ReduceFromTensorParallelRegion(h, tp!),
            _ => h,
        };
        return (nn.functional.linear(h, lora_B) * Scale).MoveToOuterDisposeScope();
    }

    /// <summary>This adapter's parameters with their full names and how they are cut (null: replicated over TP).</summary>
    public IEnumerable<(string Name, Tensor Tensor, ShardSpec? Spec)> Shards()
    {
        yield return (Layer.Name + ".lora_A", lora_A, Sharding == LoraSharding.Row ? Spec : null);
        yield return (Layer.Name + ".lora_B", lora_B, Sharding == LoraSharding.Column ? Spec : null);
    }

    /// <summary>Collective over TP when sharded: the full A and B, float32 on the CPU.</summary>
    public (Tensor A, Tensor B) GatherFull()
    {
        using var _ = no_grad();
        Tensor Full(Tensor t, bool sharded) => (sharded && tp is { Size: > 1 } ? Spec!.Gather(t.detach(), tp) : t.detach().clone()).to(ScalarType.Float32).cpu();
        return (Full(lora_A, Sharding == LoraSharding.Row), Full(lora_B, Sharding == LoraSharding.Column));
    }
}

/// <summary>Puts adapters into a model (single-device, a TP shard or a pipeline stage) and takes them out again.</summary>
public static class LoraModel
{
    /// <summary>
    /// Wraps the layers of <paramref name="full"/> in <paramref name="model"/> (a <see cref="CausalLm"/> or a
    /// <see cref="TensorParallelLm"/> shard: adapters are sliced like their layers; a pipeline chunk takes only the
    /// adapters of its own blocks) and freezes every base parameter (requires_grad false: no gradient, no optimizer
    /// state). Adapters take the model's dtype and device.
    /// </summary>
    public static IReadOnlyList<LoraAdapter> Attach(CausalLm model, LoraWeights full)
    {
        if (model.LoraAdapters.Count > 0) throw new InvalidOperationException("the model already has LoRA adapters");
        var tpModel = model as TensorParallelLm;
        var weights = tpModel is not null
            ? tpModel.Shards().ToDictionary(s => s.Name, s => (Tensor: s.Tensor, Spec: s.Spec))
            : model.WeightFileOrder().ToDictionary(s => s.Name, s => (Tensor: s.Tensor, Spec: (ShardSpec?)null));
        var owners = new Dictionary<IntPtr, nn.Module<Tensor, Tensor>>();
        foreach (var (_, m) in model.named_modules())
        {
            Tensor? w = m switch { Linear l => l.weight, ParallelLinear pl => pl.weight, _ => null };
            if (w is not null) owners[w.Handle] = (nn.Module<Tensor, Tensor>)m;
        }
        using var _ = no_grad();
        foreach (var p in model.parameters()) p.requires_grad = false;
        var dtype = weights.Values.First().Tensor.dtype;
        var device = weights.Values.First().Tensor.device;
        var adapters = new List<LoraAdapter>();
        var part = tpModel?.Part;
        foreach (var (layer, a, b) in full.Layers)
        {
            if (part is not null && (layer.Block < part.Start || layer.Block >= part.Start + part.Count)) continue;   // another chunk's
            if (!weights.TryGetValue(layer.WeightName, out var w) || !owners.TryGetValue(w.Tensor.Handle, out var owner))
                throw new LoraConfigException($"--lora_target_modules: model '{model.Config.Name}' has no linear layer {layer.Name}");
            var (sharding, tpComm, sp) = owner switch
            {
                ColumnParallelLinear => (LoraSharding.Column, tpModel!.Tp, tpModel.SequenceParallel),
                RowParallelLinear => (LoraSharding.Row, tpModel!.Tp, tpModel.SequenceParallel),
                _ => (LoraSharding.None, (ICommunicator?)null, false),
            };
            Tensor localA = sharding == LoraSharding.Row ? w.Spec!.Slice(a, tpComm!.Rank, tpComm.Size) : a.clone();
            Tensor localB = sharding == LoraSharding.Column ? w.Spec!.Slice(b, tpComm!.Rank, tpComm.Size) : b.clone();
            var adapter = new LoraAdapter(layer, localA.to(dtype, device), localB.to(dtype, device), full.Config, sharding, w.Spec, tpComm, sp);
            owner.register_module("lora", adapter);
            owner.register_forward_hook((m, x, y) => y + adapter.call(x));
            adapters.Add(adapter);
        }
        model.LoraAdapters = adapters;
        return adapters;
    }

    /// <summary>Every chunk of a pipeline stage takes the adapters of its blocks from <paramref name="full"/> (the same
    /// values a single-device model attaches: the stage computes the single-device function).</summary>
    public static IReadOnlyList<LoraAdapter> Attach(PipelineStageModel stage, LoraWeights full) =>
        stage.Chunks.SelectMany(c => Attach(c, full)).ToList();

    /// <summary>Collective over TP for a shard: the model's full adapters (float32, CPU).</summary>
    public static LoraWeights Gather(CausalLm model, LoraConfig config) =>
        new(config, model.LoraAdapters.Select(ad => { var (a, b) = ad.GatherFull(); return (ad.Layer, a, b); }).ToList());

    /// <summary>
    /// Collective over TP and <paramref name="pp"/>: the whole model's adapters (float32, CPU, in weight-file order, as a
    /// single-device run holds them) on every stage. Each stage gathers its chunks' adapters over TP, packs them into
    /// one buffer and broadcasts it over the pipeline group (stage by stage: values travel bit for bit).
    /// </summary>
    public static LoraWeights Gather(PipelineStageModel stage, LoraConfig config, ICommunicator pp)
    {
        var layers = LoraTargets.Resolve(stage.Config, config);
        int chunks = stage.Stages * stage.VirtualStages;
        int OwnerStage(LoraLayer l) => PipelineChunks.StageOf(Enumerable.Range(0, chunks).First(g =>
        {
            var (start, count) = PipelineChunks.Layers(stage.Config.NLayer, chunks, g);
            return l.Block >= start && l.Block < start + count;
        }), stage.Stages);
        var mine = stage.Chunks.SelectMany(c => c.LoraAdapters).ToDictionary(a => a.Layer.Name);
        var device = stage.parameters().First().device;
        var full = new Dictionary<string, (Tensor A, Tensor B)>();
        using var _ = no_grad();
        for (int s = 0; s < stage.Stages; s++)
        {
            var owned = layers.Where(l => OwnerStage(l) == s).ToList();
            using var scope = NewDisposeScope();
            long Size(LoraLayer l) => (long)config.Rank * (l.In + l.Out);
            var packed = zeros(owned.Sum(Size), ScalarType.Float32, device);
            if (s == stage.Stage)
            {
                long at = 0;
                foreach (var l in owned)
                {
                    var (a, b) = mine[l.Name].GatherFull();   // collective over TP, in the same layer order on every TP rank
                    packed.narrow(0, at, a.numel()).copy_(a.reshape(-1));
                    packed.narrow(0, at + a.numel(), b.numel()).copy_(b.reshape(-1));
                    at += Size(l);
                }
            }
            pp.Broadcast(packed, s);
            var host = packed.cpu();
            long off = 0;
            foreach (var l in owned)
            {
                long na = config.Rank * l.In, nb = l.Out * config.Rank;
                full[l.Name] = (host.narrow(0, off, na).reshape(config.Rank, l.In).clone().DetachFromDisposeScope(),
                    host.narrow(0, off + na, nb).reshape(l.Out, config.Rank).clone().DetachFromDisposeScope());
                off += na + nb;
            }
        }
        return new LoraWeights(config, layers.Select(l => (l, full[l.Name].A, full[l.Name].B)).ToList());
    }

    /// <summary>
    /// W + scale · B A for every adapted layer of a whole (single-device) model, computed in float32 and written into
    /// the model's base weights (cast to their dtype); the adapters are then zeroed (B = 0), so the model computes the
    /// same function as before and its <see cref="CausalLm.WeightFileOrder"/> is a plain llm.c model.
    /// </summary>
    public static void MergeInto(CausalLm model)
    {
        if (model is TensorParallelLm) throw new ArgumentException("merge a whole model (gather the adapters first)");
        var weights = model.WeightFileOrder().ToDictionary(s => s.Name, s => s.Tensor);
        using var _ = no_grad();
        foreach (var ad in model.LoraAdapters)
        {
            var w = weights[ad.Layer.WeightName];
            using var scope = NewDisposeScope();
            var delta = ad.lora_B.to(ScalarType.Float32).matmul(ad.lora_A.to(ScalarType.Float32)) * ad.Scale;
            w.copy_((w.to(ScalarType.Float32) + delta).to(w.dtype));
            ad.lora_B.zero_();
        }
    }
}
