using System.Buffers.Binary;
using System.IO.Compression;
using Trainer.LrTools;

namespace Tests.LrTools;

/// <summary>Helpers for the lr preview tests: running the command in-process, assertions, temp folders, a PNG reader.</summary>
static class Kit
{
    public sealed record Result(int Exit, string Out, string Err);

    public static Result Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = PreviewCommand.Run(args, o, e);
        return new Result(rc, o.ToString(), e.ToString());
    }

    public static void True(bool ok, string what)
    {
        if (!ok) throw new Expecto.AssertException(what);
    }

    public static void Equal<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual)) throw new Expecto.AssertException($"{what}: expected {expected}, got {actual}");
    }

    public static void Contains(string haystack, string needle, string what)
    {
        if (!haystack.Contains(needle, StringComparison.Ordinal)) throw new Expecto.AssertException($"{what}: expected to contain «{needle}», got «{haystack}»");
    }

    /// <summary>A fresh empty directory, deleted after <paramref name="body"/>.</summary>
    public static void InTempDir(Action<string> body)
    {
        string dir = Path.Combine(Path.GetTempPath(), "lr-preview-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try { body(dir); }
        finally { Directory.Delete(dir, recursive: true); }
    }

    public const string StepJson = """{"type":"StepLR","step_size":50,"gamma":0.1}""";
    public const string WarmupCosineJson =
        """{"type":"SequentialLR","schedulers":[{"type":"LinearLR","start_factor":0.01,"total_iters":20},{"type":"CosineAnnealingLR","T_max":180,"eta_min":1e-5}],"milestones":[20]}""";

    // ------------------------------------------------------------------ PNG reading, independent of the encoder

    public sealed record Png(int Width, int Height, int BitDepth, int ColorType, int Channels, byte[] Raw, byte[] Pixels, List<string> Chunks)
    {
        public (byte R, byte G, byte B) At(int x, int y)
        {
            int i = (y * Width + x) * Channels;
            return (Pixels[i], Pixels[i + 1], Pixels[i + 2]);
        }
    }

    /// <summary>Bitwise CRC-32 (no table), to check the encoder's table-driven one.</summary>
    public static uint Crc(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            c ^= b;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (uint)-(int)(c & 1));
        }
        return ~c;
    }

    /// <summary>Reads a PNG, checking the signature, every chunk's CRC, IHDR, and the inflated IDAT size.</summary>
    public static Png ReadPng(byte[] file)
    {
        byte[] sig = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        True(file.Length > 8 && file.AsSpan(0, 8).SequenceEqual(sig), "PNG signature");
        int pos = 8, w = 0, h = 0, depth = 0, ctype = 0;
        var idat = new MemoryStream();
        var chunks = new List<string>();
        while (pos < file.Length)
        {
            True(pos + 12 <= file.Length, "truncated chunk header");
            int len = BinaryPrimitives.ReadInt32BigEndian(file.AsSpan(pos));
            True(len >= 0 && pos + 12 + len <= file.Length, "chunk length inside the file");
            string type = System.Text.Encoding.ASCII.GetString(file, pos + 4, 4);
            var data = file.AsSpan(pos + 8, len);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(pos + 8 + len));
            Equal(Crc(file.AsSpan(pos + 4, 4 + len)), crc, $"CRC of chunk {type}");
            chunks.Add(type);
            if (type == "IHDR")
            {
                Equal(13, len, "IHDR length");
                w = BinaryPrimitives.ReadInt32BigEndian(data); h = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                depth = data[8]; ctype = data[9];
                Equal(0, (int)data[10], "compression"); Equal(0, (int)data[11], "filter method"); Equal(0, (int)data[12], "interlace");
            }
            else if (type == "IDAT") idat.Write(data);
            pos += 12 + len;
            if (type == "IEND") break;
        }
        Equal(file.Length, pos, "nothing after IEND");
        Equal("IHDR", chunks[0], "first chunk");
        Equal("IEND", chunks[^1], "last chunk");
        Equal(8, depth, "bit depth");
        True(ctype is 2 or 6, $"colour type RGB or RGBA (got {ctype})");
        int ch = ctype == 6 ? 4 : 3;
        idat.Position = 0;
        using var z = new ZLibStream(idat, CompressionMode.Decompress);
        var raw = new MemoryStream();
        z.CopyTo(raw);
        byte[] r = raw.ToArray();
        Equal((long)h * (1 + (long)w * ch), r.LongLength, "inflated IDAT size = height × (1 + width × channels)");
        var pixels = new byte[w * h * ch];
        int stride = w * ch;
        for (int y = 0; y < h; y++)
        {
            byte filter = r[y * (stride + 1)];
            True(filter <= 4, $"row {y}: filter type {filter}");
            // The encoder writes filter 0 (None); others would need unfiltering, which this reader does not do.
            Equal((byte)0, filter, $"row {y} filter");
            Array.Copy(r, y * (stride + 1) + 1, pixels, y * stride, stride);
        }
        return new Png(w, h, depth, ctype, ch, r, pixels, chunks);
    }
}
