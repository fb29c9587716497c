using System.Text;

namespace Trainer.Data;

/// <summary>
/// A UTF-8 text file read in pieces of about <c>blockBytes</c>, each ending where <see cref="Gpt2Tokenizer.LastCut"/>
/// allows: encoding the pieces one by one gives the tokens of the whole text, in memory proportional to a piece, not
/// to the file (a corpus may be larger than memory, or than .NET's 2^30-character string). A leading BOM is dropped.
/// </summary>
public static class TextPieces
{
    public const int DefaultBlockBytes = 4 << 20;

    /// <summary>The pieces of <paramref name="path"/>; throws <see cref="IOException"/> naming the file and the byte
    /// offset of invalid UTF-8.</summary>
    public static IEnumerable<string> Read(string path, int blockBytes = DefaultBlockBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockBytes, 1);
        var decoder = new UTF8Encoding(false, throwOnInvalidBytes: true).GetDecoder();
        var bytes = new byte[blockBytes];
        var chars = new char[Encoding.UTF8.GetMaxCharCount(blockBytes)];
        var pending = new char[2 * chars.Length];   // text not yet handed out: a tail without a cut, then the new block
        int held = 0;
        long offset = 0;
        bool first = true;
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        while (true)
        {
            int n = fs.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
            bool end = n < bytes.Length;
            int count;
            try { count = decoder.GetChars(bytes, 0, n, chars, 0, flush: end); }
            catch (DecoderFallbackException e) { throw new IOException($"'{path}': not valid UTF-8 text (bad byte at offset {offset + Math.Max(0, e.Index)})", e); }
            offset += n;
            var fresh = chars.AsSpan(0, count);
            if (first && fresh.Length > 0 && fresh[0] == '\uFEFF') fresh = fresh[1..];
            if (fresh.Length > 0) first = false;
            if (held + fresh.Length > pending.Length) Array.Resize(ref pending, 2 * (held + fresh.Length));
            fresh.CopyTo(pending.AsSpan(held));
            int searched = Math.Max(0, held - 1);     // the held tail has no cut: look only where the new text begins
            held += fresh.Length;
            if (end)
            {
                if (held > 0) yield return new string(pending, 0, held);
                yield break;
            }
            int cut = Gpt2Tokenizer.LastCut(pending.AsSpan(searched, held - searched));
            if (cut <= 0) continue;                   // no cut yet (a block without white space): read on
            cut += searched;
            yield return new string(pending, 0, cut);
            Array.Copy(pending, cut, pending, 0, held - cut);
            held -= cut;
        }
    }
}
