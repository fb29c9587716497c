using System.Globalization;
using Trainer.Cli;

namespace Trainer.LrTools;

public enum PreviewFormat { Table, Csv, Ascii, Png }

/// <summary>The parsed command line of <c>Trainer lr preview</c>.</summary>
public sealed record PreviewOptions
{
    /// <summary>The schedule as the trainer's flags give it (<c>--lr-schedule</c> JSON, or <c>--lr-scheduler</c> and its flags).</summary>
    public SchedulerFlagValues Schedule { get; init; } = new();
    public int? Steps { get; init; }
    /// <summary>Initial LR of each param group (default one group at 1.0, so the values read as the schedule's factor).</summary>
    public IReadOnlyList<double> Lrs { get; init; } = [PreviewDefaults.Lr];
    public bool LrsGiven { get; init; }
    public PreviewFormat Format { get; init; } = PreviewFormat.Table;
    public string? Output { get; init; }
    public int Every { get; init; } = 1;
    public int? Width { get; init; }
    public int? Height { get; init; }
    public bool LogY { get; init; }
    public string? Title { get; init; }
    public string? MetricsFile { get; init; }
    public bool Help { get; init; }
}

public static class PreviewDefaults
{
    public const double Lr = 1.0;
    public const int Steps = 100;
    /// <summary>
    /// Most steps a preview runs step by step (bit-exact with PyTorch; every step's rates are held in memory). Longer
    /// previews need a schedule in closed form (<see cref="Schedules.Core.Schedule.IsClosedForm"/>), evaluated at the
    /// rows shown (table/csv) or at <see cref="ChartPoints"/> steps (charts).
    /// </summary>
    public const int MaxRunSteps = 2_000_000;
    /// <summary>Most steps a preview shows (closed form).</summary>
    public const int MaxSteps = 2_000_000_000;
    /// <summary>Most rows a table or CSV prints (a longer preview needs --every).</summary>
    public const int MaxRows = MaxRunSteps + 1;
    /// <summary>Points a chart samples beyond <see cref="MaxRunSteps"/> (evenly spaced steps, the last one included).</summary>
    public const int ChartPoints = 2_000;
    public const int AsciiWidth = 80, AsciiHeight = 20, PngWidth = 800, PngHeight = 480;
}

/// <summary>
/// The flags of <c>lr preview</c>, on the trainer's gflags parser (<see cref="FlagSet"/>: <c>--name=value</c> or
/// <c>--name value</c>, '-' and '_' alike, <c>--log-y</c> / <c>--nolog-y</c>) together with the trainer's own
/// schedule flags (<see cref="SchedulerFlags.Define"/>), so a preview takes exactly what <c>Trainer train</c> takes.
/// </summary>
public static class PreviewArgs
{
    const string G = "lr preview";

    public static FlagSet Flags()
    {
        var f = new FlagSet("Trainer lr preview", PreviewCommand.Usage.TrimEnd());
        f.Int("steps", 0, "Steps to show (rows 0..N); 0 = the schedule's natural horizon, else 100; ReduceLROnPlateau: the number of metrics.\n" +
                          "Also the run length the scheduler flags are built for (--num_iteration of the trainer). Up to 2,000,000 the schedule runs\n" +
                          "step by step (PyTorch's values bit for bit); beyond, up to 2,000,000,000, a schedule in closed form is evaluated\n" +
                          "at the rows shown (give --every) or at 2,000 chart points.", G, "num_iteration");
        f.Double("lr", PreviewDefaults.Lr, "Initial LR of the single param group (default 1: the values read as the schedule's factor).", G, "learning_rate");
        f.String("lrs", "", "Initial LR per param group, comma-separated (instead of --lr).", G);
        f.String("format", "table", "table (aligned, shortest round-trip values) | csv (full precision) | ascii (terminal chart) | png (needs --output).", G);
        f.String("output", "", "Write to FILE (atomically: a temporary file, then a rename) instead of stdout.", G, "o");
        f.Int("every", 1, "table/csv: show every K-th step (the last step is always shown).", G);
        f.Int("width", 0, $"Chart width: characters for ascii (default {PreviewDefaults.AsciiWidth}), pixels for png (default {PreviewDefaults.PngWidth}).", G);
        f.Int("height", 0, $"Chart height: lines for ascii (default {PreviewDefaults.AsciiHeight}), pixels for png (default {PreviewDefaults.PngHeight}).", G);
        f.Bool("log_y", false, "Charts: logarithmic LR axis (steps where the LR is 0 are left out).", G);
        f.String("title", "", "Chart title (default: the schedule's classes and the step count).", G);
        f.String("metrics", "", "ReduceLROnPlateau: a file with one metric per line, fed to step(metric) in order.", G);
        SchedulerFlags.Define(f);
        return f;
    }

    /// <summary>Parses and checks the command line; <see cref="UsageException"/> (one message, exit code 2) when refused.</summary>
    public static PreviewOptions Parse(IReadOnlyList<string> args)
    {
        var v = Flags().Parse(args);
        if (v.HelpRequested) return new PreviewOptions { Help = true };
        if (v.Positional.Count > 0)
            throw new UsageException($"unexpected argument '{v.Positional[0]}' (give the schedule with --lr-schedule=JSON|@FILE|FILE.json)");

        bool scheduleGiven = v.Given.Keys.Any(k => k == "lr_schedule" || SchedulerFlagNames.Contains(k));
        if (!scheduleGiven)
            throw new UsageException("no schedule: give --lr-schedule=JSON|@FILE|FILE.json, or --lr-scheduler=KIND and its flags (the trainer's default is cosine)");
        if (v.IsSet("lr_schedule") && v.IsSet("lr_scheduler"))
            throw new UsageException("give either --lr-schedule=JSON or --lr-scheduler=KIND, not both");
        if (v.IsSet("lr") && v.IsSet("lrs")) throw new UsageException("give the initial LR once: --lr=X or --lrs=X,Y,...");

        var o = new PreviewOptions
        {
            Schedule = SchedulerFlags.Read(v),
            Steps = v.IsSet("steps") ? v.GetInt32("steps", 1, PreviewDefaults.MaxSteps) : null,
            Lrs = v.IsSet("lrs") ? DblList("--lrs", v.GetString("lrs")) : [v.GetDouble("lr")],
            LrsGiven = v.IsSet("lr") || v.IsSet("lrs"),
            Format = v.GetChoice("format", "table", "csv", "ascii", "png") switch
            {
                "csv" => PreviewFormat.Csv, "ascii" => PreviewFormat.Ascii, "png" => PreviewFormat.Png, _ => PreviewFormat.Table,
            },
            Output = v.IsSet("output") ? NonEmpty("--output", v.GetString("output")) : null,
            Every = v.GetInt32("every", 1),
            Width = v.IsSet("width") ? v.GetInt32("width", 1, 20_000) : null,
            Height = v.IsSet("height") ? v.GetInt32("height", 1, 20_000) : null,
            LogY = v.GetBool("log_y"),
            Title = v.IsSet("title") ? v.GetString("title") : null,
            MetricsFile = v.IsSet("metrics") ? NonEmpty("--metrics", v.GetString("metrics")) : null,
        };

        bool chart = o.Format is PreviewFormat.Ascii or PreviewFormat.Png;
        if (o.Format == PreviewFormat.Png && o.Output is null)
            throw new UsageException("--format=png needs --output=FILE.png (PNG is not written to the terminal)");
        if (!chart && (o.Width is not null || o.Height is not null)) throw new UsageException("--width/--height apply to --format=ascii|png");
        if (!chart && o.LogY) throw new UsageException("--log-y applies to --format=ascii|png");
        if (!chart && o.Title is not null) throw new UsageException("--title applies to --format=ascii|png");
        if (chart && o.Every != 1) throw new UsageException("--every applies to --format=table|csv (charts plot every step)");
        return o;
    }

    /// <summary>The flags SchedulerFlags declares (all but --lr_schedule describe a schedule by kind and parameters).</summary>
    static readonly HashSet<string> SchedulerFlagNames = ScheduleFlagNames();

    static HashSet<string> ScheduleFlagNames()
    {
        var f = new FlagSet("", "");
        SchedulerFlags.Define(f);
        return f.Definitions.SelectMany(d => d.Aliases.Prepend(d.Name)).ToHashSet();
    }

    static string NonEmpty(string flag, string v) => v.Length > 0 ? v : throw new UsageException($"{flag}: empty file name");

    static double[] DblList(string flag, string v)
    {
        var parts = v.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Any(p => p.Length == 0)) throw new UsageException($"{flag}: '{v}' is not a comma-separated list of numbers");
        return parts.Select(p => double.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d)
            ? d : throw new UsageException($"{flag}: '{p}' is not a finite number")).ToArray();
    }
}
