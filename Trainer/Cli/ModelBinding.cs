using Trainer.Data;
using Trainer.Models;
using Trainer.Parallel;
using Trainer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Trainer.Cli;

/// <summary>
/// The trainer's view of a model: its configuration (from the catalog or an llm.c weight file), a replica factory
/// (seeded: every rank gets identical parameters), the loss, and the token files that fit its vocabulary.
/// </summary>
public sealed class ModelBinding
{
    public required ModelConfig Config { get; init; }
    public required string Name { get; init; }
    public string? WeightFile { get; init; }
    public required long Seed { get; init; }
    public required bool BFloat16 { get; init; }
    public int BlockSize => Config.BlockSize;
    /// <summary>LoRA adapters on the model (null: full fine-tuning); the base weights are then frozen.</summary>
    public Trainer.Lora.LoraConfig? Lora { get; init; }
    /// <summary>--lora_load_path: start the adapters from this adapter file instead of the seeded init.</summary>
    public string? LoraLoadPath { get; init; }
    /// <summary>Identity checked on resume: the full configuration (and the weight file it started from, and LoRA).</summary>
    public string Description => Config.ToString() + (WeightFile is null ? "" : $" from {Path.GetFileName(WeightFile)}") +
        (Lora is null ? "" : " + " + Lora.Describe());

    /// <summary>The full adapters every rank starts from: read from --lora_load_path, or drawn from the seed.</summary>
    public Trainer.Lora.LoraWeights? InitialAdapters()
    {
        if (Lora is null) return null;
        try { return LoraLoadPath is null ? Trainer.Lora.LoraWeights.Init(Config, Lora, Seed) : Trainer.Lora.LoraWeights.Load(LoraLoadPath, Config, Lora); }
        catch (Trainer.Lora.LoraConfigException e) { throw new RuntimeFailure(e.Message); }
    }

    T WithAdapters<T>(T model, Trainer.Lora.LoraWeights? adapters) where T : CausalLm
    {
        if (adapters is not null) Trainer.Lora.LoraModel.Attach(model, adapters);
        return model;
    }

    public static IEnumerable<string> ModelNames() => ModelCatalog.Names;

    public static ModelBinding Resolve(string model, string llmcPath, bool bf16, long seed)
    {
        if (llmcPath.Length > 0)
        {
            ModelConfig cfg;
            try { cfg = LlmcWeights.ReadConfig(llmcPath); }
            catch (LlmcFileException e) { throw new RuntimeFailure($"--llmc_filepath: {e.Message}"); }
            return new ModelBinding { Config = cfg, Name = cfg.Name, WeightFile = llmcPath, Seed = seed, BFloat16 = bf16 };
        }
        if (!ModelCatalog.Contains(model))
            throw new UsageException($"--model: '{model}' is not one of {string.Join("|", ModelCatalog.Names)}");
        var c = ModelCatalog.Get(model);
        return new ModelBinding { Config = c, Name = c.Name, Seed = seed, BFloat16 = bf16 };
    }

    /// <summary>A whole model on <paramref name="device"/>: seeded, or from the llm.c weight file.</summary>
    CausalLm Build(Device device, ScalarType dtype)
    {
        var m = ModelFactory.Create(Config, Seed, device, dtype);
        if (WeightFile is not null)
        {
            try { LlmcWeights.LoadInto(m, WeightFile); }
            catch (LlmcFileException e) { m.Dispose(); throw new RuntimeFailure($"--llmc_filepath: {e.Message}"); }
        }
        return m;
    }

    ScalarType Dtype => BFloat16 ? ScalarType.BFloat16 : ScalarType.Float32;

    /// <summary>One replica on a device (data parallelism, single device).</summary>
    public ReplicaFactory Factory => device => { using var ad = InitialAdapters(); return WithAdapters(Build(device, Dtype), ad); };

    /// <summary>
    /// Every rank's model: replicas when the layout does not split the model; otherwise one full float32 model is
    /// built on the CPU (seeded or from the weight file) and each rank gets its slice, cast and moved — its
    /// tensor-parallel shard, or under pipeline parallelism its stage's chunks (of its TP shard) — so a TP/PP run
    /// starts from exactly the single-device parameters. LoRA adapters are drawn (or read) once, as a single-device
    /// run draws them, and every rank takes its part: its layers' adapters, sliced like the layers they wrap.
    /// </summary>
    public RankModelFactory RankFactory => ranks =>
    {
        using var adapters = InitialAdapters();
        if (ranks.All(r => r.Groups.Layout.Tp == 1 && r.Groups.Layout.Pp == 1)) return ranks.Select(r => (nn.Module<Tensor, Tensor>)WithAdapters(Build(r.Device, Dtype), adapters)).ToArray();
        using var full = Build(CPU, ScalarType.Float32);
        return ranks.Select(r => Slice(full, r, adapters)).ToArray();
    };

    nn.Module<Tensor, Tensor> Slice(CausalLm full, RankPlacement r, Trainer.Lora.LoraWeights? adapters)
    {
        var l = r.Groups.Layout;
        if (l.Pp == 1) return WithAdapters(TensorParallelModels.FromFull(full, r.Device, Dtype, r.Groups.Tp, l.Sp), adapters);
        var stage = PipelineStageModel.FromFull(full, r.Device, Dtype, r.Groups.Tp, l.Sp, r.Groups.Coord.Pp, l.Pp, l.Vpp);
        // LoRA: every chunk takes its own blocks' adapters from the same full set the single-device model attaches.
        if (adapters is not null) Trainer.Lora.LoraModel.Attach(stage, adapters);
        return stage;
    }

    /// <summary>
    /// Tokens of <paramref name="path"/>, or of the embedded default dataset (train or val split, in the model family's
    /// token width) when null; checked against the model family's token width (GPT-2 uint16, LLaMA-3 uint32, as
    /// InfiniTrain reads them) and the vocabulary.
    /// </summary>
    public int[] LoadTokens(string? path, string flag, bool embeddedVal = false)
    {
        int[] tokens;
        var width = EmbeddedData.FormatFor(Config.Kind);
        try
        {
            using var f = path is null ? EmbeddedData.Open(width, embeddedVal) : TokenFile.Open(path);
            if (f.Format != width)
                throw new RuntimeFailure($"{flag}: '{f.Source}' holds {Describe(f.Format)}, but model '{Name}' ({Config.Kind}) reads {Describe(width)}; " +
                    $"tokenize the text for it (Trainer prepare-data --format={(width == TokenFormat.Gpt2 ? "gpt2" : "llama3")})");
            if (f.Count > int.MaxValue) throw new RuntimeFailure($"{flag}: '{path}' has {f.Count} tokens, more than this trainer loads at once");
            tokens = f.ReadAll();
        }
        catch (LlmcFileException e) { throw new RuntimeFailure($"{flag}: {e.Message}"); }
        for (int i = 0; i < tokens.Length; i++)
            if (tokens[i] >= Config.VocabSize)
                throw new RuntimeFailure($"{flag}: '{path ?? "embedded:" + EmbeddedData.Name}': token {i} has id {tokens[i]}, outside the vocabulary of model '{Name}' (V = {Config.VocabSize}); was the file tokenized for another model?");
        return tokens;
    }

    static string Describe(TokenFormat f) => f == TokenFormat.Gpt2
        ? $"GPT-2 uint16 tokens (magic {TokenFile.Gpt2Magic})"
        : $"LLaMA-3 uint32 tokens (magic {TokenFile.Llama3Magic})";
}
