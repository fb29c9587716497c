using Trainer.Models;

namespace Trainer.Lora;

/// <summary>A linear layer LoRA can wrap: its name in the full model (weight name without ".weight") and full shape.</summary>
public sealed record LoraLayer(string Name, long Out, long In)
{
    public string WeightName => Name + ".weight";
    /// <summary>The transformer block the layer is in (h.3.attn.c_attn → 3): which pipeline chunk holds it.</summary>
    public int Block => int.Parse(Name.Split('.')[1], System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>Which layers of a model a <see cref="LoraConfig"/> selects.</summary>
public static class LoraTargets
{
    /// <summary>Every linear layer of the blocks, in llm.c weight-file order (the order the A matrices are drawn in).</summary>
    public static IReadOnlyList<LoraLayer> Candidates(ModelConfig c)
    {
        long C = c.NEmbd, F = c.FfnHidden, qkv = c.Kind == ModelKind.GPT2 ? 3 * C : ((long)c.NHead + 2L * c.NKvHead) * c.HeadDim;
        var kinds = c.Kind == ModelKind.GPT2
            ? new (string, long, long)[] { ("attn.c_attn", qkv, C), ("attn.c_proj", C, C), ("mlp.c_fc", F, C), ("mlp.c_proj", C, F) }
            : new (string, long, long)[] { ("attn.c_attn", qkv, C), ("attn.c_proj", C, C), ("mlp.c_fc", F, C), ("mlp.c_fc2", F, C), ("mlp.c_proj", C, F) };
        var list = new List<LoraLayer>();
        foreach (var (n, o, i) in kinds)
            for (int l = 0; l < c.NLayer; l++) list.Add(new LoraLayer($"h.{l}.{n}", o, i));
        return list;
    }

    /// <summary>The layers <paramref name="lora"/> wraps in a model of <paramref name="c"/>, in weight-file order. Throws
    /// <see cref="LoraConfigException"/> naming the flag for an unknown target, a target the model lacks, no targets, or a
    /// rank above min(in, out) of a selected layer.</summary>
    public static IReadOnlyList<LoraLayer> Resolve(ModelConfig c, LoraConfig lora)
    {
        if (lora.Rank < 1) throw new LoraConfigException($"--lora_rank={lora.Rank}: LoRA needs a rank ≥ 1 (0 turns it off)");
        if (lora.Targets.Count == 0) throw new LoraConfigException("--lora_target_modules: no module named");
        var candidates = Candidates(c);
        string Kinds() => string.Join(", ", candidates.Select(l => l.Name[(l.Name.IndexOf('.', 2) + 1)..]).Distinct());
        foreach (var t in lora.Targets)
        {
            if (!LoraConfig.KnownTargets.Contains(t))
                throw new LoraConfigException($"--lora_target_modules: unknown module '{t}' (known: {string.Join(", ", LoraConfig.KnownTargets)})");
            if (!candidates.Any(l => LoraConfig.Matches(l.Name, t)))
                throw new LoraConfigException($"--lora_target_modules: model '{c.Name}' ({c.Kind}) has no '{t}' layer (its linear layers: {Kinds()})");
        }
        var chosen = candidates.Where(l => lora.Targets.Any(t => LoraConfig.Matches(l.Name, t))).ToList();
        foreach (var l in chosen)
            if (lora.Rank > Math.Min(l.In, l.Out))
                throw new LoraConfigException($"--lora_rank={lora.Rank} is larger than layer {l.Name} allows (min(in, out) = min({l.In}, {l.Out}) = {Math.Min(l.In, l.Out)})");
        return chosen;
    }
}
