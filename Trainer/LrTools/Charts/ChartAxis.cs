using System.Globalization;

namespace Trainer.LrTools.Charts;

/// <summary>
/// One axis of a chart: the plotted range (in data units), whether it is logarithmic, and its ticks with labels.
/// Positions are computed on the transformed value (log10 for a log axis).
/// </summary>
public sealed record ChartAxis(double Min, double Max, bool Log, IReadOnlyList<(double Value, string Label)> Ticks)
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public double Transform(double v) => Log ? Math.Log10(v) : v;

    /// <summary>Where <paramref name="v"/> lies on the axis: 0 at <see cref="Min"/>, 1 at <see cref="Max"/>.</summary>
    public double Fraction(double v)
    {
        double lo = Transform(Min), hi = Transform(Max);
        return (Transform(v) - lo) / (hi - lo);
    }

    /// <summary>
    /// An axis over the data range [<paramref name="lo"/>, <paramref name="hi"/>], widened by <paramref name="pad"/> of the
    /// (transformed) span on each side, with about <paramref name="targetTicks"/> "nice" ticks inside it.
    /// </summary>
    public static ChartAxis Create(double lo, double hi, bool log, double pad, int targetTicks)
    {
        if (log && !(lo > 0)) throw new ArgumentException("a logarithmic axis needs positive values");
        double tlo = log ? Math.Log10(lo) : lo, thi = log ? Math.Log10(hi) : hi;
        if (thi == tlo)
        {
            double w = log ? 0.5 : (tlo == 0 ? 1.0 : Math.Abs(tlo) * 0.1);
            tlo -= w; thi += w;
        }
        double span = thi - tlo;
        tlo -= span * pad; thi += span * pad;
        double min = log ? Math.Pow(10, tlo) : tlo, max = log ? Math.Pow(10, thi) : thi;
        var ticks = log ? LogTicks(tlo, thi, targetTicks) : LinearTicks(min, max, targetTicks);
        return new ChartAxis(min, max, log, ticks);
    }

    static List<(double, string)> LinearTicks(double min, double max, int target)
    {
        double step = NiceStep((max - min) / Math.Max(1, target - 1));
        var ticks = LinearTicksWithStep(min, max, step);
        // A narrow range can fall between two marks of the first step: refine until at least two ticks show.
        for (int i = 0; i < 8 && ticks.Count < 2; i++) ticks = LinearTicksWithStep(min, max, step = SmallerNice(step));
        return ticks;
    }

    /// <summary>The next smaller of 1, 2, 2.5, 5 × 10^k.</summary>
    static double SmallerNice(double step)
    {
        double p = Math.Pow(10, Math.Floor(Math.Log10(step) + 1e-9));
        double lead = step / p;
        return lead > 4.5 ? 2.5 * p : lead > 2.25 ? 2 * p : lead > 1.5 ? p : 0.5 * p;
    }

    static List<(double, string)> LinearTicksWithStep(double min, double max, double step)
    {
        var ticks = new List<(double, string)>();
        double first = Math.Ceiling(min / step - 1e-9) * step;
        double mag = Math.Max(Math.Abs(min), Math.Abs(max));
        for (int i = 0; i < 1000; i++)
        {
            double v = first + i * step;
            if (v > max + step * 1e-9) break;
            if (Math.Abs(v) < step * 1e-9) v = 0; // no "-0" or 1e-17 from rounding
            ticks.Add((v, LinearLabel(v, step, mag)));
        }
        return ticks;
    }

    static List<(double, string)> LogTicks(double tlo, double thi, int target)
    {
        int a = (int)Math.Ceiling(tlo - 1e-9), b = (int)Math.Floor(thi + 1e-9);
        var ticks = new List<(double, string)>();
        if (b - a + 1 >= 2)
        {
            int every = Math.Max(1, (int)Math.Ceiling((b - a + 1) / (double)target));
            for (int k = a; k <= b; k++)
                if ((k - a) % every == 0) ticks.Add((Math.Pow(10, k), Short(Math.Pow(10, k), 3)));
            // Within few decades, 2× and 5× marks help reading values.
            if (b - a <= 1)
                for (int k = a - 1; k <= b; k++)
                    foreach (double m in new[] { 2.0, 5.0 })
                    {
                        double v = m * Math.Pow(10, k), t = Math.Log10(v);
                        if (t >= tlo && t <= thi) ticks.Add((v, Short(v, 3)));
                    }
            ticks.Sort((x, y) => x.Item1.CompareTo(y.Item1));
            return ticks;
        }
        // Less than two decade marks in range: nice linear ticks between the bounds.
        double min = Math.Pow(10, tlo), max = Math.Pow(10, thi);
        double step = NiceStep((max - min) / Math.Max(1, target - 1));
        for (double v = Math.Ceiling(min / step) * step; v <= max; v += step) ticks.Add((v, Short(v, 3)));
        if (ticks.Count < 2) { ticks.Clear(); ticks.Add((min, Short(min, 3))); ticks.Add((max, Short(max, 3))); }
        return ticks;
    }

    /// <summary>1, 2, 2.5 or 5 times a power of ten, at least <paramref name="raw"/>.</summary>
    public static double NiceStep(double raw)
    {
        if (!(raw > 0) || !double.IsFinite(raw)) return 1;
        double p = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double f = raw / p;
        double nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
        return nice * p;
    }

    static string LinearLabel(double v, double step, double mag)
    {
        if (v == 0) return "0";
        if (mag >= 1e5 || mag < 1e-3)
        {
            // Enough mantissa digits to tell neighbouring ticks apart.
            int digits = Math.Clamp((int)Math.Floor(Math.Log10(Math.Abs(v))) - (int)Math.Floor(Math.Log10(step)) + 1, 1, 6);
            return Short(v, digits);
        }
        // step = nice × 10^p with nice in {1, 2, 2.5, 5}: -p decimals (one more for 2.5).
        int p = (int)Math.Floor(Math.Log10(step) + 1e-9);
        double lead = step / Math.Pow(10, p);
        int decimals = Math.Clamp(-p + (Math.Abs(lead - 2.5) < 1e-9 ? 1 : 0), 0, 12);
        return v.ToString("F" + decimals, Inv);
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
        double m = v / Math.Pow(10, exp);
        m = Math.Round(m, Math.Max(0, significant - 1));
        if (Math.Abs(m) >= 10) { m /= 10; exp++; }
        return m.ToString("0." + new string('#', Math.Max(0, significant - 1)), Inv) + "e" + exp.ToString(Inv);
    }
}
