using System.Globalization;
using System.Text;

namespace Trainer.Training;

/// <summary>One optimizer step as logged.</summary>
/// <param name="ParallelSuffix">The rest of InfiniTrain's layout tail after DP (", TP=4, SP=4, PP=1"); empty for pure DP.</param>
/// <param name="Momenta">Each param group's momentum (SGD) or beta1 (Adam/AdamW) the step used, as CyclicLR/OneCycleLR cycle
/// it; null when the optimizer has none. Logged in the JSON line only (the alignment check compares it with PyTorch's).</param>
public sealed record StepRecord(int Step, int TotalSteps, float Loss, double[] Lrs, double Millis, double TokensPerSecond, int DataParallel, string ParallelSuffix = "", double[]? Momenta = null, long? MinorFaults = null);

/// <summary>
/// The per-step log: InfiniTrain's line on stdout, optional JSON lines at full precision, and on a terminal
/// a one-line progress bar that is erased before each log line and redrawn after it.
/// </summary>
public sealed class StepLog : IDisposable
{
    readonly TextWriter _out;
    readonly StreamWriter? _json;
    readonly bool _progress;
    bool _barShown;
    readonly DateTime _start = DateTime.UtcNow;
    int _firstStep = -1;

    public StepLog(TextWriter output, string? jsonPath, bool progressBar, bool appendJson = false)
    {
        _out = output;
        _progress = progressBar;
        if (jsonPath is not null)
            _json = new StreamWriter(jsonPath, appendJson, new UTF8Encoding(false)) { AutoFlush = true };
    }

    /// <summary><c>step    3/10 | train loss 10.876543 | lr 6.00e-04 | (12.34 ms | 20743 tok/s, DP=8)</c></summary>
    public static string Format(StepRecord r) => string.Create(CultureInfo.InvariantCulture,
        $"step {r.Step,4}/{r.TotalSteps} | train loss {r.Loss:F6} | lr {r.Lrs[0].ToString("0.00e+00", CultureInfo.InvariantCulture)} | ({r.Millis:F2} ms | {r.TokensPerSecond:F0} tok/s, DP={r.DataParallel}{r.ParallelSuffix})");

    /// <summary>
    /// One JSON line. JSON has no NaN or infinity: a non-finite number is written as null, and a non-finite loss also
    /// as <c>"loss_nonfinite": "NaN"|"Infinity"|"-Infinity"</c>, so every JSON parser reads the line.
    /// </summary>
    public static string FormatJson(StepRecord r)
    {
        var sb = new StringBuilder();
        sb.Append("{\"step\":").Append(r.Step.ToString(CultureInfo.InvariantCulture));
        sb.Append(",\"loss\":").Append(JsonNumber(r.Loss));
        if (!float.IsFinite(r.Loss)) sb.Append(",\"loss_nonfinite\":\"").Append(NonFiniteName(r.Loss)).Append('"');
        sb.Append(",\"lr\":[").Append(string.Join(",", r.Lrs.Select(l => JsonNumber(l)))).Append(']');
        if (r.Momenta is { } m) sb.Append(",\"momentum\":[").Append(string.Join(",", m.Select(x => JsonNumber(x)))).Append(']');
        sb.Append(",\"ms\":").Append(JsonNumber(r.Millis, "F3"));
        sb.Append(",\"tok_per_s\":").Append(JsonNumber(r.TokensPerSecond, "F1"));
        sb.Append(",\"dp\":").Append(r.DataParallel);
        if (r.MinorFaults is { } pf) sb.Append(",\"minflt\":").Append(pf.ToString(CultureInfo.InvariantCulture));   // minor page faults of the process during the step
        sb.Append('}');
        return sb.ToString();
    }

    /// <summary>A JSON number (round-trip precision unless <paramref name="format"/> says otherwise), or null when not finite.</summary>
    public static string JsonNumber(double x, string format = "R") => double.IsFinite(x) ? x.ToString(format, CultureInfo.InvariantCulture) : "null";

    /// <summary>"NaN", "Infinity" or "-Infinity".</summary>
    public static string NonFiniteName(double x) => double.IsNaN(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity";

    public void Info(string line)
    {
        ClearBar();
        _out.WriteLine(line);
        _out.Flush();
    }

    public void Json(string line) => _json?.WriteLine(line);

    public void Step(StepRecord r, long tokensPerStep)
    {
        if (_firstStep < 0) _firstStep = r.Step - 1;
        ClearBar();
        _out.WriteLine(Format(r));
        _json?.WriteLine(FormatJson(r));
        if (_progress && r.Step < r.TotalSteps) DrawBar(r, tokensPerStep);
        _out.Flush();
    }

    void DrawBar(StepRecord r, long tokensPerStep)
    {
        int done = r.Step - _firstStep, left = r.TotalSteps - r.Step;
        double elapsed = (DateTime.UtcNow - _start).TotalSeconds;
        double perStep = done > 0 ? elapsed / done : 0;
        double tps = elapsed > 0 ? done * tokensPerStep / elapsed : 0;
        const int width = 30;
        int filled = (int)Math.Round(width * (double)r.Step / r.TotalSteps);
        var eta = TimeSpan.FromSeconds(Math.Round(perStep * left));
        _out.Write(string.Create(CultureInfo.InvariantCulture,
            $"[{new string('#', filled)}{new string('.', width - filled)}] {r.Step}/{r.TotalSteps} | {tps:F0} tok/s | left {eta:hh\\:mm\\:ss}"));
        _barShown = true;
    }

    void ClearBar()
    {
        if (!_barShown) return;
        _out.Write("\r\u001b[2K");
        _barShown = false;
    }

    public void Dispose()
    {
        ClearBar();
        _out.Flush();
        _json?.Dispose();
    }
}
