using System.Globalization;

namespace Trainer.LrTools;

/// <summary>A mistake in the input of <c>lr preview</c> (flag, number, file, schedule): one message, exit code 2, nothing written.</summary>
public sealed class PreviewUsageException(string message) : Exception(message);

public enum PreviewFormat { Table, Csv, Ascii, Png }

/// <summary>The parsed command line of <c>Trainer lr preview</c>.</summary>
public sealed record PreviewOptions
{
    public string? ScheduleArg { get; init; }
    /// <summary>The trainer's scheduler flags (<c>--lr-scheduler</c> ...), names with underscores, in order given.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> SchedulerFlags { get; init; } = [];
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
    /// <summary>Most steps a preview traces (every step's rates are held in memory).</summary>
    public const int MaxSteps = 2_000_000;
    public const int AsciiWidth = 80, AsciiHeight = 20, PngWidth = 800, PngHeight = 480;
}

/// <summary>
/// Parses <c>lr preview</c> arguments gflags-style: <c>--name=value</c> or <c>--name value</c>, one or two dashes,
/// '-' and '_' alike in names; booleans as <c>--log-y</c> / <c>--log-y=false</c>. Flags the scheduler-flag mapping knows
/// (<see cref="IPreviewSchedulerFlags"/>) are collected for it; any other flag or a positional argument is refused.
/// </summary>
public static class PreviewArgs
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    static readonly string[] Valued = ["lr_schedule", "steps", "lr", "lrs", "format", "output", "o", "every", "width", "height", "title", "metrics"];
    static readonly string[] Bools = ["log_y", "help", "h"];

    public static PreviewOptions Parse(IReadOnlyList<string> args, IPreviewSchedulerFlags schedulerFlags)
    {
        var o = new PreviewOptions();
        var seen = new HashSet<string>();
        var sched = new List<KeyValuePair<string, string>>();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (!a.StartsWith('-') || a == "-" || a == "--")
                throw new PreviewUsageException($"unexpected argument '{a}' (give the schedule with --lr-schedule=JSON|@FILE|FILE.json)");
            string body = a.TrimStart('-');
            string? value = null;
            int eq = body.IndexOf('=');
            if (eq >= 0) { value = body[(eq + 1)..]; body = body[..eq]; }
            string name = body.Replace('-', '_');
            string shown = "--" + body;

            if (Bools.Contains(name))
            {
                bool b = value is null || ParseBool(shown, value);
                if (name is "help" or "h") o = o with { Help = b };
                else o = o with { LogY = b };
                continue;
            }
            bool mine = Valued.Contains(name);
            bool isBool = false;
            if (!mine && !schedulerFlags.Knows(name, out isBool))
                throw new PreviewUsageException($"unknown flag {shown} (see `Trainer lr preview --help`)");
            if (value is null && !isBool)
            {
                if (i + 1 >= args.Count) throw new PreviewUsageException($"flag {shown} needs a value");
                value = args[++i];
            }
            if (!mine) { sched.Add(new(name, value ?? "true")); continue; }
            string key = name == "o" ? "output" : name;
            if (!seen.Add(key == "lrs" ? "lr" : key))
                throw new PreviewUsageException(key is "lr" or "lrs" ? "give the initial LR once: --lr=X or --lrs=X,Y,..." : $"flag --{body} given twice");
            value ??= "";
            o = key switch
            {
                "lr_schedule" => o with { ScheduleArg = value },
                "steps" => o with { Steps = Int(shown, value, 1, PreviewDefaults.MaxSteps) },
                "lr" => o with { Lrs = [Dbl(shown, value)], LrsGiven = true },
                "lrs" => o with { Lrs = DblList(shown, value), LrsGiven = true },
                "format" => o with { Format = value.ToLowerInvariant() switch
                    {
                        "table" => PreviewFormat.Table, "csv" => PreviewFormat.Csv, "ascii" => PreviewFormat.Ascii, "png" => PreviewFormat.Png,
                        _ => throw new PreviewUsageException($"--format: '{value}' is not one of table|csv|ascii|png"),
                    } },
                "output" => o with { Output = value.Length > 0 ? value : throw new PreviewUsageException($"{shown}: empty file name") },
                "every" => o with { Every = Int(shown, value, 1, int.MaxValue) },
                "width" => o with { Width = Int(shown, value, 1, 20_000) },
                "height" => o with { Height = Int(shown, value, 1, 20_000) },
                "title" => o with { Title = value },
                "metrics" => o with { MetricsFile = value },
                _ => throw new InvalidOperationException(key),
            };
        }
        o = o with { SchedulerFlags = sched };
        if (o.Help) return o;

        if (o.ScheduleArg is not null && sched.Count > 0)
            throw new PreviewUsageException($"give either --lr-schedule=JSON or the scheduler flags, not both (got --lr-schedule and --{sched[0].Key.Replace('_', '-')})");
        if (o.ScheduleArg is null && sched.Count == 0)
            throw new PreviewUsageException("no schedule: give --lr-schedule=JSON|@FILE|FILE.json or --lr-scheduler=KIND with its flags");
        bool chart = o.Format is PreviewFormat.Ascii or PreviewFormat.Png;
        if (o.Format == PreviewFormat.Png && o.Output is null)
            throw new PreviewUsageException("--format=png needs --output=FILE.png (PNG is not written to the terminal)");
        if (!chart && (o.Width is not null || o.Height is not null)) throw new PreviewUsageException("--width/--height apply to --format=ascii|png");
        if (!chart && o.LogY) throw new PreviewUsageException("--log-y applies to --format=ascii|png");
        if (!chart && o.Title is not null) throw new PreviewUsageException("--title applies to --format=ascii|png");
        if (chart && o.Every != 1) throw new PreviewUsageException("--every applies to --format=table|csv (charts plot every step)");
        return o;
    }

    static bool ParseBool(string flag, string v) => v.ToLowerInvariant() switch
    {
        "true" or "1" or "yes" => true,
        "false" or "0" or "no" => false,
        _ => throw new PreviewUsageException($"{flag}: '{v}' is not a boolean (true|false)"),
    };

    static int Int(string flag, string v, int min, int max)
    {
        if (!int.TryParse(v, NumberStyles.AllowLeadingSign, Inv, out int n))
            throw new PreviewUsageException($"{flag}: '{v}' is not an integer");
        if (n < min || n > max) throw new PreviewUsageException($"{flag}: {n} is out of range [{min}, {max}]");
        return n;
    }

    static double Dbl(string flag, string v)
    {
        if (!double.TryParse(v, NumberStyles.Float, Inv, out double d) || !double.IsFinite(d))
            throw new PreviewUsageException($"{flag}: '{v}' is not a finite number");
        return d;
    }

    static double[] DblList(string flag, string v)
    {
        var parts = v.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length == 0 || parts.Any(p => p.Length == 0)) throw new PreviewUsageException($"{flag}: '{v}' is not a comma-separated list of numbers");
        return parts.Select(p => Dbl(flag, p)).ToArray();
    }
}
