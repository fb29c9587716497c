using Schedules.Core;

namespace Trainer.LrTools;

/// <summary>
/// The trainer's LR-scheduler flags (<c>--lr-scheduler=steplr --step-size=..</c>) as <c>lr preview</c> sees them: which
/// flag names belong to the mapping, and the <see cref="Schedule"/> they describe. The mapping itself is
/// Trainer/Cli/SchedulerFlags (branch trainer-loop); <c>lr preview</c> never maps flags on its own.
/// </summary>
public interface IPreviewSchedulerFlags
{
    /// <summary>Whether <c>--name</c> (underscores for dashes) is a scheduler flag; <paramref name="isBool"/> when it takes no value.</summary>
    bool Knows(string name, out bool isBool);

    /// <summary>
    /// The schedule for these flags (name → raw value, in the order given) at peak LR <paramref name="learningRate"/>
    /// for a run of <paramref name="numIterations"/> steps; null when the flags say "no scheduler".
    /// Throws <see cref="PreviewUsageException"/> (or the library's <see cref="InvalidScheduleException"/>) for bad flags.
    /// </summary>
    Schedule? Build(IReadOnlyList<KeyValuePair<string, string>> flags, double learningRate, int numIterations);
}

/// <summary>
/// Stand-in until Trainer/Cli/SchedulerFlags is merged (branch trainer-loop is not yet built on the schedule library):
/// recognises the scheduler flag names so that they get a clear message instead of "unknown flag", and refuses them.
/// Replace with an adapter over <c>SchedulerFlags.Define/Read/FromFlags</c> when that branch lands (see <see cref="PreviewCommand.SchedulerFlagsSource"/>).
/// </summary>
public sealed class SchedulerFlagsNotYetMerged : IPreviewSchedulerFlags
{
    static readonly string[] Names =
    [
        "lr_scheduler", "lr_decay_style", "warmup_steps", "lr_warmup_iters", "warmup_start_factor", "total_steps", "lr_decay_iters",
        "step_size", "gamma", "milestones", "min_lr", "power", "t0", "t_mult", "step_size_up", "cyclic_mode", "cycle_momentum",
        "pct_start", "div_factor", "final_div_factor", "decay_steps", "decay_shape", "patience", "threshold", "cooldown",
        "constant_factor", "constant_iters",
    ];

    public bool Knows(string name, out bool isBool)
    {
        isBool = name is "cycle_momentum" or "nocycle_momentum";
        return Names.Contains(name) || name == "nocycle_momentum";
    }

    public Schedule? Build(IReadOnlyList<KeyValuePair<string, string>> flags, double learningRate, int numIterations) =>
        throw new PreviewUsageException(
            $"--{flags[0].Key.Replace('_', '-')}: the trainer's scheduler flags are not in this build yet (their mapping, " +
            "Trainer/Cli/SchedulerFlags, comes with the training command); give the schedule as --lr-schedule=JSON|@FILE|FILE.json");
}

/// <summary>Reads the schedule of <c>lr preview</c>: JSON inline, <c>@FILE</c>, or a path to a <c>.json</c> file.</summary>
public static class PreviewScheduleSource
{
    /// <summary>The JSON text an <c>--lr-schedule</c> argument stands for.</summary>
    public static string ResolveJson(string arg)
    {
        string t = arg.Trim();
        if (t.Length == 0) throw new PreviewUsageException("--lr-schedule: empty (give JSON, @FILE or FILE.json)");
        string? path = t.StartsWith('@') ? t[1..]
            : t.StartsWith('{') || t.StartsWith('[') ? null
            : t;
        if (path is null) return t;
        if (path.Length == 0) throw new PreviewUsageException("--lr-schedule: '@' needs a file name");
        if (Directory.Exists(path)) throw new PreviewUsageException($"--lr-schedule: '{path}' is a directory, not a JSON file");
        if (!File.Exists(path))
            throw new PreviewUsageException(t.StartsWith('@') || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
                ? $"--lr-schedule: no such file '{path}'"
                : $"--lr-schedule: '{Short(t)}' is neither JSON (starting with '{{'), @FILE, nor an existing file");
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PreviewUsageException($"--lr-schedule: cannot read '{path}': {e.Message}");
        }
    }

    /// <summary>Parses the schedule; the library's problems (JSON path, parameter, rule) become the message.</summary>
    public static Schedule Parse(string arg)
    {
        string json = ResolveJson(arg);
        try { return ScheduleJson.Parse(json); }
        catch (InvalidScheduleException e) { throw new PreviewUsageException("--lr-schedule: " + e.Message); }
    }

    static string Short(string s) => s.Length <= 60 ? s : s[..60] + "...";
}
