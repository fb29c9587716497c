using System.Globalization;
using System.Text;
using Schedules.Core;
using Trainer.Cli;

namespace Trainer.LrTools;

/// <summary>
/// <c>Trainer lr preview</c>: a schedule's learning rate per step (every param group), as a table, CSV, a terminal chart
/// or a PNG chart. All input is checked and the whole output is rendered before anything is written; bad input is one
/// message on stderr and exit code 2.
/// </summary>
public static class PreviewCommand
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public const string Usage = """
        usage: Trainer lr preview (--lr-schedule=JSON|@FILE|FILE.json | --lr-scheduler=KIND [its flags])
                                  [--steps=N] [--lr=X | --lrs=X,Y,...] [--format=table|csv|ascii|png] [--output=FILE]
                                  [--every=K] [--width=W] [--height=H] [--log-y] [--title=TEXT] [--metrics=FILE]
        Prints the learning rate of every param group after construction (step 0) and after each of N steps, for a
        schedule in the library's JSON format or given by the trainer's scheduler flags (same flags as `Trainer train`).
        """;

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        try
        {
            var o = PreviewArgs.Parse(args);
            if (o.Help) { stdout.Write(PreviewArgs.Flags().HelpText()); return 0; }
            if (o.Output is not null) PreviewOutput.CheckWritable(o.Output);
            var (schedule, trace, metrics, steps) = Compute(o);
            byte[]? bytes = null;
            string? text = null;
            switch (o.Format)
            {
                case PreviewFormat.Table: text = Table(trace, metrics, o.Every, steps); break;
                case PreviewFormat.Csv: text = Csv(trace, metrics, o.Every, steps); break;
                case PreviewFormat.Ascii:
                    text = AsciiChart.Render(Chart(schedule, trace, o, steps), o.Width ?? PreviewDefaults.AsciiWidth, o.Height ?? PreviewDefaults.AsciiHeight);
                    break;
                case PreviewFormat.Png:
                    bytes = Plots.Png(Plots.Build(Chart(schedule, trace, o, steps)), o.Width ?? PreviewDefaults.PngWidth, o.Height ?? PreviewDefaults.PngHeight);
                    break;
            }
            if (o.Output is null) { stdout.Write(text); stdout.Flush(); }
            else PreviewOutput.WriteAtomic(o.Output, bytes ?? new UTF8Encoding(false).GetBytes(text!));
            return 0;
        }
        catch (UsageException e) { return Fail(stderr, e.Message); }
        catch (InvalidScheduleException e) { return Fail(stderr, e.Message); }
        catch (ArgumentOutOfRangeException e) when (e.ParamName is "width") { return Fail(stderr, StripParam(e)); }
        catch (ArgumentException e) when (e.Message.StartsWith("nothing to plot")) { return Fail(stderr, StripParam(e)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"lr preview: cannot write the output: {e.Message}");
            return 1;
        }
    }

    static string StripParam(ArgumentException e)
    {
        string m = e.Message;
        int i = m.IndexOf(" (Parameter '", StringComparison.Ordinal);
        m = i >= 0 ? m[..i] : m;
        int nl = m.IndexOf('\n');
        if (nl >= 0) m = m[..nl];
        if (e is ArgumentOutOfRangeException && m.StartsWith("Specified argument", StringComparison.Ordinal)) m = "chart size out of range";
        return m.Replace("Actual value was ", "");
    }

    static int Fail(TextWriter stderr, string message)
    {
        stderr.WriteLine("lr preview: " + message);
        return 2;
    }

    /// <summary>
    /// The schedule, its trace <c>[rows][groups]</c> and, for ReduceLROnPlateau, the metric fed at each step. Up to
    /// <see cref="PreviewDefaults.MaxRunSteps"/> steps the schedule runs (every step, bit-exact with PyTorch; Steps is
    /// null and row k is step k); beyond, a closed-form schedule is evaluated only at the steps shown (Steps: which).
    /// </summary>
    public static (Schedule Schedule, double[][] Trace, double[]? Metrics, int[]? Steps) Compute(PreviewOptions o)
    {
        // The trainer's own mapping (JSON or --lr-scheduler flags, --warmup-steps included), for a run of --steps steps.
        if (o.Schedule.ScheduleJson is { } scheduleArg) CheckScheduleFile(scheduleArg);
        Schedule schedule;
        try
        {
            schedule = SchedulerFlags.FromFlags(o.Schedule, o.Lrs[0], o.Steps ?? PreviewDefaults.Steps)
                       ?? new ConstantLR(1.0, 0); // --lr-scheduler=none: the LR stays where it starts
        }
        catch (InvalidScheduleException e)
        {
            throw new UsageException((o.Schedule.ScheduleJson is not null ? "--lr-schedule: " : $"--lr-scheduler={o.Schedule.Scheduler}: ") + e.Message);
        }

        double[]? metrics = null;
        if (schedule.IsMetricDriven)
        {
            if (o.MetricsFile is null)
                throw new UsageException("ReduceLROnPlateau steps on a metric: give --metrics=FILE (one value per line, one per step)");
            metrics = ReadMetrics(o.MetricsFile);
            if (o.Steps is { } n && n > metrics.Length)
                throw new UsageException($"--steps={n} but --metrics has {metrics.Length} values (one is needed per step)");
            metrics = metrics[..(o.Steps ?? metrics.Length)];
        }
        else if (o.MetricsFile is not null)
            throw new UsageException($"--metrics is only for ReduceLROnPlateau; {schedule.TypeName} does not step on a metric");

        int steps = o.Steps ?? metrics?.Length ?? PreviewHorizon.Of(schedule) ?? PreviewDefaults.Steps;
        if (steps > PreviewDefaults.MaxRunSteps && NoClosedForm(schedule) is { } why)
        {
            if (o.Steps is not null)
                throw new UsageException($"--steps={steps}: {why}, so the preview runs it step by step, which is capped at " +
                                         $"{PreviewDefaults.MaxRunSteps:N0} steps (preview fewer --steps)");
            steps = PreviewDefaults.MaxRunSteps; // its natural horizon is longer: show the first part
        }
        try
        {
            if (steps <= PreviewDefaults.MaxRunSteps)
                return (schedule, metrics is null ? schedule.Trace(o.Lrs, steps) : PlateauTrace(schedule, o.Lrs, metrics), metrics, null);
            bool text = o.Format is PreviewFormat.Table or PreviewFormat.Csv;
            long rows = steps / o.Every + 1 + (steps % o.Every != 0 ? 1 : 0);
            if (text && rows > PreviewDefaults.MaxRows)
                throw new UsageException($"--steps={steps} --every={o.Every} would print {rows:N0} rows (at most {PreviewDefaults.MaxRows:N0}): give a larger --every");
            int[] at = text
                ? Rows(steps, o.Every).ToArray()
                : Enumerable.Range(0, PreviewDefaults.ChartPoints + 1).Select(i => (int)((long)steps * i / PreviewDefaults.ChartPoints)).ToArray();
            return (schedule, at.Select(k => o.Lrs.Select(lr => schedule.Lr(k, lr)).ToArray()).ToArray(), null, at);
        }
        catch (ScheduleStepException e)
        {
            throw new UsageException($"the schedule fails within {steps} steps, as PyTorch would: {e.Message} (preview fewer --steps)");
        }
    }

    /// <summary>Why the preview cannot evaluate the schedule in closed form (null when it can).</summary>
    static string? NoClosedForm(Schedule s) =>
        s.IsMetricDriven ? "ReduceLROnPlateau steps on a metric"
        : !s.IsClosedForm ? $"{Describe(s)} has no closed form" + (s.ClosedFormHorizon >= 0 ? $" past step {s.ClosedFormHorizon:N0}" : "") + " (docs/DESIGN.md)"
        : s.GroupProblems(1, "$").Any() ? $"{Describe(s)} has per-group parameters (the closed form evaluates one group at a time)"
        : null;

    /// <summary>A missing or unreadable schedule file gets its full path in the message (SchedulerFlags reads the file).</summary>
    static void CheckScheduleFile(string arg)
    {
        string t = arg.Trim();
        if (t.StartsWith('{') || t.StartsWith('[')) return;
        bool at = t.StartsWith('@');
        string path = at ? t[1..] : t;
        if (!at && !path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) && !path.Contains('/') && !path.Contains('\\')) return;
        if (path.Length == 0) throw new UsageException("--lr-schedule: '@' needs a file name");
        if (Directory.Exists(path)) throw new UsageException($"--lr-schedule: '{path}' is a directory, not a JSON file");
        if (!File.Exists(path)) throw new UsageException($"--lr-schedule: no such file '{path}'");
    }

    static double[][] PlateauTrace(Schedule schedule, IReadOnlyList<double> lrs, double[] metrics)
    {
        var run = schedule.Start(lrs);
        var rows = new double[metrics.Length + 1][];
        rows[0] = run.Lrs.ToArray();
        for (int i = 0; i < metrics.Length; i++) { run.Step(metrics[i]); rows[i + 1] = run.Lrs.ToArray(); }
        return rows;
    }

    static double[] ReadMetrics(string path)
    {
        if (!File.Exists(path)) throw new UsageException($"--metrics: no such file '{path}'");
        var values = new List<double>();
        int lineNo = 0;
        foreach (var raw in File.ReadLines(path))
        {
            lineNo++;
            string line = raw.Trim();
            if (line.Length == 0) continue;
            if (!double.TryParse(line, NumberStyles.Float, Inv, out double v) || double.IsNaN(v))
                throw new UsageException($"--metrics: {path}:{lineNo}: '{(line.Length > 40 ? line[..40] + "..." : line)}' is not a number");
            values.Add(v);
        }
        if (values.Count == 0) throw new UsageException($"--metrics: {path} has no values");
        return values.ToArray();
    }

    static IEnumerable<int> Rows(int steps, int every)
    {
        for (long k = 0; k <= steps; k += every) yield return (int)k;
        if (steps % every != 0) yield return steps;
    }

    /// <summary>The trace's row indices to print and their step numbers: every K-th of a dense trace, or all of a sampled one.</summary>
    static IEnumerable<(int Row, int Step)> Printed(double[][] trace, int every, int[]? steps) =>
        steps is null ? Rows(trace.Length - 1, every).Select(k => (k, k)) : steps.Select((k, i) => (i, k));

    /// <summary>Shortest round-trip text, exponent in lower case as Python prints floats (5.999999999999999e-06).</summary>
    public static string R(double v) => v.ToString("R", Inv).Replace('E', 'e');

    /// <summary>Aligned columns: step, [metric], then one LR column per group; values in shortest round-trip form.</summary>
    public static string Table(double[][] trace, double[]? metrics, int every = 1, int[]? steps = null)
    {
        int groups = trace[0].Length;
        var header = new List<string> { "step" };
        if (metrics is not null) header.Add("metric");
        header.AddRange(groups == 1 ? ["lr"] : Enumerable.Range(0, groups).Select(g => $"lr[{g}]"));
        var rows = Printed(trace, every, steps).Select(p =>
        {
            var (i, k) = p;
            var r = new List<string> { k.ToString(Inv) };
            if (metrics is not null) r.Add(k == 0 ? "-" : R(metrics[k - 1]));
            r.AddRange(trace[i].Select(R));
            return r;
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Max(r => r[i].Length))).ToArray();
        var sb = new StringBuilder();
        void Line(IReadOnlyList<string> cells) =>
            sb.Append(string.Join("  ", cells.Select((c, i) => c.PadLeft(widths[i]))).TrimEnd()).Append('\n');
        Line(header);
        foreach (var r in rows) Line(r);
        return sb.ToString();
    }

    /// <summary>CSV with a header (<c>step,lr</c> or <c>step,lr_0,lr_1,...</c>; <c>metric</c> after step for ReduceLROnPlateau), values in R format.</summary>
    public static string Csv(double[][] trace, double[]? metrics, int every = 1, int[]? steps = null)
    {
        int groups = trace[0].Length;
        var sb = new StringBuilder("step");
        if (metrics is not null) sb.Append(",metric");
        sb.Append(groups == 1 ? ",lr" : string.Concat(Enumerable.Range(0, groups).Select(g => $",lr_{g}"))).Append('\n');
        foreach (var (i, k) in Printed(trace, every, steps))
        {
            sb.Append(k.ToString(Inv));
            if (metrics is not null) sb.Append(',').Append(k == 0 ? "" : R(metrics[k - 1]));
            foreach (var v in trace[i]) sb.Append(',').Append(R(v));
            sb.Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>The chart of a trace: one step-shaped series per group against the step number (an LR holds for its step).</summary>
    /// <paramref name="steps"/>: the step of each row of a sampled trace (null: row k is step k).
    public static ChartSpec Chart(Schedule schedule, double[][] trace, PreviewOptions o, int[]? steps = null)
    {
        int groups = trace[0].Length;
        var series = Enumerable.Range(0, groups).Select(g => new ChartSeries(
            groups == 1 ? "lr" : $"group {g} (lr={Plots.Short(o.Lrs[g], 4)})",
            trace.Select((row, k) => ((double)(steps?[k] ?? k), row[g])).ToArray(),
            SeriesStyle.Steps)).ToArray();
        return new ChartSpec(series,
            Title: o.Title ?? $"{Describe(schedule)}, {steps?[^1] ?? trace.Length - 1} steps",
            XLabel: "step",
            YLabel: o.LrsGiven ? "lr" : "lr (factor: initial lr = 1)",
            LogY: o.LogY);
    }

    /// <summary>A one-line name: the class, with composites' children in parentheses.</summary>
    public static string Describe(Schedule s) =>
        s.Children.Count == 0 ? s.TypeName : $"{s.TypeName}({string.Join(", ", s.Children.Select(Describe))})";
}
