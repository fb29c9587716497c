using System.Globalization;
using ScottPlot;
using SkiaSharp;

namespace Trainer.LrTools;

/// <summary>How consecutive points of a series are joined.</summary>
public enum SeriesStyle
{
    /// <summary>Straight segments (loss curves, anything sampled).</summary>
    Line,
    /// <summary>Each value holds until the next point's x, then jumps vertically: a learning rate holds for a whole step.</summary>
    Steps,
}

/// <summary>A named series of (x, y) points in x order. Non-finite points (and y ≤ 0 on a log axis) break the line.</summary>
public sealed record ChartSeries(string Name, IReadOnlyList<(double X, double Y)> Points, SeriesStyle Style = SeriesStyle.Line);

/// <summary>What a line chart shows: the series, the title and axis names, and whether y is logarithmic.</summary>
public sealed record ChartSpec(IReadOnlyList<ChartSeries> Series, string? Title = null, string XLabel = "x", string YLabel = "y", bool LogY = false)
{
    public bool Plottable((double X, double Y) p) => double.IsFinite(p.X) && double.IsFinite(p.Y) && (!LogY || p.Y > 0);

    /// <summary>The extent of the plottable points; refuses a chart with nothing to draw.</summary>
    public (double X0, double X1, double Y0, double Y1) DataRange()
    {
        var pts = Series.SelectMany(s => s.Points).Where(Plottable).ToArray();
        if (pts.Length == 0)
            throw new ArgumentException(LogY ? "nothing to plot on a logarithmic axis: no point has a finite positive y" : "nothing to plot: no point has finite x and y");
        return (pts.Min(p => p.X), pts.Max(p => p.X), pts.Min(p => p.Y), pts.Max(p => p.Y));
    }
}

/// <summary>
/// PNG line charts drawn with ScottPlot 5 (on SkiaSharp): one <see cref="Plot"/> per <see cref="ChartSpec"/>, rendered
/// alone or as panels stacked in one image. ScottPlot has no logarithmic axis: a log chart plots log10(y) and labels
/// the ticks with the values they stand for.
/// </summary>
public static class Plots
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public const int MinWidth = 160, MinHeight = 120;

    /// <summary>
    /// The font of all chart text. SkiaSharp's NoDependencies natives read fonts from /usr/share/fonts (no fontconfig):
    /// Debian's fonts-dejavu-core (installed by .ci/run), else whatever sans family Skia finds.
    /// </summary>
    public static readonly string FontFamily = PickFont();

    static string PickFont()
    {
        var families = SKFontManager.Default.FontFamilies.ToHashSet(StringComparer.OrdinalIgnoreCase);
        return new[] { "DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial", "Helvetica" }.FirstOrDefault(families.Contains)
               ?? families.FirstOrDefault() ?? Fonts.Default;
    }

    /// <summary>Series colours in series order (Tableau's ten, as matplotlib's default), distinct on white.</summary>
    public static Color ColorOf(int series) => new ScottPlot.Palettes.Category10().GetColor(series);

    /// <summary>The y coordinate ScottPlot draws for a data value: log10 on a log chart.</summary>
    public static double PlotY(ChartSpec spec, double y) => spec.LogY ? Math.Log10(y) : y;

    /// <summary>
    /// The chart as a ScottPlot plot: each series a line (stairs for <see cref="SeriesStyle.Steps"/>), broken where a point
    /// cannot be drawn; a legend when there is more than one series (or one without a title to name it).
    /// </summary>
    public static Plot Build(ChartSpec spec)
    {
        var (x0, x1, y0, y1) = spec.DataRange();
        var plot = new Plot();
        plot.Font.Set(FontFamily);
        for (int i = 0; i < spec.Series.Count; i++)
        {
            var s = spec.Series[i];
            bool first = true;
            foreach (var run in Runs(spec, s))
            {
                double[] xs = run.Select(p => p.X).ToArray(), ys = run.Select(p => PlotY(spec, p.Y)).ToArray();
                string legendText = first && s.Name.Length > 0 ? s.Name : "";
                first = false;
                if (run.Length == 1)
                {
                    // A lone point still shows, as a dot.
                    var dot = plot.Add.Scatter(xs, ys, ColorOf(i));
                    dot.MarkerSize = 6;
                    dot.LegendText = legendText;
                    continue;
                }
                // SignalXY draws x-sorted data at one min/max span per pixel column: a 2,000,000-step trace renders
                // in well under a second, where a Scatter would stroke every segment.
                var line = plot.Add.SignalXY(xs, ys, ColorOf(i));
                line.ConnectStyle = s.Style == SeriesStyle.Steps ? ConnectStyle.StepHorizontal : ConnectStyle.Straight;
                line.LineWidth = 2;
                line.LegendText = legendText;
            }
        }
        if (spec.Title is { Length: > 0 } title) plot.Title(title, 16);
        plot.XLabel(spec.XLabel, 14);
        plot.YLabel(spec.YLabel, 14);
        bool legend = spec.Series.Count > 1 || (spec.Series.Count == 1 && spec.Series[0].Name.Length > 0 && spec.Title is not { Length: > 0 });
        if (legend) plot.ShowLegend(Alignment.UpperRight);
        else plot.HideLegend();

        // Limits from the data (x exact, y with 5% room) so that a chart's layout depends on nothing but its spec.
        if (x0 == x1) { x0 -= 0.5; x1 += 0.5; }
        double ly0 = PlotY(spec, y0), ly1 = PlotY(spec, y1);
        if (ly0 == ly1) { double w = spec.LogY ? 0.5 : (ly0 == 0 ? 1 : Math.Abs(ly0) * 0.1); ly0 -= w; ly1 += w; }
        double pad = (ly1 - ly0) * 0.05;
        plot.Axes.SetLimits(x0, x1, ly0 - pad, ly1 + pad);
        if (spec.LogY) plot.Axes.Left.TickGenerator = LogTicks(ly0 - pad, ly1 + pad);
        else plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = v => Short(v, 6) };
        // Steps are whole numbers: no tick at step 2.5.
        bool wholeX = spec.Series.All(s => s.Points.All(p => !double.IsFinite(p.X) || p.X == Math.Floor(p.X)));
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = wholeX, LabelFormatter = v => Short(v, 6) };
        return plot;
    }

    /// <summary>Maximal runs of drawable points: a NaN, infinity or (log axis) y ≤ 0 ends a run.</summary>
    static IEnumerable<(double X, double Y)[]> Runs(ChartSpec spec, ChartSeries s)
    {
        var run = new List<(double X, double Y)>();
        foreach (var p in s.Points)
        {
            if (spec.Plottable(p)) { run.Add(p); continue; }
            if (run.Count > 0) yield return run.ToArray();
            run.Clear();
        }
        if (run.Count > 0) yield return run.ToArray();
    }

    /// <summary>
    /// Ticks of a log axis over [lo, hi] (log10 units): the decades (every k-th when there are many) with 2× … 9× minor
    /// marks; within about a decade, 1×, 2× and 5× marks are labelled too so that at least two values can be read.
    /// </summary>
    static ScottPlot.TickGenerators.NumericManual LogTicks(double lo, double hi)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        int a = (int)Math.Floor(lo), b = (int)Math.Ceiling(hi);
        int decades = (int)Math.Floor(hi) - (int)Math.Ceiling(lo) + 1;
        int every = Math.Max(1, (int)Math.Ceiling(decades / 8.0));
        double[] labelled = decades >= 2 ? [1] : [1, 2, 5];
        for (int k = a; k <= b; k++)
            for (int m = 1; m <= 9; m++)
            {
                double t = k + Math.Log10(m);
                if (t < lo || t > hi) continue;
                if (labelled.Contains(m) && (m != 1 || (k - a) % every == 0)) ticks.AddMajor(t, Short(m * Math.Pow(10, k), 3));
                else ticks.AddMinor(t);
            }
        return ticks;
    }

    /// <summary>A compact number with at most <paramref name="significant"/> significant digits: 0.001, 250, 1.5e-05 → "1.5e-5".</summary>
    public static string Short(double v, int significant)
    {
        if (v == 0) return "0";
        if (!double.IsFinite(v)) return v.ToString(Inv);
        double a = Math.Abs(v);
        if (a >= 1e-3 && a < 1e5)
        {
            string s = v.ToString("G" + significant, Inv);
            return s.Contains('E') ? v.ToString("0.######", Inv) : s;
        }
        int exp = (int)Math.Floor(Math.Log10(a));
        double m = Math.Round(v / Math.Pow(10, exp), Math.Max(0, significant - 1));
        if (Math.Abs(m) >= 10) { m /= 10; exp++; }
        return m.ToString("0." + new string('#', Math.Max(0, significant - 1)), Inv) + "e" + exp.ToString(Inv);
    }

    /// <summary>Renders one plot as a PNG of <paramref name="width"/>×<paramref name="height"/> pixels.</summary>
    public static byte[] Png(Plot plot, int width, int height) => Stacked([plot], width, height);

    /// <summary>
    /// Renders the plots as panels of <paramref name="width"/>×<paramref name="panelHeight"/> pixels, top to bottom, in one
    /// PNG. Afterwards each plot's <see cref="Plot.GetPixel(Coordinates)"/> gives pixels within its own panel: add
    /// i × <paramref name="panelHeight"/> to y for panel i of the image.
    /// </summary>
    public static byte[] Stacked(IReadOnlyList<Plot> panels, int width, int panelHeight)
    {
        if (width < MinWidth || panelHeight < MinHeight)
            throw new ArgumentOutOfRangeException(nameof(width), $"a PNG chart needs at least {MinWidth}x{MinHeight} pixels (got {width}x{panelHeight})");
        using var sheet = SKSurface.Create(new SKImageInfo(width, panelHeight * panels.Count, SKColorType.Rgba8888, SKAlphaType.Premul));
        sheet.Canvas.Clear(SKColors.White);
        for (int i = 0; i < panels.Count; i++)
        {
            // Each panel on its own surface: a plot's render clears the whole canvas it is given.
            using var panel = SKSurface.Create(new SKImageInfo(width, panelHeight, SKColorType.Rgba8888, SKAlphaType.Premul));
            panels[i].Render(panel);
            using var image = panel.Snapshot();
            sheet.Canvas.DrawImage(image, 0, i * panelHeight);
        }
        using var all = sheet.Snapshot();
        using var data = all.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }
}
