namespace Schedules.Core;

/// <summary>One reason a schedule configuration is refused: where, which parameter, the value given, and the rule it breaks.</summary>
public sealed record ScheduleProblem(string Path, string Parameter, string Value, string Rule)
{
    public override string ToString() =>
        $"{(Path.Length > 0 ? Path + ": " : "")}{Parameter}={Value}: {Rule}";
}

/// <summary>A configuration was refused at construction; <see cref="Problems"/> lists every problem found, not only the first.</summary>
public class InvalidScheduleException : ArgumentException
{
    public IReadOnlyList<ScheduleProblem> Problems { get; }

    public InvalidScheduleException(IEnumerable<ScheduleProblem> problems)
        : this(problems.ToArray()) { }

    protected InvalidScheduleException(ScheduleProblem[] problems)
        : base(Describe(problems)) => Problems = problems;

    static string Describe(ScheduleProblem[] problems) =>
        problems.Length == 1
            ? "invalid schedule: " + problems[0]
            : $"invalid schedule ({problems.Length} problems):\n  " + string.Join("\n  ", problems.Select(p => p.ToString()));
}

/// <summary>
/// Raised while stepping where PyTorch itself would raise (a division by zero that only a later epoch reaches,
/// OneCycleLR stepped past total_steps, a composite that PyTorch cannot switch to at a SequentialLR milestone).
/// We never hand out NaN, infinity or a silently wrong rate instead.
/// </summary>
public sealed class ScheduleStepException : InvalidOperationException
{
    public ScheduleStepException(string message) : base(message) { }
}

/// <summary>Collects problems for one node of a configuration, then refuses them all at once.</summary>
public sealed class ProblemList
{
    readonly List<ScheduleProblem> _items = new();
    public string Path { get; }
    public ProblemList(string path = "") => Path = path;

    public IReadOnlyList<ScheduleProblem> Items => _items;
    public bool Any => _items.Count > 0;

    public ProblemList Add(string parameter, object? value, string rule)
    {
        _items.Add(new ScheduleProblem(Path, parameter, Show(value), rule));
        return this;
    }

    public ProblemList Check(bool ok, string parameter, object? value, string rule) => ok ? this : Add(parameter, value, rule);

    public ProblemList AddRange(IEnumerable<ScheduleProblem> problems)
    {
        _items.AddRange(problems);
        return this;
    }

    public void ThrowIfAny()
    {
        if (_items.Count > 0) throw new InvalidScheduleException(_items);
    }

    internal static string Show(object? v) => v switch
    {
        null => "null",
        ShownValue r => r.Text,
        double d => Fmt.Num(d),
        float f => Fmt.Num(f),
        string s => "\"" + s + "\"",
        System.Collections.IEnumerable e => "[" + string.Join(", ", e.Cast<object?>().Select(Show)) + "]",
        bool b => b ? "true" : "false",
        _ => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "?",
    };
}

/// <summary>A value already written as text (e.g. a JSON fragment): shown as is.</summary>
public sealed record ShownValue(string Text);

/// <summary>Number formatting shared by messages, JSON and tables: shortest round-trip, invariant culture.</summary>
public static class Fmt
{
    public static string Num(double d) =>
        double.IsFinite(d) && d == Math.Floor(d) && Math.Abs(d) < 1e15
            ? d.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)
            : d.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>A schedule description (JSON) was refused: syntax, unknown types or fields, wrong types, or invalid values, each with its JSON path.</summary>
public sealed class ScheduleFormatException : InvalidScheduleException
{
    public ScheduleFormatException(IEnumerable<ScheduleProblem> problems) : base(problems.ToArray()) { }
}
