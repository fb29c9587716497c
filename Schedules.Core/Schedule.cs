using Schedules.Core.Runtime;

namespace Schedules.Core;

/// <summary>
/// A learning-rate schedule: an immutable value, validated when constructed, whose meaning is a pure function
/// (step, base LR) → LR with exactly PyTorch's semantics for the class of the same name (including how chained and
/// sequential compositions step their children). <see cref="Lr"/> evaluates it from scratch; <see cref="Start"/> gives
/// an incremental run that advances in O(1) per step, which the stateful adapter wraps.
/// </summary>
public abstract record Schedule
{
    /// <summary>PyTorch's class name (<c>StepLR</c>, <c>SequentialLR</c>, ...), the <c>type</c> of the JSON format.</summary>
    public abstract string TypeName { get; }

    /// <summary>Problems that depend on the optimizer's group count (per-group lists), found when binding.</summary>
    public virtual IEnumerable<ScheduleProblem> GroupProblems(int groupCount, string path) => [];

    /// <summary>Whether the schedule writes momentum (CyclicLR/OneCycleLR with cycle_momentum), anywhere in the tree.</summary>
    public virtual bool CyclesMomentum => false;

    /// <summary>Whether step() needs a metric (ReduceLROnPlateau).</summary>
    public virtual bool IsMetricDriven => false;

    /// <summary>Children of a composite (empty for a leaf).</summary>
    public virtual IReadOnlyList<Schedule> Children => [];

    /// <summary>Builds this scheduler's runtime object on the groups, constructing children first, as PyTorch code does.</summary>
    internal abstract Node Build(GroupState groups);

    /// <summary>
    /// Starts a run on param groups with these initial learning rates (and momenta, when the optimizer has them):
    /// the construction-time step is applied, as in PyTorch. Refuses what cannot bind to that many groups.
    /// </summary>
    public ScheduleRun Start(IReadOnlyList<double> initialLrs, IReadOnlyList<double>? momenta = null) =>
        new(this, initialLrs, momenta);

    /// <summary>The LR at <paramref name="step"/> (0 = right after construction) for a single group starting at <paramref name="baseLr"/>.</summary>
    public double Lr(int step, double baseLr)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "step must be >= 0");
        var run = Start([baseLr], CyclesMomentum ? [0.9] : null);
        run.Advance(step);
        return run.Lrs[0];
    }

    /// <summary>The schedule as a plain function (step, base LR) → LR.</summary>
    public Func<int, double, double> AsFunc() => Lr;

    /// <summary>Every group's LR after construction and after each of <paramref name="steps"/> steps: <c>[steps+1][groups]</c>.</summary>
    public double[][] Trace(IReadOnlyList<double> initialLrs, int steps, IReadOnlyList<double>? momenta = null)
    {
        var run = Start(initialLrs, momenta ?? (CyclesMomentum ? Enumerable.Repeat(0.9, initialLrs.Count).ToArray() : null));
        var rows = new double[steps + 1][];
        rows[0] = run.Lrs.ToArray();
        for (int i = 1; i <= steps; i++) { run.Step(); rows[i] = run.Lrs.ToArray(); }
        return rows;
    }

    /// <summary>The JSON description (PyTorch class names and keyword arguments, every argument written out).</summary>
    public string ToJson() => ScheduleJson.Write(this);

    public sealed override string ToString() => ToJson();
}

/// <summary>A schedule that is not a composite: one PyTorch scheduler class.</summary>
public abstract record LeafSchedule : Schedule
{
    /// <summary>
    /// PyTorch's closed form at <paramref name="epoch"/> for one group whose base LR is <paramref name="baseLr"/>, where the class
    /// has one (null otherwise). Equal to the chainable run up to rounding (about 1e-13 relative).
    /// </summary>
    public virtual double? ClosedForm(int epoch, double baseLr) => null;
}
