using System.Runtime.InteropServices;
using System.Text;

namespace Trainer.Data;

/// <summary>
/// Token id → bytes, to print sampled text (InfiniTrain's <c>--tokenizer_bin</c>): llm.c's tokenizer file, or the
/// embedded GPT-2 BPE (<see cref="Embedded"/>). llm.c's file: a 1024-byte header of 256 little-endian uint32 ([0] magic
/// 20240328 for GPT-2 or 20240801 for LLaMA-3, [1] version 1 or 2, [2] vocabulary size, [3] the end-of-text id in
/// version 2), then per token one length byte and that many bytes.
/// </summary>
public sealed class TokenizerFile
{
    public const int Gpt2Magic = 20240328, Llama3Magic = 20240801;
    /// <summary>The source naming the embedded GPT-2 BPE instead of a file.</summary>
    public const string Embedded = "embedded:gpt2";

    readonly byte[][]? _tokens;   // null: the embedded GPT-2 BPE

    TokenizerFile(string source, int magic, int vocabSize, int endOfText, byte[][]? tokens)
    {
        Source = source; Magic = magic; VocabSize = vocabSize; EndOfText = endOfText; _tokens = tokens;
    }

    public string Source { get; }
    public int Magic { get; }
    public int VocabSize { get; }
    public int EndOfText { get; }

    /// <summary>"The meaning of life is", the prompt InfiniTrain's generation starts from, in this vocabulary.</summary>
    public IReadOnlyList<int> Prompt => Magic == Gpt2Magic ? [464, 3616, 286, 1204, 318] : [791, 7438, 315, 2324, 374];

    /// <summary>The text of <paramref name="ids"/>: their bytes joined, then read as UTF-8 (a character split over two
    /// tokens comes out whole; bytes that are no UTF-8 read as U+FFFD). An id outside the table is "[INVALID_TOKEN]".</summary>
    public string Decode(IEnumerable<int> ids)
    {
        if (_tokens is null)
        {
            // The BPE decodes a run of ids as one byte string; runs are cut only at ids it does not know.
            var text = new StringBuilder();
            var run = new List<int>();
            void Flush() { if (run.Count > 0) text.Append(Gpt2Tokenizer.Instance.Decode(run)); run.Clear(); }
            foreach (int id in ids)
            {
                if (id >= 0 && id < VocabSize) run.Add(id);
                else { Flush(); text.Append(Invalid); }
            }
            Flush();
            return text.ToString();
        }
        var bytes = new List<byte>();
        foreach (int id in ids) bytes.AddRange(id >= 0 && id < _tokens.Length ? _tokens[id] : Encoding.UTF8.GetBytes(Invalid));
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    const string Invalid = "[INVALID_TOKEN]";

    /// <summary>Reads llm.c's tokenizer file at <paramref name="source"/>, or the embedded GPT-2 BPE for
    /// <see cref="Embedded"/>. Throws <see cref="LlmcFileException"/> naming the file and what is wrong.</summary>
    public static TokenizerFile Open(string source)
    {
        if (source == Embedded) return new TokenizerFile(source, Gpt2Magic, Gpt2Tokenizer.VocabSize, Gpt2Tokenizer.EndOfText, null);
        if (Directory.Exists(source)) throw new LlmcFileException(source, "tokenizer file expected, found a directory");
        if (!File.Exists(source)) throw new LlmcFileException(source, "tokenizer file not found");
        var data = File.ReadAllBytes(source);
        try { return Read(source, data); }
        catch (LlmcFileException e) when (data.Length >= 4 && BitConverter.ToInt32(data, 0) == TokenFile.Llama3Magic)
        {
            // 20240801 is also the magic of LLaMA-3 token files: say so where one is read as a tokenizer.
            throw new LlmcFileException(source, e.Problem + $"; magic {TokenFile.Llama3Magic} is also a LLaMA-3 token file's: is this one?");
        }
    }

    static TokenizerFile Read(string source, byte[] data)
    {
        if (data.Length < 1024) throw new LlmcFileException(source, $"truncated: {data.Length} bytes, shorter than the 1024-byte header");
        var h = MemoryMarshal.Cast<byte, int>(data.AsSpan(0, 1024));
        int magic = h[0], version = h[1], vocab = h[2];
        if (magic != Gpt2Magic && magic != Llama3Magic)
            throw new LlmcFileException(source, $"wrong magic {magic} (expected {Gpt2Magic} for a GPT-2 or {Llama3Magic} for a LLaMA-3 llm.c tokenizer)" +
                (magic is TokenFile.Gpt2Magic or LlmcMagic.Gpt2Weights or LlmcMagic.Llama3Weights ? "; this looks like a token or weight file" : ""));
        if (version is not (1 or 2)) throw new LlmcFileException(source, $"unsupported version {version} (expected 1 or 2)");
        if (vocab <= 0) throw new LlmcFileException(source, $"vocabulary size {vocab} in the header");
        int eot = version == 2 ? h[3] : magic == Gpt2Magic ? Gpt2Tokenizer.EndOfText : 128001;
        var tokens = new byte[vocab][];
        int at = 1024;
        for (int i = 0; i < vocab; i++)
        {
            if (at >= data.Length) throw new LlmcFileException(source, $"truncated: the header announces {vocab} tokens, the file ends at token {i}");
            int n = data[at++];
            if (at + n > data.Length) throw new LlmcFileException(source, $"truncated inside token {i} ({n} bytes announced)");
            tokens[i] = data.AsSpan(at, n).ToArray();
            at += n;
        }
        if (at != data.Length) throw new LlmcFileException(source, $"{data.Length - at} unexpected trailing bytes after the {vocab} tokens");
        if (version == 2 && (eot < 0 || eot >= vocab)) throw new LlmcFileException(source, $"end-of-text id {eot} outside the {vocab}-token vocabulary");
        return new TokenizerFile(source, magic, vocab, eot, tokens);
    }
}
