using System.Collections.Immutable;

namespace Schedules.Core;

/// <summary>
/// A parameter PyTorch accepts either as one value for every param group or as a list with one value per group
/// (<c>lr_lambda</c>, <c>max_lr</c>, <c>base_lr</c>, <c>min_lr</c>, momenta). The list's length is checked against the
/// optimizer's group count when the schedule is bound to an optimizer.
/// </summary>
public readonly record struct PerGroup<T>
{
    public ImmutableArray<T> Values { get; }
    /// <summary>True when given as a list (one per group), false for a single shared value.</summary>
    public bool IsList { get; }

    PerGroup(ImmutableArray<T> values, bool isList) { Values = values; IsList = isList; }

    public static PerGroup<T> One(T value) => new(ImmutableArray.Create(value), false);
    public static PerGroup<T> List(IEnumerable<T> values) => new(values.ToImmutableArray(), true);
    public static implicit operator PerGroup<T>(T value) => One(value);

    public T For(int group) => IsList ? Values[group] : Values[0];

    internal IEnumerable<ScheduleProblem> CountProblems(string path, string name, int groupCount)
    {
        if (IsList && Values.Length != groupCount)
            yield return new ScheduleProblem(path, name, $"{Values.Length} values", $"a list must have one value per param group ({groupCount})");
    }

    public bool Equals(PerGroup<T> other) => IsList == other.IsList && Values.SequenceEqual(other.Values);
    public override int GetHashCode() => Values.Aggregate(IsList ? 17 : 19, (h, v) => h * 31 + (v?.GetHashCode() ?? 0));
}
