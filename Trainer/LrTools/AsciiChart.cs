using System.Text;

namespace Trainer.LrTools;

/// <summary>Where the plot area of an ASCII chart lies (in character cells) and how data maps into it.</summary>
public sealed record AsciiFrame(int Left, int Top, int Width, int Height, double X0, double X1, double Y0, double Y1, bool LogY)
{
    static double Fraction(double v, double lo, double hi) => hi == lo ? 0.5 : (v - lo) / (hi - lo);
    double T(double y) => LogY ? Math.Log10(y) : y;

    /// <summary>The column of <paramref name="x"/>: Left at X0, Left+Width-1 at X1.</summary>
    public int Column(double x) => Left + (int)Math.Round(Fraction(x, X0, X1) * (Width - 1));
    /// <summary>The row of <paramref name="y"/>: Top+Height-1 at Y0, Top at Y1 (log10 positions on a log axis).</summary>
    public int Row(double y) => Top + (int)Math.Round((1 - Fraction(T(y), T(Y0), T(Y1))) * (Height - 1));
}

/// <summary>
/// A <see cref="ChartSpec"/> as terminal text (<c>lr preview --format=ascii</c>): one glyph per series, max/mid/min y
/// labels, the x range and a legend. Later series draw over earlier ones.
/// </summary>
public static class AsciiChart
{
    /// <summary>Glyphs, one per series, in series order (repeats after 8).</summary>
    public const string Glyphs = "*+ox#@%&";

    public static char GlyphOf(int series) => Glyphs[series % Glyphs.Length];

    static string Label(double v) => Plots.Short(v, 4);

    /// <summary>The plot area of the chart at this size; refuses a size too small to plot in.</summary>
    public static AsciiFrame Frame(ChartSpec spec, int width, int height)
    {
        var (x0, x1, y0, y1) = spec.DataRange();
        bool hasTitle = spec.Title is { Length: > 0 };
        int rows = height - (hasTitle ? 1 : 0) - 3; // x axis, x labels, legend
        if (rows < 3 || width < 24)
            throw new ArgumentOutOfRangeException(nameof(width), $"an ASCII chart needs at least 24 columns and {6 + (hasTitle ? 1 : 0)} lines (got {width}x{height})");
        int lw = YLabels(y0, y1, spec.LogY).Max(l => l.Length);
        int cols = width - lw - 2;
        if (cols < 10) throw new ArgumentOutOfRangeException(nameof(width), $"{width} columns leave no room to plot; make the chart wider");
        return new AsciiFrame(lw + 2, hasTitle ? 1 : 0, cols, rows, x0, x1, y0, y1, spec.LogY);
    }

    static string[] YLabels(double y0, double y1, bool log) => [Label(y1), Label(log ? Math.Sqrt(y0 * y1) : (y0 + y1) / 2), Label(y0)];

    /// <summary>
    /// Exactly <paramref name="height"/> lines of at most <paramref name="width"/> characters, each ending in '\n':
    /// optional title, the plot with max/mid/min labels, the x axis with its range, and the legend.
    /// </summary>
    public static string Render(ChartSpec spec, int width = 80, int height = 20)
    {
        var f = Frame(spec, width, height);
        var grid = new char[f.Height][];
        for (int r = 0; r < f.Height; r++) grid[r] = Enumerable.Repeat(' ', f.Width).ToArray();

        for (int i = 0; i < spec.Series.Count; i++)
        {
            char g = GlyphOf(i);
            var s = spec.Series[i];
            bool have = false;
            int pc = 0, pr = 0;
            foreach (var p in s.Points)
            {
                if (!spec.Plottable(p)) { have = false; continue; }
                int col = f.Column(p.X) - f.Left, row = f.Row(p.Y) - f.Top;
                if (!have) Mark(grid, col, row, row, g);
                else if (s.Style == SeriesStyle.Steps)
                {
                    for (int c = Math.Min(pc, col); c <= Math.Max(pc, col); c++) Mark(grid, c, pr, pr, g);
                    Mark(grid, col, pr, row, g);
                }
                else
                {
                    // Walk the columns between the two points; fill each column's vertical span so slopes stay connected.
                    int step = col >= pc ? 1 : -1;
                    double prevRow = pr;
                    for (int c = pc; ; c += step)
                    {
                        double t = col == pc ? 1 : (c - pc + 0.5 * step) / (double)(col - pc);
                        double rAt = pr + (row - pr) * Math.Clamp(t, 0, 1);
                        Mark(grid, c, (int)Math.Round(prevRow), (int)Math.Round(rAt), g);
                        prevRow = rAt;
                        if (c == col) break;
                    }
                    Mark(grid, col, row, row, g);
                }
                pc = col; pr = row; have = true;
            }
        }

        var labels = YLabels(f.Y0, f.Y1, f.LogY);
        int lw = f.Left - 2;
        var sb = new StringBuilder();
        if (spec.Title is { Length: > 0 } title) sb.Append(Fit(Center(title, width), width)).Append('\n');
        int midRow = (f.Height - 1) / 2;
        for (int r = 0; r < f.Height; r++)
        {
            string label = r == 0 ? labels[0] : r == f.Height - 1 ? labels[2] : r == midRow && f.Height >= 5 ? labels[1] : "";
            sb.Append(label.PadLeft(lw)).Append(' ').Append(label.Length > 0 ? '+' : '|').Append(new string(grid[r]).TrimEnd()).Append('\n');
        }
        sb.Append(new string(' ', lw + 1)).Append('+').Append(new string('-', f.Width)).Append('\n');
        var axisLine = new char[width];
        Array.Fill(axisLine, ' ');
        Put(axisLine, f.Left, Plots.Short(f.X0, 6));
        Put(axisLine, f.Left + (f.Width - spec.XLabel.Length) / 2, spec.XLabel);
        string xr = Plots.Short(f.X1, 6);
        Put(axisLine, width - xr.Length, xr);
        sb.Append(new string(axisLine).TrimEnd()).Append('\n');
        string legend = (spec.YLabel.Length > 0 ? spec.YLabel + (spec.LogY ? " (log)" : "") + ": " : "") +
                        string.Join("  ", spec.Series.Select((s, i) => $"{GlyphOf(i)} {(s.Name.Length > 0 ? s.Name : $"series {i}")}"));
        sb.Append(Fit(new string(' ', f.Left) + legend, width)).Append('\n');
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
