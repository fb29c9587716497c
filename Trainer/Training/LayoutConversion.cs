using Trainer.Checkpoint;
using Trainer.Models;
using Trainer.Parallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Trainer.Training;

/// <summary>
/// Moves a checkpoint's model and optimizer state from the layout that wrote it to another: the saved ranks' states
/// are consolidated into the single-device layout (TP shards joined with their <see cref="ShardSpec"/>, pipeline
/// stages joined by parameter name, ZeRO shards concatenated in the flat parameter order), then cut again for the
/// ranks of the new layout. Parameters are named as in the llm.c weight file, so every layout agrees on them; GPT-2's
/// tied head copy on the last pipeline stage takes wte's state.
/// </summary>
internal static class LayoutConversion
{
    /// <summary>One rank's model part and optimizer, in world-rank order.</summary>
    public sealed record RankState(nn.Module<Tensor, Tensor> Model, DataParallelOptimizer Optimizer);

    /// <summary>The single-device state: parameter values (model dtype), optimizer fields per parameter (main
    /// dtype), and the optimizer's shared scalars (the step count).</summary>
    public sealed class FullState : IDisposable
    {
        public Dictionary<string, Tensor> Values { get; } = new();
        public Dictionary<string, Dictionary<string, Tensor>> Fields { get; } = new();
        public Dictionary<string, object> Scalars { get; } = new();

        public void Dispose()
        {
            foreach (var t in Values.Values) t.Dispose();
            foreach (var t in Fields.Values.SelectMany(f => f.Values)) t.Dispose();
        }
    }

    /// <summary>The parameters of <paramref name="model"/> in model.parameters() order, with their weight-file names
    /// (LoRA adapters: h.0.attn.c_attn.lora_A, …) and how each is cut from the full tensor (null: whole). The
    /// optimizer holds the trainable ones among them, in this order (<see cref="Trainable"/>).</summary>
    static List<(string Name, Tensor Tensor, ShardSpec? Spec)> NamedParameters(nn.Module<Tensor, Tensor> model)
    {
        IEnumerable<(string Name, Tensor Tensor, ShardSpec? Spec)> shards = model switch
        {
            PipelineStageModel stage => stage.Chunks.SelectMany(c => c.Shards()).Concat(stage.LoraAdapters.SelectMany(a => a.Shards())),
            TensorParallelLm tp => tp.Shards().Concat(tp.LoraAdapters.SelectMany(a => a.Shards())),
            CausalLm lm => WholeModel(lm),
            _ => throw new CheckpointException($"a {model.GetType().Name} has no named parameters; its checkpoint cannot move between layouts"),
        };
        var byHandle = shards.ToDictionary(n => n.Tensor.Handle);
        return model.parameters().Select(p => byHandle.TryGetValue(p.Handle, out var n) ? n
            : throw new CheckpointException("a model parameter has no weight-file name; its checkpoint cannot move between layouts")).ToList();
    }

    /// <summary>The parameters the optimizer holds (all of them, or under LoRA the adapters), in its order.</summary>
    static List<(string Name, Tensor Tensor, ShardSpec? Spec)> Trainable(List<(string Name, Tensor Tensor, ShardSpec? Spec)> named) =>
        named.Where(n => n.Tensor.requires_grad).ToList();

    /// <summary>A whole model's parameters under their weight-file names. Its module paths are those names (wte and
    /// wpe with ".weight"; an adapter h.0.attn.c_attn.lora.lora_A); the weight properties may hand out other wrappers,
    /// so the module's own are used.</summary>
    static IEnumerable<(string Name, Tensor Tensor, ShardSpec? Spec)> WholeModel(CausalLm lm)
    {
        var names = lm.WeightFileOrder().Select(w => w.Name).Concat(lm.LoraAdapters.SelectMany(a => a.Shards().Select(s => s.Name))).ToHashSet();
        foreach (var (path, p) in lm.named_parameters())
        {
            string adapter = path.Replace(".lora.lora_", ".lora_");
            string name = names.Contains(path) ? path
                : adapter != path && names.Contains(adapter) ? adapter
                : path.EndsWith(".weight") && names.Contains(path[..^".weight".Length]) ? path[..^".weight".Length]
                : throw new CheckpointException($"parameter '{path}' of '{lm.Config.Name}' has no weight-file name; its checkpoint cannot move between layouts");
            yield return (name, p, null);
        }
    }

    /// <summary>The weight-file name whose state a parameter takes (the tied head copy takes wte's).</summary>
    static string FullName(string name) => name == TensorParallelGpt2.TiedHeadName ? "wte" : name;

    /// <summary>The single-device state from every rank of <paramref name="layout"/> (loaded from its checkpoint).</summary>
    public static FullState Consolidate(ParallelLayout layout, IReadOnlyList<RankState> ranks)
    {
        var full = new FullState();
        var values = new Dictionary<string, (ShardSpec? Spec, Tensor[] Pieces)>();
        var fields = new Dictionary<string, Dictionary<string, Tensor[]>>();
        using var noGrad = no_grad();
        for (int pp = 0; pp < layout.Pp; pp++)
            for (int tp = 0; tp < layout.Tp; tp++)
            {
                var first = ranks[layout.RankOf(tp, 0, pp)];
                var named = NamedParameters(first.Model);
                var flatLayout = first.Optimizer.Layout;
                // This (tp, pp) part's optimizer state over the whole flat buffer: its DP ranks' shards (ZeRO-1/2) or DP rank 0's copy.
                var flats = new Dictionary<string, Tensor>();
                for (int dp = 0; dp < (layout.ZeroStage == 0 ? 1 : layout.Dp); dp++)
                {
                    var opt = ranks[layout.RankOf(tp, dp, pp)].Optimizer;
                    var (parts, scalars) = opt.ExportFlatState();
                    var (start, length) = opt.FlatRange;
                    foreach (var (field, part) in parts)
                    {
                        if (!flats.TryGetValue(field, out var flat)) flats[field] = flat = zeros(flatLayout.Padded, part.dtype, part.device);
                        flat.narrow(0, start, length).copy_(part);
                        part.Dispose();
                    }
                    foreach (var (k, v) in scalars) full.Scalars.TryAdd(k, v);
                }
                foreach (var (name, tensor, spec) in named)
                {
                    if (name == TensorParallelGpt2.TiedHeadName) continue;   // a copy of wte, which the first stage holds
                    if (!values.TryGetValue(name, out var v)) values[name] = v = (spec, new Tensor[layout.Tp]);
                    v.Pieces[tp] = tensor.detach().clone();
                }
                var trainable = Trainable(named);
                for (int i = 0; i < trainable.Count; i++)
                {
                    var (name, tensor, _) = trainable[i];
                    if (name == TensorParallelGpt2.TiedHeadName) continue;
                    foreach (var (field, flat) in flats)
                    {
                        if (!fields.TryGetValue(field, out var byName)) fields[field] = byName = new();
                        if (!byName.TryGetValue(name, out var pieces)) byName[name] = pieces = new Tensor[layout.Tp];
                        pieces[tp] = flat.narrow(0, flatLayout.Offsets[i], flatLayout.Sizes[i]).view(tensor.shape).clone();
                    }
                }
                foreach (var f in flats.Values) f.Dispose();
            }
        Tensor Join(ShardSpec? spec, Tensor[] pieces) => spec is null ? pieces[0] : spec.Unslice(pieces);
        foreach (var (name, (spec, pieces)) in values) full.Values[name] = Join(spec, pieces);
        foreach (var (field, byName) in fields)
            full.Fields[field] = byName.ToDictionary(kv => kv.Key, kv => Join(values[kv.Key].Spec, kv.Value));
        return full;
    }

    /// <summary>Writes <paramref name="full"/> into every rank of <paramref name="layout"/>: its slice of each parameter,
    /// then its optimizer state.</summary>
    public static void Apply(FullState full, ParallelLayout layout, IReadOnlyList<RankState> ranks)
    {
        using var noGrad = no_grad();
        for (int r = 0; r < ranks.Count; r++)
        {
            using var scope = NewDisposeScope();
            var (tp, _, _) = layout.Coord(r);
            var rank = ranks[r];
            var named = NamedParameters(rank.Model);
            Tensor Local(Tensor whole, ShardSpec? spec) => spec is null ? whole : spec.Slice(whole, tp, layout.Tp);
            Tensor Get(Dictionary<string, Tensor> d, string name, string what) => d.TryGetValue(FullName(name), out var t) ? t
                : throw new CheckpointException($"the checkpoint's {what} has no '{FullName(name)}'");
            foreach (var (name, tensor, spec) in named)
            {
                var value = Local(Get(full.Values, name, "model"), spec);
                if (!value.shape.SequenceEqual(tensor.shape))
                    throw new CheckpointException($"the checkpoint's '{name}' has shape [{string.Join(",", value.shape)}] in this layout, the model [{string.Join(",", tensor.shape)}]");
                tensor.copy_(value);
            }
            var flatLayout = rank.Optimizer.Layout;
            var (start, length) = rank.Optimizer.FlatRange;
            var mine = new Dictionary<string, Tensor>();
            var trainable = Trainable(named);
            foreach (var (field, byName) in full.Fields)
            {
                var flat = zeros(flatLayout.Padded, byName.Values.First().dtype, named[0].Tensor.device);
                for (int i = 0; i < trainable.Count; i++)
                    flat.narrow(0, flatLayout.Offsets[i], flatLayout.Sizes[i]).copy_(Local(Get(byName, trainable[i].Name, field), trainable[i].Spec).reshape(-1));
                mine[field] = flat.narrow(0, start, length);
            }
            rank.Optimizer.ImportFlatState(mine, full.Scalars);
        }
    }
}
