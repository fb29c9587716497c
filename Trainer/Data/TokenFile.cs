using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Trainer.Data;

/// <summary>Token width of an llm.c token file.</summary>
public enum TokenFormat
{
    /// <summary>magic 20240520, version 1, uint16 tokens (GPT-2).</summary>
    Gpt2,
    /// <summary>magic 20240801, version 7, uint32 tokens (LLaMA-3).</summary>
    Llama3,
}

/// <summary>A token or weight file that is missing, truncated or malformed; the message names the file and the problem.</summary>
public sealed class LlmcFileException : IOException
{
    public LlmcFileException(string path, string problem, Exception? inner = null)
        : base($"'{path}': {problem}", inner) { Path = path; Problem = problem; }
    public string Path { get; }
    public string Problem { get; }
}

/// <summary>
/// llm.c token file (as InfiniTrain reads it): 1024-byte header of 256 little-endian int32
/// ([0] magic, [1] version, [2] token count, rest 0) followed by the tokens (uint16 for GPT-2, uint32 for LLaMA-3).
/// Opened files are memory-mapped; reads are thread-safe.
/// </summary>
public sealed class TokenFile : IDisposable
{
    public const int HeaderInts = 256;
    public const int HeaderBytes = HeaderInts * 4;
    public const int Gpt2Magic = 20240520;
    public const int Gpt2Version = 1;
    public const int Llama3Magic = 20240801;
    public const int Llama3Version = 7;

    readonly MemoryMappedFile? map;
    readonly MemoryMappedViewAccessor? view;
    readonly byte[]? bytes;

    /// <summary>Where the tokens came from: a path, or "embedded:NAME".</summary>
    public string Source { get; }
    public TokenFormat Format { get; }
    public int Version { get; }
    /// <summary>Number of tokens.</summary>
    public long Count { get; }
    public int BytesPerToken => Format == TokenFormat.Gpt2 ? 2 : 4;

    TokenFile(string source, TokenFormat format, int version, long count, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte[]? bytes)
    {
        Source = source; Format = format; Version = version; Count = count; this.map = map; this.view = view; this.bytes = bytes;
    }

    public static int MagicOf(TokenFormat f) => f == TokenFormat.Gpt2 ? Gpt2Magic : Llama3Magic;
    public static int VersionOf(TokenFormat f) => f == TokenFormat.Gpt2 ? Gpt2Version : Llama3Version;

    /// <summary>"gpt2" / "llama3" (case-insensitive; also "uint16"/"uint32") → format; anything else → ArgumentException.</summary>
    public static TokenFormat ParseFormat(string s) => s.Trim().ToLowerInvariant() switch
    {
        "gpt2" or "gpt-2" or "uint16" => TokenFormat.Gpt2,
        "llama3" or "llama-3" or "uint32" => TokenFormat.Llama3,
        _ => throw new ArgumentException($"unknown token format '{s}' (use gpt2 or llama3)"),
    };

    /// <summary>Memory-maps and validates <paramref name="path"/>. Throws <see cref="LlmcFileException"/> when it is missing, truncated, or has a wrong magic/version/count.</summary>
    public static TokenFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) throw new LlmcFileException(path, "token file expected, found a directory");
        if (!File.Exists(path)) throw new LlmcFileException(path, "token file not found");
        long length = new FileInfo(path).Length;
        var header = new byte[Math.Min(length, HeaderBytes)];
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
            fs.ReadExactly(header);
        var (format, version, count) = ParseHeader(path, header, length);
        if (count == 0) return new TokenFile(path, format, version, 0, null, null, Array.Empty<byte>());
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        try
        {
            var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            return new TokenFile(path, format, version, count, map, view, null);
        }
        catch { map.Dispose(); throw; }
    }

    /// <summary>Validates and wraps an in-memory token file (e.g. an embedded resource).</summary>
    public static TokenFile FromBytes(byte[] data, string source)
    {
        var (format, version, count) = ParseHeader(source, data, data.LongLength);
        return new TokenFile(source, format, version, count, null, null, data);
    }

    static (TokenFormat, int, long) ParseHeader(string path, ReadOnlySpan<byte> header, long length)
    {
        if (length < HeaderBytes)
            throw new LlmcFileException(path, length == 0 ? "token file is empty (expected a 1024-byte header)" : $"truncated: {length} bytes, shorter than the 1024-byte header");
        var h = MemoryMarshal.Cast<byte, int>(header[..HeaderBytes]);
        int magic = h[0], version = h[1], count = h[2];
        TokenFormat format = magic switch
        {
            Gpt2Magic => TokenFormat.Gpt2,
            Llama3Magic => TokenFormat.Llama3,
            _ => throw new LlmcFileException(path, $"wrong magic {magic} (expected {Gpt2Magic} for GPT-2 uint16 tokens or {Llama3Magic} for LLaMA-3 uint32 tokens)" +
                 (magic is LlmcMagic.Gpt2Weights or LlmcMagic.Llama3Weights ? "; this looks like a weight file" : "")),
        };
        bool versionOk = format == TokenFormat.Gpt2 ? version == Gpt2Version : version is Llama3Version or 1;
        if (!versionOk)
            throw new LlmcFileException(path, $"unsupported version {version} for magic {magic} (expected {VersionOf(format)})");
        if (count < 0) throw new LlmcFileException(path, $"negative token count {count} in header");
        int bpt = format == TokenFormat.Gpt2 ? 2 : 4;
        long expected = HeaderBytes + (long)count * bpt;
        if (length < expected)
            throw new LlmcFileException(path, $"truncated: header says {count} tokens ({(long)count * bpt} bytes) but only {length - HeaderBytes} bytes follow the header");
        if (length > expected)
            throw new LlmcFileException(path, $"{length - expected} unexpected trailing bytes after the {count} tokens the header announces");
        return (format, version, count);
    }

    /// <summary>Token at position <paramref name="i"/>.</summary>
    public int this[long i]
    {
        get
        {
            Span<int> one = stackalloc int[1];
            Read(i, one);
            return one[0];
        }
    }

    /// <summary>Copies tokens [start, start+dst.Length) into <paramref name="dst"/>.</summary>
    public void Read(long start, Span<int> dst)
    {
        if (start < 0 || start + dst.Length > Count)
            throw new ArgumentOutOfRangeException(nameof(start), $"tokens [{start}, {start + dst.Length}) outside [0, {Count}) of {Source}");
        if (dst.Length == 0) return;
        long offset = HeaderBytes + start * BytesPerToken;
        if (bytes is not null)
        {
            var src = bytes.AsSpan(checked((int)offset), dst.Length * BytesPerToken);
            if (Format == TokenFormat.Gpt2) { var u = MemoryMarshal.Cast<byte, ushort>(src); for (int i = 0; i < dst.Length; i++) dst[i] = u[i]; }
            else { MemoryMarshal.Cast<byte, int>(src).CopyTo(dst); RefuseIdsAbove2To31(start, dst); }
            return;
        }
        if (Format == TokenFormat.Gpt2)
        {
            var tmp = new ushort[dst.Length];
            view!.ReadArray(offset, tmp, 0, tmp.Length);
            for (int i = 0; i < dst.Length; i++) dst[i] = tmp[i];
        }
        else
        {
            var tmp = new int[dst.Length];
            view!.ReadArray(offset, tmp, 0, tmp.Length);
            tmp.CopyTo(dst);
            RefuseIdsAbove2To31(start, dst);
        }
    }

    /// <summary>
    /// uint32 ids are handed out as int: one of 2^31 or more would read as negative (and index anything). No vocabulary
    /// comes near 2^31 ids (LLaMA-3 has 128,256), so such an id is out of vocabulary for every model.
    /// </summary>
    void RefuseIdsAbove2To31(long start, ReadOnlySpan<int> ids)
    {
        for (int i = 0; i < ids.Length; i++)
            if (ids[i] < 0)
                throw new LlmcFileException(Source, $"token {start + i} has id {(uint)ids[i]}, out of vocabulary for every model (ids must be below 2^31)");
    }

    /// <summary>Tokens [start, start+count) as a new int array.</summary>
    public int[] ReadArray(long start, int count) { var a = new int[count]; Read(start, a); return a; }

    /// <summary>All tokens (small files only).</summary>
    public int[] ReadAll() => ReadArray(0, checked((int)Count));

    /// <summary>
    /// An llm.c-style batch starting at token <paramref name="start"/>: x = tokens[start .. start+B*T), y = x shifted by one,
    /// both (B,T) int64 on <paramref name="device"/> (CPU when null). Needs start + B*T + 1 ≤ Count.
    /// </summary>
    public (Tensor X, Tensor Y) Batch(long start, int b, int t, Device? device = null)
    {
        int n = checked(b * t);
        var buf = new int[n + 1];
        Read(start, buf);
        var longs = new long[n + 1];
        for (int i = 0; i <= n; i++) longs[i] = buf[i];
        var all = torch.tensor(longs, dtype: ScalarType.Int64);
        var x = all.narrow(0, 0, n).reshape(b, t);
        var y = all.narrow(0, 1, n).reshape(b, t);
        if (device is not null && device.type != DeviceType.CPU) { x = x.to(device); y = y.to(device); }
        else { x = x.clone(); y = y.clone(); }
        all.Dispose();
        return (x, y);
    }

    /// <summary>
    /// Writes an llm.c token file atomically (temp file in the same folder, then rename). GPT-2 format requires
    /// every token in [0, 65535]; LLaMA-3 in [0, 2^31). Parent folders are created.
    /// </summary>
    public static void Write(string path, ReadOnlySpan<int> tokens, TokenFormat format)
    {
        using var w = new TokenFileWriter(path, format);
        w.Append(tokens);
        w.Commit();
    }

    public void Dispose() { view?.Dispose(); map?.Dispose(); }
}

/// <summary>Magic numbers of the llm.c files, in one place.</summary>
public static class LlmcMagic
{
    public const int Gpt2Tokens = TokenFile.Gpt2Magic;
    public const int Llama3Tokens = TokenFile.Llama3Magic;
    public const int Gpt2Weights = 20240326;
    public const int Llama3Weights = 20240803;
}

/// <summary>
/// An llm.c token file written as a stream of token runs (prepare-data of a corpus larger than memory): the tokens go
/// to a temp file behind a zero header, <see cref="Commit"/> writes the count into the header and renames the file into
/// place; disposed uncommitted, nothing is left at the path.
/// </summary>
public sealed class TokenFileWriter : IDisposable
{
    readonly PendingFile _file;
    readonly TokenFormat _format;
    readonly int _max;
    byte[] _buffer = [];

    public TokenFileWriter(string path, TokenFormat format)
    {
        _format = format;
        _max = format == TokenFormat.Gpt2 ? ushort.MaxValue : int.MaxValue;
        _file = AtomicFile.Begin(path);
        _file.Stream.Write(new byte[TokenFile.HeaderBytes]);
    }

    /// <summary>Tokens written so far.</summary>
    public long Count { get; private set; }

    /// <summary>Appends <paramref name="tokens"/>; each must fit the format, and the file at most 2^31 − 1 tokens (the
    /// header's count is an int32).</summary>
    public void Append(ReadOnlySpan<int> tokens)
    {
        for (int i = 0; i < tokens.Length; i++)
            if (tokens[i] < 0 || tokens[i] > _max)
                throw new ArgumentException($"token {tokens[i]} at position {Count + i} does not fit the {_format} token format (0..{_max})");
        if (Count + tokens.Length > int.MaxValue)
            throw new IOException($"'{_file.Path}': more than {int.MaxValue:N0} tokens, the most an llm.c token file's 32-bit count holds; split the input");
        int bytes = tokens.Length * (_format == TokenFormat.Gpt2 ? 2 : 4);
        if (_buffer.Length < bytes) _buffer = new byte[bytes];
        var data = _buffer.AsSpan(0, bytes);
        if (_format == TokenFormat.Gpt2) { var u = MemoryMarshal.Cast<byte, ushort>(data); for (int i = 0; i < tokens.Length; i++) u[i] = (ushort)tokens[i]; }
        else MemoryMarshal.AsBytes(tokens).CopyTo(data);
        _file.Stream.Write(data);
        Count += tokens.Length;
    }

    /// <summary>Writes the header and moves the file into place.</summary>
    public void Commit()
    {
        var header = new int[TokenFile.HeaderInts];
        header[0] = TokenFile.MagicOf(_format); header[1] = TokenFile.VersionOf(_format); header[2] = (int)Count;
        _file.Stream.Position = 0;
        _file.Stream.Write(MemoryMarshal.AsBytes(header.AsSpan()));
        _file.Commit();
    }

    public void Dispose() => _file.Dispose();
}

/// <summary>Write-to-temp-then-rename, so readers never see a half-written file.</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        using var file = Begin(path);
        write(file.Stream);
        file.Commit();
    }

    /// <summary>A temp file next to <paramref name="path"/> (parent folders are created), moved onto the path by
    /// <see cref="PendingFile.Commit"/>.</summary>
    public static PendingFile Begin(string path) => new(path);
}

/// <summary>A file being written beside its final path: <see cref="Commit"/> flushes it to disk and renames it into
/// place; disposed before that, the temp file is deleted and the path is untouched.</summary>
public sealed class PendingFile : IDisposable
{
    readonly string _tmp;
    bool _done;

    internal PendingFile(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        var dir = System.IO.Path.GetDirectoryName(Path)!;
        Directory.CreateDirectory(dir);
        _tmp = System.IO.Path.Combine(dir, $".{System.IO.Path.GetFileName(Path)}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Stream = new FileStream(_tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
    }

    /// <summary>The final path (absolute).</summary>
    public string Path { get; }
    public FileStream Stream { get; }

    public void Commit()
    {
        ObjectDisposedException.ThrowIf(_done, this);
        Stream.Flush(flushToDisk: true);
        Stream.Dispose();
        File.Move(_tmp, Path, overwrite: true);
        _done = true;
    }

    public void Dispose()
    {
        if (_done) return;
        _done = true;
        Stream.Dispose();
        try { if (File.Exists(_tmp)) File.Delete(_tmp); } catch { /* best effort */ }
    }
}
