using Schedules.Core.Runtime;

namespace Schedules.Core;

/// <summary>
/// A learning-rate schedule: an immutable value, validated when constructed, whose meaning is a pure function
/// (step, base LR) → LR with exactly PyTorch's semantics for the class of the same name (including how chained and
/// sequential compositions step their children). <see cref="Lr"/> evaluates it in closed form where PyTorch's semantics
/// reduce to one (<see cref="IsClosedForm"/>), else from a cached run; <see cref="Start"/> gives an incremental run that
/// advances in O(1) per step, which the stateful adapter wraps.
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

    /// <summary>
    /// The LR at <paramref name="step"/> (0 = right after construction) for a single group starting at <paramref name="baseLr"/>.
    /// In closed form (O(1), O(log step) for warm restarts with T_mult &gt; 1) up to <see cref="ClosedFormHorizon"/>,
    /// agreeing with the run to rounding (within 1e-12 relative); past it from a run, cached per schedule value, so
    /// samples taken in increasing step order cost O(1) each, amortised. Thread-safe. The stateful adapter and
    /// <see cref="Trace"/> always run, bit-exact with PyTorch.
    /// </summary>
    public double Lr(int step, double baseLr)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "step must be >= 0");
        var ev = Evaluation;
        if (step <= ev.Closed.Horizon && ev.Closed.Lr(step, baseLr) is { } lr) return lr;
        return ev.Run(step, baseLr);
    }

    /// <summary>Whether <see cref="Lr"/> is in closed form at every step (docs/DESIGN.md says which compositions are).</summary>
    public bool IsClosedForm => ClosedFormHorizon == int.MaxValue;

    /// <summary>The last step up to which <see cref="Lr"/> is in closed form (-1: none; int.MaxValue: every step).</summary>
    public int ClosedFormHorizon => Evaluation.Closed.Horizon;

    /// <summary>The schedule as a plain function (step, base LR) → LR.</summary>
    public Func<int, double, double> AsFunc() => Lr;

    // Per schedule value (by reference, so a record's equality is untouched): its compiled closed form and a cached run.
    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Schedule, LrEvaluation> Evaluations = new();
    LrEvaluation Evaluation => Evaluations.GetValue(this, s => new LrEvaluation(s));

    /// <summary>
    /// The compiled closed form and, where it does not reach, the last run (one group, one base LR), advanced forward for
    /// later steps and restarted for an earlier step or another base LR.
    /// </summary>
    sealed class LrEvaluation(Schedule schedule)
    {
        public readonly ClosedForm Closed = ClosedForm.Compile(schedule);
        readonly object _gate = new();
        ScheduleRun? _run;
        double _runBase;

        public double Run(int step, double baseLr)
        {
            lock (_gate)
            {
                if (_run is null || _run.Steps > step || !_runBase.Equals(baseLr))
                {
                    _run = null;
                    var run = schedule.Start([baseLr], schedule.CyclesMomentum ? [0.9] : null);
                    (_run, _runBase) = (run, baseLr);
                }
                try { _run.Advance(step - _run.Steps); }
                catch { _run = null; throw; } // a failed run cannot continue
                return _run.Lrs[0];
            }
        }
    }

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
