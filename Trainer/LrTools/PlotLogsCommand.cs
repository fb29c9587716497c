using System.Globalization;
using System.Text.Json;
using Trainer.Cli;

namespace Trainer.LrTools;

/// <summary>
/// <c>Trainer lr plot-logs A.jsonl B.jsonl [...] --output=FILE.png</c>: the learning rate, the train loss and (for two logs)
/// the absolute loss difference per step of <c>--log_json</c> files (this trainer's or the PyTorch reference's), drawn
/// with ScottPlot (<see cref="Plots"/>) as panels stacked in one PNG.
/// </summary>
public static class PlotLogsCommand
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public const string Usage = """
        usage: Trainer lr plot-logs LOG.jsonl [LOG2.jsonl ...] --output=FILE.png [--labels=A,B,...] [--title=TEXT]
                                    [--width=W] [--height=H]
        Draws each --log_json file's learning rate (first param group) and train loss per step, and for two logs the
        absolute loss difference |A - B| per step, as three panels (each H pixels high, default 360; width default 900).
        Lines are {"step": k, "loss": x, "lr": [..]} (field "lrs" or a single number also read); a null loss (a non-finite
        loss that stopped the run) is left out of the loss panels, and validation records {"step": k, "val_loss": x} are skipped.
        """;

    public sealed record LogRow(int Step, double Loss, double Lr);

    /// <summary>Reads a --log_json file: one JSON object per non-empty line with step, loss and lr (list or number) or lrs.</summary>
    public static IReadOnlyList<LogRow> ReadLog(string path)
    {
        var rows = new List<LogRow>();
        int n = 0;
        foreach (var line in File.ReadLines(path))
        {
            n++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var d = JsonDocument.Parse(line);
                var o = d.RootElement;
                if (!o.TryGetProperty("loss", out var lossEl) && o.TryGetProperty("val_loss", out _)) continue; // a validation record
                var lrEl = o.TryGetProperty("lr", out var l) ? l : o.GetProperty("lrs");
                double lr = lrEl.ValueKind == JsonValueKind.Array ? lrEl[0].GetDouble() : lrEl.GetDouble();
                // null: a non-finite loss (the step that stopped the run); drawn as a gap.
                double loss = lossEl.ValueKind == JsonValueKind.Null ? double.NaN : o.GetProperty("loss").GetDouble();
                rows.Add(new LogRow(o.GetProperty("step").GetInt32(), loss, lr));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or IndexOutOfRangeException)
            {
                throw new InvalidDataException($"{path}:{n}: not a step record ({e.Message})");
            }
        }
        if (rows.Count == 0) throw new InvalidDataException($"{path}: no step records");
        return rows;
    }

    /// <summary>The panels: LR per step (stairs), train loss per step and, for two logs, |loss difference| per step.</summary>
    public static IReadOnlyList<ChartSpec> Panels(IReadOnlyList<(string Label, IReadOnlyList<LogRow> Rows)> logs, string? title)
    {
        var panels = new List<ChartSpec>
        {
            new(logs.Select(g => new ChartSeries(g.Label, g.Rows.Select(r => ((double)r.Step, r.Lr)).ToArray(), SeriesStyle.Steps)).ToArray(),
                (title is { Length: > 0 } ? title + ": " : "") + "learning rate per step", "step", "lr"),
            new(logs.Select(g => new ChartSeries(g.Label, g.Rows.Where(r => double.IsFinite(r.Loss)).Select(r => ((double)r.Step, r.Loss)).ToArray())).ToArray(),
                "train loss", "step", "loss"),
        };
        if (logs.Count == 2)
        {
            var b = logs[1].Rows.Where(r => double.IsFinite(r.Loss)).ToDictionary(r => r.Step, r => r.Loss);
            var diff = logs[0].Rows.Where(r => double.IsFinite(r.Loss) && b.ContainsKey(r.Step)).Select(r => ((double)r.Step, Math.Abs(r.Loss - b[r.Step]))).ToArray();
            if (diff.Length > 0)
                panels.Add(new([new ChartSeries($"|{logs[0].Label} - {logs[1].Label}|", diff)],
                    $"absolute loss difference (max {diff.Max(d => d.Item2).ToString("0.00e+00", Inv)})", "step", "|d loss|"));
        }
        return panels;
    }

    public static FlagSet Flags() => new FlagSet("Trainer lr plot-logs", Usage.TrimEnd(), "LOG.jsonl [LOG2.jsonl ...]", "lr plot-logs")
        .String("output", "", "PNG file to write (required).", "", "o")
        .String("labels", "", "Legend label per log, comma-separated; default: the file names without extension.")
        .String("title", "", "Title prefix of the learning-rate panel.")
        .Int("width", 900, "Image width in pixels (at least 160).")
        .Int("height", 360, "Height of each panel in pixels (at least 120).");

    /// <summary>The PNG: the <see cref="Panels"/>, each <paramref name="panelHeight"/> pixels high, stacked.</summary>
    public static byte[] Render(IReadOnlyList<(string Label, IReadOnlyList<LogRow> Rows)> logs, string? title, int width = 900, int panelHeight = 360) =>
        Plots.Stacked(Panels(logs, title).Select(Plots.Build).ToArray(), width, panelHeight);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var flags = Flags();
        if (flags.ParseOrReport(args, stdout, stderr, out var v) is { } exit) return exit;
        string output, title;
        string[]? labels;
        int width, height;
        try
        {
            output = v.GetString("output");
            if (output.Length == 0) throw new UsageException("--output=FILE.png is required");
            title = v.GetString("title");
            labels = v.IsSet("labels") ? v.GetString("labels").Split(',') : null;
            width = v.GetInt32("width", 160, 20_000);
            height = v.GetInt32("height", 120, 20_000);
            if (v.Positional.Count == 0) throw new UsageException("give at least one --log_json file");
        }
        catch (UsageException e) { return flags.UsageError(stderr, e.Message); }
        var files = v.Positional;
        try
        {
            var logs = files.Select((f, i) => (labels is not null && i < labels.Length ? labels[i] : Path.GetFileNameWithoutExtension(f), ReadLog(f))).ToArray();
            var png = Render(logs.Select(l => (l.Item1, l.Item2)).ToArray(), title.Length > 0 ? title : null, width, height);
            File.WriteAllBytes(output, png);
            stdout.WriteLine($"wrote {output} ({png.Length} bytes)");
            return 0;
        }
        catch (Exception e) when (e is InvalidDataException or IOException or ArgumentException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"lr plot-logs: {e.Message}");
            return 2;
        }
    }
}
