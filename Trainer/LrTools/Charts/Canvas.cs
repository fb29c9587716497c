namespace Trainer.LrTools.Charts;

/// <summary>An 8-bit colour.</summary>
public readonly record struct Rgb(byte R, byte G, byte B)
{
    public static readonly Rgb White = new(255, 255, 255), Black = new(0, 0, 0);
    public override string ToString() => $"#{R:x2}{G:x2}{B:x2}";
}

/// <summary>An RGB raster (row-major, 3 bytes per pixel) with clipped drawing primitives and the built-in font.</summary>
public sealed class Canvas
{
    public int Width { get; }
    public int Height { get; }
    /// <summary>RGB bytes, row by row, top row first.</summary>
    public byte[] Pixels { get; }

    public Canvas(int width, int height, Rgb background)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"canvas must be at least 1x1 (got {width}x{height})");
        Width = width; Height = height;
        Pixels = new byte[checked(width * height * 3)];
        FillRect(0, 0, width, height, background);
    }

    public Rgb Get(int x, int y)
    {
        int i = (y * Width + x) * 3;
        return new Rgb(Pixels[i], Pixels[i + 1], Pixels[i + 2]);
    }

    public void Set(int x, int y, Rgb c)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height) return;
        int i = (y * Width + x) * 3;
        Pixels[i] = c.R; Pixels[i + 1] = c.G; Pixels[i + 2] = c.B;
    }

    /// <summary>Sets a pixel only inside the rectangle [x0, x1] × [y0, y1] (inclusive).</summary>
    void SetClipped(int x, int y, Rgb c, in ClipRect clip)
    {
        if (x < clip.X0 || x > clip.X1 || y < clip.Y0 || y > clip.Y1) return;
        Set(x, y, c);
    }

    public void FillRect(int x, int y, int w, int h, Rgb c)
    {
        int x0 = Math.Max(0, x), y0 = Math.Max(0, y), x1 = Math.Min(Width, x + w), y1 = Math.Min(Height, y + h);
        for (int yy = y0; yy < y1; yy++)
            for (int xx = x0; xx < x1; xx++) Set(xx, yy, c);
    }

    public void HLine(int x0, int x1, int y, Rgb c) { for (int x = Math.Min(x0, x1); x <= Math.Max(x0, x1); x++) Set(x, y, c); }
    public void VLine(int x, int y0, int y1, Rgb c) { for (int y = Math.Min(y0, y1); y <= Math.Max(y0, y1); y++) Set(x, y, c); }

    public void StrokeRect(int x, int y, int w, int h, Rgb c)
    {
        HLine(x, x + w - 1, y, c); HLine(x, x + w - 1, y + h - 1, c);
        VLine(x, y, y + h - 1, c); VLine(x + w - 1, y, y + h - 1, c);
    }

    /// <summary>A line of <paramref name="thickness"/> pixels (square brush) between two pixel centres, clipped to <paramref name="clip"/>.</summary>
    public void Line(int x0, int y0, int x1, int y1, Rgb c, int thickness, ClipRect clip)
    {
        int dx = Math.Abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
        int dy = -Math.Abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
        int err = dx + dy;
        int lo = -(thickness - 1) / 2, hi = thickness / 2;
        while (true)
        {
            for (int oy = lo; oy <= hi; oy++)
                for (int ox = lo; ox <= hi; ox++) SetClipped(x0 + ox, y0 + oy, c, clip);
            if (x0 == x1 && y0 == y1) break;
            int e2 = 2 * err;
            if (e2 >= dy) { err += dy; x0 += sx; }
            if (e2 <= dx) { err += dx; y0 += sy; }
        }
    }

    /// <summary>Draws <paramref name="text"/> with its top-left corner at (x, y).</summary>
    public void Text(int x, int y, string text, Rgb c, int scale = 1)
    {
        for (int i = 0; i < text.Length; i++)
        {
            int gx = x + i * BitmapFont.Advance * scale;
            for (int row = 0; row < BitmapFont.Rows; row++)
                for (int col = 0; col < BitmapFont.GlyphWidth; col++)
                    if (BitmapFont.Ink(text[i], col, row))
                        FillRect(gx + col * scale, y + row * scale, scale, scale, c);
        }
    }
}

/// <summary>An inclusive pixel rectangle that drawing is clipped to.</summary>
public readonly record struct ClipRect(int X0, int Y0, int X1, int Y1);
