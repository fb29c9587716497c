using System.Buffers.Binary;
using SkiaSharp;
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

    // ------------------------------------------------------------------ PNG reading and pixel checks

    /// <summary>A decoded PNG: its IHDR size, and its pixels as SkiaSharp decodes them.</summary>
    public sealed record Png(int Width, int Height, SKBitmap Bitmap)
    {
        public SKColor At(int x, int y) => Bitmap.GetPixel(x, y);
    }

    /// <summary>Reads a PNG: the signature, IHDR first with its size, and pixels that SkiaSharp decodes to that size.</summary>
    public static Png ReadPng(byte[] file)
    {
        byte[] sig = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        True(file.Length > 33 && file.AsSpan(0, 8).SequenceEqual(sig), "PNG signature");
        Equal("IHDR", System.Text.Encoding.ASCII.GetString(file, 12, 4), "first chunk");
        int w = BinaryPrimitives.ReadInt32BigEndian(file.AsSpan(16)), h = BinaryPrimitives.ReadInt32BigEndian(file.AsSpan(20));
        var bitmap = SKBitmap.Decode(file);
        True(bitmap is not null, "SkiaSharp decodes the PNG");
        Equal((w, h), (bitmap!.Width, bitmap.Height), "decoded size = IHDR size");
        return new Png(w, h, bitmap);
    }

    /// <summary>Whether a pixel is <paramref name="c"/> up to antialiasing (each channel within <paramref name="tol"/>).</summary>
    public static bool IsColor(SKColor p, ScottPlot.Color c, int tol = 48) =>
        Math.Abs(p.Red - c.R) <= tol && Math.Abs(p.Green - c.G) <= tol && Math.Abs(p.Blue - c.B) <= tol;

    /// <summary>Whether a pixel within <paramref name="radius"/> of (x, y) has the colour <paramref name="c"/>.</summary>
    public static bool Near(Png p, double x, double y, ScottPlot.Color c, int radius = 1)
    {
        int cx = (int)Math.Round(x), cy = (int)Math.Round(y);
        for (int dy = -radius; dy <= radius; dy++)
            for (int dx = -radius; dx <= radius; dx++)
            {
                int px = cx + dx, py = cy + dy;
                if (px >= 0 && py >= 0 && px < p.Width && py < p.Height && IsColor(p.At(px, py), c)) return true;
            }
        return false;
    }
}
