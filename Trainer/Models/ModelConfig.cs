namespace Trainer.Models;

/// <summary>Which architecture a <see cref="ModelConfig"/> describes.</summary>
public enum ModelKind
{
    /// <summary>GPT-2: learned positions, LayerNorm, GELU(tanh) MLP, fused c_attn with bias, output head tied to wte.</summary>
    GPT2,
    /// <summary>LLaMA-3: RMSNorm, RoPE (optionally LLaMA-3.1 scaled), grouped-query attention, SwiGLU, untied lm_head, no biases.</summary>
    LLaMA3,
}

/// <summary>
/// Architecture hyper-parameters, in llm.c / InfiniTrain terms. Build one with <see cref="ModelCatalog.Get"/>,
/// from a weight-file header (Trainer.Data.LlmcWeights.ReadConfig), or with <c>with { ... }</c> from either.
/// </summary>
/// <param name="Name">Catalog name, or a description of where the config came from.</param>
/// <param name="Kind">GPT2 or LLaMA3.</param>
/// <param name="BlockSize">Maximum sequence length T (GPT-2: rows of wpe; LLaMA-3: length of the RoPE table).</param>
/// <param name="VocabSize">Real vocabulary V; forward returns logits over exactly V classes.</param>
/// <param name="PaddedVocabSize">Rows of the token embedding Vp ≥ V (GPT-2: 50304 as in llm.c; LLaMA-3: = V).</param>
/// <param name="NLayer">Transformer blocks L.</param>
/// <param name="NHead">Query heads.</param>
/// <param name="NKvHead">Key/value heads (GPT-2: = NHead; LLaMA-3 GQA: divides NHead).</param>
/// <param name="NEmbd">Model width C.</param>
/// <param name="FfnHidden">MLP hidden width (GPT-2: 4C; LLaMA-3: see <see cref="LlamaFfnHidden"/>).</param>
/// <param name="NormEps">LayerNorm / RMSNorm epsilon.</param>
/// <param name="RopeTheta">RoPE base (LLaMA-3 only).</param>
/// <param name="UseScaledRope">Apply LLaMA-3.1 frequency scaling to RoPE (LLaMA-3 only).</param>
public sealed record ModelConfig(
    string Name,
    ModelKind Kind,
    int BlockSize,
    int VocabSize,
    int PaddedVocabSize,
    int NLayer,
    int NHead,
    int NKvHead,
    int NEmbd,
    int FfnHidden,
    double NormEps,
    double RopeTheta,
    bool UseScaledRope)
{
    /// <summary>LLaMA-3.1 RoPE scaling: factor (8 for 3.1 8B/70B, 32 for 3.2 1B/3B).</summary>
    public double RopeScaleFactor { get; init; } = 32.0;
    /// <summary>LLaMA-3.1 RoPE scaling: low_freq_factor.</summary>
    public double RopeLowFreqFactor { get; init; } = 1.0;
    /// <summary>LLaMA-3.1 RoPE scaling: high_freq_factor.</summary>
    public double RopeHighFreqFactor { get; init; } = 4.0;
    /// <summary>LLaMA-3.1 RoPE scaling: original_max_position_embeddings.</summary>
    public int RopeOriginalContext { get; init; } = 8192;
    /// <summary>LLaMA-3 header field ffn_dim_multiplier (≤ 0: none). Kept so the weight file header round-trips.</summary>
    public float FfnDimMultiplier { get; init; } = 1.5f;
    /// <summary>LLaMA-3 header field multiple_of.</summary>
    public int MultipleOf { get; init; } = 256;

    /// <summary>Per-head width C / NHead.</summary>
    public int HeadDim => NEmbd / NHead;
    /// <summary>GPT-2 ties the output head to wte; LLaMA-3 has its own lm_head.</summary>
    public bool TiedEmbeddings => Kind == ModelKind.GPT2;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first inconsistent field.</summary>
    public ModelConfig Validate()
    {
        void Require(bool ok, string what) { if (!ok) throw new ArgumentException($"model config '{Name}': {what}"); }
        Require(BlockSize > 0, $"BlockSize must be > 0 (got {BlockSize})");
        Require(VocabSize > 0, $"VocabSize must be > 0 (got {VocabSize})");
        Require(PaddedVocabSize >= VocabSize, $"PaddedVocabSize {PaddedVocabSize} < VocabSize {VocabSize}");
        Require(NLayer > 0, $"NLayer must be > 0 (got {NLayer})");
        Require(NHead > 0 && NEmbd % NHead == 0, $"NEmbd {NEmbd} must be a positive multiple of NHead {NHead}");
        Require(NKvHead > 0 && NHead % NKvHead == 0, $"NHead {NHead} must be a multiple of NKvHead {NKvHead}");
        Require(FfnHidden > 0, $"FfnHidden must be > 0 (got {FfnHidden})");
        Require(NormEps > 0, $"NormEps must be > 0 (got {NormEps})");
        if (Kind == ModelKind.GPT2) Require(NKvHead == NHead, "GPT-2 has no grouped-query attention (NKvHead must equal NHead)");
        if (Kind == ModelKind.LLaMA3)
        {
            Require(PaddedVocabSize == VocabSize, "LLaMA-3 does not pad its vocabulary (PaddedVocabSize must equal VocabSize)");
            Require(HeadDim % 2 == 0, $"RoPE needs an even head dim (got {HeadDim})");
            Require(RopeTheta > 0, $"RopeTheta must be > 0 (got {RopeTheta})");
        }
        return this;
    }

    /// <summary>LLaMA-3 MLP width as InfiniTrain computes it: h = 2*(4C)/3; if multiplier &gt; 0, h = round(multiplier*h); round h up to multiple_of.</summary>
    public static int LlamaFfnHidden(int nEmbd, float ffnDimMultiplier, int multipleOf)
    {
        long hidden = 4L * nEmbd;
        hidden = 2 * hidden / 3;
        if (ffnDimMultiplier > 0f) hidden = (long)Math.Round((double)ffnDimMultiplier * hidden, MidpointRounding.AwayFromZero);
        long m = Math.Max(1, multipleOf);
        return checked((int)((hidden + m - 1) / m * m));
    }

    /// <summary>A GPT-2 config in llm.c's shape (V = 50257 padded to 50304, FFN 4C, eps 1e-5).</summary>
    public static ModelConfig Gpt2(string name, int nLayer, int nHead, int nEmbd, int blockSize = 1024, int vocabSize = 50257, int paddedVocabSize = 50304) =>
        new ModelConfig(name, ModelKind.GPT2, blockSize, vocabSize, paddedVocabSize, nLayer, nHead, nHead, nEmbd, 4 * nEmbd, 1e-5, 0.0, false).Validate();

    /// <summary>A LLaMA-3 config in InfiniTrain's shape (no vocab padding, FFN from multiplier/multiple_of).</summary>
    public static ModelConfig Llama3(string name, int nLayer, int nHead, int nKvHead, int nEmbd, int blockSize, int vocabSize,
        float ffnDimMultiplier, int multipleOf, double normEps = 1e-5, double ropeTheta = 500000.0, bool useScaledRope = true, double ropeScaleFactor = 32.0) =>
        new ModelConfig(name, ModelKind.LLaMA3, blockSize, vocabSize, vocabSize, nLayer, nHead, nKvHead, nEmbd,
            LlamaFfnHidden(nEmbd, ffnDimMultiplier, multipleOf), normEps, ropeTheta, useScaledRope)
        { FfnDimMultiplier = ffnDimMultiplier, MultipleOf = multipleOf, RopeScaleFactor = ropeScaleFactor }.Validate();
}

/// <summary>Named configurations. Names are case-insensitive.</summary>
public static class ModelCatalog
{
    static readonly (string[] Names, ModelConfig Config)[] Entries =
    {
        (new[] { "gpt2", "d12", "gpt2-124m" }, ModelConfig.Gpt2("gpt2", 12, 12, 768)),
        (new[] { "d24", "gpt2-medium", "gpt2-350m" }, ModelConfig.Gpt2("d24", 24, 16, 1024)),
        (new[] { "d36", "gpt2-large", "gpt2-774m" }, ModelConfig.Gpt2("d36", 36, 20, 1280)),
        (new[] { "d48", "gpt2-xl", "gpt2-1558m" }, ModelConfig.Gpt2("d48", 48, 25, 1600)),
        // CPU / test sizes. Vocabulary stays GPT-2's so that the embedded data and prepare-data output fit.
        (new[] { "gpt2-tiny" }, ModelConfig.Gpt2("gpt2-tiny", 2, 4, 64, blockSize: 64)),
        (new[] { "gpt2-mini" }, ModelConfig.Gpt2("gpt2-mini", 4, 4, 128, blockSize: 128)),
        (new[] { "llama3", "llama3.2-1b", "llama3-1b" }, ModelConfig.Llama3("llama3.2-1b", 16, 32, 8, 2048, 8192, 128256, 1.5f, 256)),
        (new[] { "llama3-tiny" }, ModelConfig.Llama3("llama3-tiny", 2, 4, 2, 64, 64, 50257, 1.5f, 32)),
        (new[] { "llama3-mini" }, ModelConfig.Llama3("llama3-mini", 4, 8, 2, 128, 128, 50257, 1.5f, 64)),
        // For tensor parallelism on the CPU: 8 query / 4 KV heads and a vocabulary of 50264 (GPT-2's 50257 rounded up
        // to a multiple of 8; the 7 extra ids never occur) split over TP 2 and 4 (heads) and up to 8 (vocabulary).
        (new[] { "llama3-tiny-tp" }, ModelConfig.Llama3("llama3-tiny-tp", 2, 8, 4, 64, 64, 50264, 1.5f, 32)),
        // For pipeline parallelism (and 3-D layouts) on the CPU: the tiny models with 4 layers, enough for PP 4 or
        // PP 2 x VPP 2 chunks; TP 2/4 splits them like gpt2-tiny / llama3-tiny-tp.
        (new[] { "gpt2-tiny-pp" }, ModelConfig.Gpt2("gpt2-tiny-pp", 4, 4, 64, blockSize: 64)),
        (new[] { "llama3-tiny-pp" }, ModelConfig.Llama3("llama3-tiny-pp", 4, 8, 4, 64, 64, 50264, 1.5f, 32)),
    };

    /// <summary>Every accepted name (aliases included), in catalog order.</summary>
    public static IReadOnlyList<string> Names { get; } = Entries.SelectMany(e => e.Names).ToArray();

    /// <summary>The config called <paramref name="name"/> (case-insensitive); unknown → ArgumentException listing the valid names.</summary>
    public static ModelConfig Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var key = name.Trim();
        foreach (var (names, cfg) in Entries)
            if (names.Any(n => string.Equals(n, key, StringComparison.OrdinalIgnoreCase)))
                return cfg;
        throw new ArgumentException($"unknown model '{name}'; valid names: {string.Join(", ", Names)}", nameof(name));
    }

    /// <summary>True when <paramref name="name"/> names a catalog entry.</summary>
    public static bool Contains(string name) => Names.Any(n => string.Equals(n, name?.Trim(), StringComparison.OrdinalIgnoreCase));
}
