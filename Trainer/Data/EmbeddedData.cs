using System.Reflection;
using System.Security.Cryptography;

namespace Trainer.Data;

/// <summary>
/// The default dataset that ships inside Trainer.dll (see Trainer/Data/Embedded/SOURCE.md): ~0.8 MB of public-domain
/// English (King James Bible: Genesis, Exodus, Ruth, Esther, Job, Psalms, Proverbs), pre-tokenized with the GPT-2 BPE as
/// `prepare-data --input=kjv.txt --val_output=... --val_tokens=32768` produces it: the token stream is
/// [EOT] + BPE(text); val = its first 32,768 tokens, train = the remaining 163,605 (llm.c's tinyshakespeare split).
/// Both token widths are embedded: GPT-2 (uint16, magic 20240520) and LLaMA-3 (uint32, magic 20240801; same GPT-2 ids).
/// </summary>
public static class EmbeddedData
{
    public const string Name = "kjv";
    public const int ValTokens = 32768;

    static string ResourceName(TokenFormat format, bool val) =>
        $"Trainer.Data.Embedded.{Name}_{(format == TokenFormat.Gpt2 ? "gpt2" : "llama3")}_{(val ? "val" : "train")}.bin";

    static byte[] Resource(string name)
    {
        var asm = typeof(EmbeddedData).Assembly;
        using var s = asm.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"embedded resource '{name}' missing from {asm.GetName().Name}");
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    /// <summary>The source text (UTF-8, ASCII in practice).</summary>
    public static string Text() => System.Text.Encoding.UTF8.GetString(Resource($"Trainer.Data.Embedded.{Name}.txt"));

    /// <summary>The embedded token file, in memory (no disk access).</summary>
    public static TokenFile Open(TokenFormat format, bool val) =>
        TokenFile.FromBytes(Resource(ResourceName(format, val)), $"embedded:{Name}_{(format == TokenFormat.Gpt2 ? "gpt2" : "llama3")}_{(val ? "val" : "train")}.bin");

    public static TokenFile OpenTrain(TokenFormat format = TokenFormat.Gpt2) => Open(format, val: false);
    public static TokenFile OpenVal(TokenFormat format = TokenFormat.Gpt2) => Open(format, val: true);

    /// <summary>
    /// A path on disk holding the embedded token file (for code that wants a path, e.g. `--input_bin` defaults).
    /// Extracted once into <paramref name="directory"/> (default: {temp}/trainer-embedded-data), named with a content
    /// hash so stale copies are never reused; the write is atomic, so concurrent processes are safe.
    /// </summary>
    public static string ExtractedPath(TokenFormat format, bool val, string? directory = null)
    {
        var bytes = Resource(ResourceName(format, val));
        var hash = Convert.ToHexString(SHA256.HashData(bytes))[..12].ToLowerInvariant();
        var dir = directory ?? System.IO.Path.Combine(System.IO.Path.GetTempPath(), "trainer-embedded-data");
        var file = System.IO.Path.Combine(dir, $"{Name}_{(format == TokenFormat.Gpt2 ? "gpt2" : "llama3")}_{(val ? "val" : "train")}-{hash}.bin");
        if (!File.Exists(file) || new FileInfo(file).Length != bytes.Length)
            AtomicFile.Write(file, s => s.Write(bytes));
        return file;
    }

    public static string TrainPath(TokenFormat format = TokenFormat.Gpt2, string? directory = null) => ExtractedPath(format, false, directory);
    public static string ValPath(TokenFormat format = TokenFormat.Gpt2, string? directory = null) => ExtractedPath(format, true, directory);
    /// <summary>GPT-2 (uint16) training tokens, as a path.</summary>
    public static string GptTokensPath() => TrainPath(TokenFormat.Gpt2);
    /// <summary>The token width a model kind reads: GPT-2 → uint16 files, LLaMA-3 → uint32 files.</summary>
    public static TokenFormat FormatFor(Trainer.Models.ModelKind kind) => kind == Trainer.Models.ModelKind.GPT2 ? TokenFormat.Gpt2 : TokenFormat.Llama3;
}
