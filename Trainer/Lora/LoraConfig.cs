using System.Globalization;
using Trainer.Models;

namespace Trainer.Lora;

/// <summary>
/// LoRA settings, as InfiniTrain's flags name them: y = W x + b + (alpha / rank) · B A dropout(x), A (rank, in)
/// kaiming-uniform(a = √5), B (out, rank) zero. <see cref="Targets"/> are module names matched against the end of a
/// linear layer's name on a component boundary (InfiniTrain's rule: "c_proj" matches attn.c_proj and mlp.c_proj).
/// </summary>
public sealed record LoraConfig(int Rank, double Alpha, IReadOnlyList<string> Targets, double Dropout = 0.0)
{
    /// <summary>InfiniTrain's defaults: alpha 16; targets c_attn,c_proj (GPT-2) and c_attn,c_proj,c_fc,c_fc2 (LLaMA-3).</summary>
    public const double DefaultAlpha = 16.0;
    public const string DefaultGpt2Targets = "c_attn,c_proj";
    public const string DefaultLlama3Targets = "c_attn,c_proj,c_fc,c_fc2";

    /// <summary>Target names this trainer knows (the linear layers of GPT-2 and LLaMA-3, short or qualified).</summary>
    public static readonly IReadOnlyList<string> KnownTargets = new[] { "c_attn", "attn.c_proj", "c_proj", "mlp.c_proj", "c_fc", "c_fc2", "attn.c_attn", "mlp.c_fc", "mlp.c_fc2" };

    /// <summary>The factor on B·A·x.</summary>
    public double Scale => Alpha / Rank;

    /// <summary>The default --lora_target_modules of a model family.</summary>
    public static string DefaultTargets(ModelKind kind) => kind == ModelKind.GPT2 ? DefaultGpt2Targets : DefaultLlama3Targets;

    /// <summary>Comma-separated names → list (trimmed, empty entries dropped, duplicates removed in order).</summary>
    public static IReadOnlyList<string> ParseTargets(string csv) =>
        csv.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Distinct().ToArray();

    /// <summary>True when the layer called <paramref name="layerName"/> (e.g. h.0.attn.c_proj) ends with <paramref name="target"/>
    /// on a component boundary.</summary>
    public static bool Matches(string layerName, string target) =>
        layerName == target || layerName.EndsWith("." + target, StringComparison.Ordinal);

    /// <summary>The seed of the generator the A matrices are drawn from: the run's seed plus a fixed offset, so their
    /// stream is not the one the model's weights were drawn from (reference/pytorch/lora.py uses the same).</summary>
    public static long InitSeed(long seed) => seed + 1_000_003;

    /// <summary>Identity for resume checks and adapter files.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"LoRA(rank={Rank}, alpha={Alpha:R}, targets={string.Join(",", Targets)}, dropout={Dropout:R})");
}

/// <summary>A LoRA setting that does not fit the model (unknown target, target the model lacks, rank too large).</summary>
public sealed class LoraConfigException(string message) : Exception(message);
