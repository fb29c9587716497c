using Trainer.Cli;
using Trainer.Data;
using Trainer.Models;
using Trainer.Parallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Trainer.Training;

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
    /// <summary>Identity checked on resume: the full configuration (and the weight file it started from).</summary>
    public string Description => Config.ToString() + (WeightFile is null ? "" : $" from {Path.GetFileName(WeightFile)}");

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
    public ReplicaFactory Factory => device => Build(device, Dtype);

    /// <summary>
    /// Every rank's model: replicas when the layout does not split the model; otherwise one full float32 model is
    /// built on the CPU (seeded or from the weight file) and each rank gets its slice, cast and moved — its
    /// tensor-parallel shard, or under pipeline parallelism its stage's chunks (of its TP shard) — so a TP/PP run
    /// starts from exactly the single-device parameters.
    /// </summary>
    public RankModelFactory RankFactory => ranks =>
    {
        if (ranks.All(r => r.Groups.Layout.Tp == 1 && r.Groups.Layout.Pp == 1)) return ranks.Select(r => (nn.Module<Tensor, Tensor>)Build(r.Device, Dtype)).ToArray();
        using var full = Build(CPU, ScalarType.Float32);
        return ranks.Select(r => Slice(full, r)).ToArray();
    };

    nn.Module<Tensor, Tensor> Slice(CausalLm full, RankPlacement r)
    {
        var l = r.Groups.Layout;
        if (l.Pp == 1) return TensorParallelModels.FromFull(full, r.Device, Dtype, r.Groups.Tp, l.Sp);
        return PipelineStageModel.FromFull(full, r.Device, Dtype, r.Groups.Tp, l.Sp, r.Groups.Coord.Pp, l.Pp, l.Vpp);
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
