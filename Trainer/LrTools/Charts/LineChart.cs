using System.Text;

namespace Trainer.LrTools.Charts;

/// <summary>How consecutive points of a series are joined.</summary>
public enum SeriesStyle
{
    /// <summary>Straight segments (loss curves, anything sampled).</summary>
    Line,
    /// <summary>Each value holds until the next point's x, then jumps vertically (a learning rate per step).</summary>
    Steps,
}

public readonly record struct ChartPoint(double X, double Y);

/// <summary>A named series of points in x order. Non-finite points (and non-positive y on a log axis) break the line.</summary>
public sealed record ChartSeries(string Name, IReadOnlyList<ChartPoint> Points, SeriesStyle Style = SeriesStyle.Line)
{
    public static ChartSeries From(string name, IEnumerable<(double X, double Y)> points, SeriesStyle style = SeriesStyle.Line) =>
        new(name, points.Select(p => new ChartPoint(p.X, p.Y)).ToArray(), style);
}

/// <summary>Where the plot area of a rendered chart lies and how data maps into it (pixels for PNG, cells for ASCII).</summary>
public sealed record PlotFrame(int Left, int Top, int Width, int Height, ChartAxis X, ChartAxis Y)
{
    /// <summary>The pixel (or cell) column of <paramref name="x"/>: Left at X.Min, Left+Width-1 at X.Max.</summary>
    public int Column(double x) => Left + (int)Math.Round(X.Fraction(x) * (Width - 1));
    /// <summary>The pixel (or cell) row of <paramref name="y"/>: Top+Height-1 at Y.Min, Top at Y.Max.</summary>
    public int Row(double y) => Top + (int)Math.Round((1 - Y.Fraction(y)) * (Height - 1));
}

/// <summary>
/// A line chart of one or more named series (each with its own x range) rendered as PNG bytes (<see cref="ToPng"/>,
/// own encoder and built-in 5×7 font: axes, grid, tick labels, legend, title) or as terminal text (<see cref="ToAscii"/>:
/// one glyph per series, min/max labels). Immutable; linear or logarithmic y.
/// </summary>
public sealed record LineChart(IReadOnlyList<ChartSeries> Series)
{
    public string? Title { get; init; }
    public string XLabel { get; init; } = "x";
    public string YLabel { get; init; } = "y";
    public bool LogY { get; init; }

    /// <summary>Tableau-like palette: distinct on white, in series order (repeats after 10).</summary>
    public static readonly IReadOnlyList<Rgb> Palette =
    [
        new(31, 119, 180), new(255, 127, 14), new(44, 160, 44), new(214, 39, 40), new(148, 103, 189),
        new(140, 86, 75), new(227, 119, 194), new(127, 127, 127), new(188, 189, 34), new(23, 190, 207),
    ];

    /// <summary>ASCII glyphs, one per series, in series order (repeats after 8).</summary>
    public static readonly string Glyphs = "*+ox#@%&";

    public static Rgb ColorOf(int series) => Palette[series % Palette.Count];
    public static char GlyphOf(int series) => Glyphs[series % Glyphs.Length];

    bool Plottable(ChartPoint p) => double.IsFinite(p.X) && double.IsFinite(p.Y) && (!LogY || p.Y > 0);

    (double X0, double X1, double Y0, double Y1) DataRange()
    {
        if (Series.Count == 0) throw new ArgumentException("a chart needs at least one series");
        double x0 = double.PositiveInfinity, x1 = double.NegativeInfinity, y0 = double.PositiveInfinity, y1 = double.NegativeInfinity;
        foreach (var s in Series)
            foreach (var p in s.Points)
                if (Plottable(p))
                {
                    x0 = Math.Min(x0, p.X); x1 = Math.Max(x1, p.X);
                    y0 = Math.Min(y0, p.Y); y1 = Math.Max(y1, p.Y);
                }
        if (x0 > x1)
            throw new ArgumentException(LogY ? "nothing to plot on a logarithmic axis: no point has a finite positive y" : "nothing to plot: no point has finite x and y");
        return (x0, x1, y0, y1);
    }

    // ---------------------------------------------------------------- PNG

    const int MinPngWidth = 160, MinPngHeight = 120;

    /// <summary>The plot area and axes of the PNG rendering at this size.</summary>
    public PlotFrame PngFrame(int width, int height) => Layout(width, height).Frame;

    sealed record PngLayout(PlotFrame Frame, int Scale, int TitleScale);

    PngLayout Layout(int width, int height)
    {
        if (width < MinPngWidth || height < MinPngHeight)
            throw new ArgumentOutOfRangeException(nameof(width), $"a PNG chart needs at least {MinPngWidth}x{MinPngHeight} pixels (got {width}x{height})");
        var (x0, x1, y0, y1) = DataRange();
        int scale = width >= 1400 && height >= 800 ? 2 : 1, titleScale = scale + 1;
        int th = BitmapFont.Height(scale);
        int plotHeightGuess = height - 60 * scale;
        var yAxis = ChartAxis.Create(y0, y1, LogY, 0.05, Math.Clamp(plotHeightGuess / (th * 5), 2, 10));
        int labelW = yAxis.Ticks.Select(t => BitmapFont.Measure(t.Label, scale)).DefaultIfEmpty(0).Max();
        int left = 10 * scale + labelW + 6 * scale;
        int top = (Title is { Length: > 0 } ? BitmapFont.Height(titleScale) + 10 * scale : 0) + th + 12 * scale; // title, y label
        int bottom = 6 * scale + th + 8 * scale + th + 8 * scale;   // tick labels, x label
        int xLabelW = Math.Max(BitmapFont.Measure(Short(x1), scale), BitmapFont.Measure(Short(x0), scale));
        int right = Math.Max(16 * scale, xLabelW / 2 + 6 * scale);
        int pw = width - left - right, ph = height - top - bottom;
        if (pw < 40 || ph < 30) throw new ArgumentOutOfRangeException(nameof(width), $"{width}x{height} pixels leave no room to plot; make the chart larger");
        var xAxis = ChartAxis.Create(x0, x1, false, 0.0, Math.Clamp(pw / (xLabelW + 40 * scale), 2, 12));
        return new PngLayout(new PlotFrame(left, top, pw, ph, xAxis, yAxis), scale, titleScale);
    }

    static string Short(double v) => ChartAxis.Short(v, 6);

    /// <summary>Renders the chart as an 8-bit RGB PNG of <paramref name="width"/>×<paramref name="height"/> pixels.</summary>
    public byte[] ToPng(int width = 800, int height = 480)
    {
        var c = Render(width, height);
        return PngEncoder.Encode(c.Width, c.Height, 3, c.Pixels);
    }

    /// <summary>Renders the chart into a raster (what <see cref="ToPng"/> encodes).</summary>
    public Canvas Render(int width = 800, int height = 480)
    {
        var (f, s, ts) = Layout(width, height);
        var ink = new Rgb(40, 40, 40);
        var grid = new Rgb(228, 228, 228);
        var axisGray = new Rgb(150, 150, 150);
        var c = new Canvas(width, height, Rgb.White);
        int th = BitmapFont.Height(s);
        int right = f.Left + f.Width - 1, bottom = f.Top + f.Height - 1;

        foreach (var (v, label) in f.Y.Ticks)
        {
            int y = f.Row(v);
            if (y < f.Top || y > bottom) continue;
            c.HLine(f.Left, right, y, grid);
            c.HLine(f.Left - 4 * s, f.Left - 1, y, ink);
            c.Text(f.Left - 6 * s - BitmapFont.Measure(label, s), y - th / 2, label, ink, s);
        }
        foreach (var (v, label) in f.X.Ticks)
        {
            int x = f.Column(v);
            if (x < f.Left || x > right) continue;
            c.VLine(x, f.Top, bottom, grid);
            c.VLine(x, bottom + 1, bottom + 4 * s, ink);
            int w = BitmapFont.Measure(label, s);
            c.Text(Math.Clamp(x - w / 2, 0, width - w), bottom + 6 * s, label, ink, s);
        }
        c.StrokeRect(f.Left - 1, f.Top - 1, f.Width + 2, f.Height + 2, axisGray);
        c.VLine(f.Left - 1, f.Top - 1, bottom + 1, ink);
        c.HLine(f.Left - 1, right + 1, bottom + 1, ink);

        // Axis names: x centred below the tick labels; y above the axis, left-aligned; title on top.
        int xw = BitmapFont.Measure(XLabel, s);
        c.Text(f.Left + (f.Width - xw) / 2, bottom + 6 * s + th + 8 * s, XLabel, ink, s);
        if (YLabel.Length > 0) c.Text(Math.Max(2, f.Left - 6 * s - BitmapFont.Measure(YLabel, s) / 2), f.Top - th - 8 * s, YLabel, ink, s);
        if (Title is { Length: > 0 } title)
        {
            // A long title shrinks to the label size, then is cut with "...".
            int room = width - 8;
            while (ts > 1 && BitmapFont.Measure(title, ts) > room) ts--;
            int fits = (room + 1) / (BitmapFont.Advance * ts);
            if (title.Length > fits) title = title[..Math.Max(0, fits - 3)] + "...";
            int tw = BitmapFont.Measure(title, ts);
            c.Text(Math.Max(2, (width - tw) / 2), 6 * s, title, ink, ts);
        }

        var clip = new ClipRect(f.Left, f.Top, right, bottom);
        int thickness = Math.Max(2, s + 1);
        for (int i = 0; i < Series.Count; i++) DrawSeries(c, f, Series[i], ColorOf(i), thickness, clip);
        DrawLegend(c, f, s);
        return c;
    }

    void DrawSeries(Canvas c, PlotFrame f, ChartSeries series, Rgb color, int thickness, ClipRect clip)
    {
        bool have = false;
        int px = 0, py = 0;
        foreach (var p in series.Points)
        {
            if (!Plottable(p)) { have = false; continue; }
            int x = f.Column(p.X), y = f.Row(p.Y);
            if (!have) c.Line(x, y, x, y, color, thickness, clip);
            else if (series.Style == SeriesStyle.Steps)
            {
                c.Line(px, py, x, py, color, thickness, clip);
                c.Line(x, py, x, y, color, thickness, clip);
            }
            else c.Line(px, py, x, y, color, thickness, clip);
            px = x; py = y; have = true;
        }
    }

    void DrawLegend(Canvas c, PlotFrame f, int s)
    {
        var named = Enumerable.Range(0, Series.Count).Where(i => Series[i].Name.Length > 0).ToArray();
        if (named.Length == 0 || (Series.Count == 1 && named.Length == 1 && Title is { Length: > 0 })) return;
        int th = BitmapFont.Height(s), swatch = 18 * s, gap = 6 * s, rowH = th + 6 * s;
        int textW = named.Max(i => BitmapFont.Measure(Series[i].Name, s));
        int w = gap + swatch + gap + textW + gap, h = gap + named.Length * rowH - 6 * s + gap;
        int x = f.Left + f.Width - w - 8 * s, y = f.Top + 8 * s;
        if (x < f.Left) x = f.Left;
        c.FillRect(x, y, w, h, Rgb.White);
        c.StrokeRect(x, y, w, h, new Rgb(150, 150, 150));
        for (int k = 0; k < named.Length; k++)
        {
            int i = named[k];
            int ry = y + gap + k * rowH;
            c.FillRect(x + gap, ry + th / 2 - s, swatch, Math.Max(2, 2 * s), ColorOf(i));
            c.Text(x + gap + swatch + gap, ry, Series[i].Name, new Rgb(40, 40, 40), s);
        }
    }

    // ---------------------------------------------------------------- ASCII

    /// <summary>The plot area (in character cells) of the ASCII rendering at this size.</summary>
    public PlotFrame AsciiFrame(int width, int height) => AsciiLayout(width, height).Frame;

    sealed record TextLayout(PlotFrame Frame, string[] YLabels, int LabelWidth, bool HasTitle);

    TextLayout AsciiLayout(int width, int height)
    {
        var (x0, x1, y0, y1) = DataRange();
        bool hasTitle = Title is { Length: > 0 };
        int rows = height - (hasTitle ? 1 : 0) - 3; // x axis, x labels, legend
        if (rows < 3 || width < 24)
            throw new ArgumentOutOfRangeException(nameof(width), $"an ASCII chart needs at least 24 columns and {6 + (hasTitle ? 1 : 0)} lines (got {width}x{height})");
        var y = ChartAxis.Create(y0, y1, LogY, 0.0, 3);
        double mid = LogY ? Math.Sqrt(y.Min * y.Max) : (y.Min + y.Max) / 2;
        string[] labels = [ChartAxis.Short(y.Max, 4), ChartAxis.Short(mid, 4), ChartAxis.Short(y.Min, 4)];
        int lw = labels.Max(l => l.Length);
        int cols = width - lw - 2;
        if (cols < 10) throw new ArgumentOutOfRangeException(nameof(width), $"{width} columns leave no room to plot; make the chart wider");
        var x = ChartAxis.Create(x0, x1, false, 0.0, 3);
        var frame = new PlotFrame(lw + 2, hasTitle ? 1 : 0, cols, rows, x, y);
        return new TextLayout(frame, labels, lw, hasTitle);
    }

    /// <summary>
    /// Renders the chart as exactly <paramref name="height"/> lines of at most <paramref name="width"/> characters
    /// (each ending in '\n'): optional title, the plot with max/mid/min y labels, the x axis with its range, and a
    /// legend of glyphs. Later series draw over earlier ones.
    /// </summary>
    public string ToAscii(int width = 80, int height = 20)
    {
        var (f, labels, lw, hasTitle) = AsciiLayout(width, height);
        var grid = new char[f.Height][];
        for (int r = 0; r < f.Height; r++) grid[r] = Enumerable.Repeat(' ', f.Width).ToArray();

        for (int i = 0; i < Series.Count; i++)
        {
            char g = GlyphOf(i);
            var s = Series[i];
            bool have = false;
            int pc = 0, pr = 0;
            foreach (var p in s.Points)
            {
                if (!Plottable(p)) { have = false; continue; }
                int col = f.Column(p.X) - f.Left, row = f.Row(p.Y) - f.Top;
                if (!have) Mark(grid, col, row, row, g);
                else if (s.Style == SeriesStyle.Steps)
                {
                    for (int cc = Math.Min(pc, col); cc <= Math.Max(pc, col); cc++) Mark(grid, cc, pr, pr, g);
                    Mark(grid, col, pr, row, g);
                }
                else
                {
                    // Walk the columns between the two points; fill each column's vertical span so slopes stay connected.
                    int step = col >= pc ? 1 : -1;
                    double prevRow = pr;
                    for (int cc = pc; ; cc += step)
                    {
                        double t = col == pc ? 1 : (cc - pc + 0.5 * step) / (double)(col - pc);
                        double rAt = pr + (row - pr) * Math.Clamp(t, 0, 1);
                        Mark(grid, cc, (int)Math.Round(prevRow), (int)Math.Round(rAt), g);
                        prevRow = rAt;
                        if (cc == col) break;
                    }
                    Mark(grid, col, row, row, g);
                }
                pc = col; pr = row; have = true;
            }
        }

        var sb = new StringBuilder();
        if (hasTitle) sb.Append(Fit(Center(Title!, width), width)).Append('\n');
        int midRow = (f.Height - 1) / 2;
        for (int r = 0; r < f.Height; r++)
        {
            string label = r == 0 ? labels[0] : r == f.Height - 1 ? labels[2] : r == midRow && f.Height >= 5 ? labels[1] : "";
            char axis = label.Length > 0 ? '+' : '|';
            sb.Append(label.PadLeft(lw)).Append(' ').Append(axis).Append(new string(grid[r]).TrimEnd()).Append('\n');
        }
        sb.Append(new string(' ', lw + 1)).Append('+').Append(new string('-', f.Width)).Append('\n');
        string xl = ChartAxis.Short(f.X.Min, 6), xr = ChartAxis.Short(f.X.Max, 6);
        string xname = XLabel.Length > 0 ? $"{XLabel}" : "";
        var axisLine = new char[width];
        Array.Fill(axisLine, ' ');
        Put(axisLine, lw + 2, xl);
        Put(axisLine, lw + 2 + (f.Width - xname.Length) / 2, xname);
        Put(axisLine, width - xr.Length, xr);
        sb.Append(new string(axisLine).TrimEnd()).Append('\n');
        string legend = (YLabel.Length > 0 ? YLabel + (LogY ? " (log)" : "") + ": " : "") +
                        string.Join("  ", Series.Select((s, i) => $"{GlyphOf(i)} {(s.Name.Length > 0 ? s.Name : $"series {i}")}"));
        sb.Append(Fit(new string(' ', lw + 2) + legend, width)).Append('\n');
        return sb.ToString();
    }

    static void Mark(char[][] grid, int col, int r0, int r1, char g)
    {
        if (col < 0 || col >= grid[0].Length) return;
        for (int r = Math.Max(0, Math.Min(r0, r1)); r <= Math.Min(grid.Length - 1, Math.Max(r0, r1)); r++) grid[r][col] = g;
    }

    static void Put(char[] line, int at, string s)
    {
        for (int i = 0; i < s.Length; i++)
            if (at + i >= 0 && at + i < line.Length) line[at + i] = s[i];
    }

    static string Center(string s, int width) => s.Length >= width ? s : new string(' ', (width - s.Length) / 2) + s;
    static string Fit(string s, int width) => (s.Length <= width ? s : s[..(width - 3)] + "...").TrimEnd();
}
