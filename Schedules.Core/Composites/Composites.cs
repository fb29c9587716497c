using System.Collections.Immutable;
using Schedules.Core.Runtime;

namespace Schedules.Core;

/// <summary>A schedule made of child schedules (ChainedScheduler, SequentialLR).</summary>
public abstract record CompositeSchedule : Schedule
{
    public ImmutableArray<Schedule> Schedulers { get; }

    protected CompositeSchedule(IEnumerable<Schedule> schedulers) => Schedulers = schedulers.ToImmutableArray();

    public override IReadOnlyList<Schedule> Children => Schedulers;
    public override bool CyclesMomentum => Schedulers.Any(s => s.CyclesMomentum);
    public override IEnumerable<ScheduleProblem> GroupProblems(int n, string path) =>
        Schedulers.SelectMany((s, i) => s.GroupProblems(n, $"{path}.schedulers[{i}]"));
}

/// <summary>
/// torch.optim.lr_scheduler.ChainedScheduler: every child steps, in order, on the same rates; each child's chainable
/// step transforms what the previous one left. Nested chains flatten; a nested SequentialLR keeps its own reset.
/// </summary>
public sealed record ChainedScheduler : CompositeSchedule
{

    public ChainedScheduler(IEnumerable<Schedule> schedulers) : base(schedulers)
    {
        Problems(Schedulers.Select(s => (string?)s.TypeName).ToArray(), new ProblemList()).ThrowIfAny();
    }

    /// <summary>The rules on the children, given their type names (null where a child was itself refused).</summary>
    public static ProblemList Problems(IReadOnlyList<string?> childTypes, ProblemList p)
    {
        p.Check(childTypes.Count >= 1, "schedulers", "[]", "ChainedScheduler expects at least one scheduler to be chained");
        for (int i = 0; i < childTypes.Count; i++)
            p.Check(childTypes[i] != "ReduceLROnPlateau", $"schedulers[{i}]", "ReduceLROnPlateau",
                "ChainedScheduler does not support ReduceLROnPlateau: it needs a metric to step");
        return p;
    }

    public ChainedScheduler(params Schedule[] schedulers) : this((IEnumerable<Schedule>)schedulers) { }

    public override string TypeName => "ChainedScheduler";

    internal override Node Build(GroupState g)
    {
        var kids = Schedulers.Select(s => s.Build(g)).ToArray();
        var n = new Impl(kids, g);
        n.Construct();
        return n;
    }

    sealed class Impl(Node[] kids, GroupState g) : Node(g, "ChainedScheduler")
    {
        // ChainedScheduler.__init__ does not call LRScheduler.__init__: no initial_lr, no initial step.
        public override void Construct() => SnapshotLastLr();

        public override void Step()
        {
            foreach (var k in kids) k.Step();
            SnapshotLastLr();
        }

        // As a SequentialLR child, a switch at a milestone calls get_lr(), which ChainedScheduler lacks in PyTorch.
        public override void UpdateLr(int? epoch) =>
            throw new ScheduleStepException("a ChainedScheduler inside SequentialLR cannot be switched to at a milestone (PyTorch raises NotImplementedError)");

        protected override void Chainable(double[] into) => throw new InvalidOperationException("unreachable");
        public override void Undo() { foreach (var k in kids) k.Undo(); }
    }
}

/// <summary>
/// torch.optim.lr_scheduler.SequentialLR: child i runs between milestones[i-1] and milestones[i]. At construction the
/// rates are reset to initial_lr, every child's epoch is undone once and the first child steps again; at a milestone the
/// next child starts from its closed form at its epoch 0 (get_lr where the class has no closed form).
/// </summary>
public sealed record SequentialLR : CompositeSchedule
{
    public ImmutableArray<int> Milestones { get; }

    public SequentialLR(IEnumerable<Schedule> schedulers, IEnumerable<int> milestones) : base(schedulers)
    {
        Milestones = milestones.ToImmutableArray();
        Problems(Schedulers.Select(s => (string?)s.TypeName).ToArray(), Milestones, new ProblemList()).ThrowIfAny();
    }

    /// <summary>The rules on children and milestones, given the children's type names (null where a child was itself refused).</summary>
    public static ProblemList Problems(IReadOnlyList<string?> childTypes, IReadOnlyList<int> milestones, ProblemList p)
    {
        p.Check(childTypes.Count >= 1, "schedulers", "[]", "SequentialLR expects at least one scheduler");
        for (int i = 0; i < childTypes.Count; i++)
            p.Check(childTypes[i] != "ReduceLROnPlateau", $"schedulers[{i}]", "ReduceLROnPlateau",
                "SequentialLR does not support ReduceLROnPlateau: it needs a metric to step");
        p.Check(milestones.Count == childTypes.Count - 1, "milestones", milestones,
            $"needs exactly one milestone fewer than schedulers ({childTypes.Count} schedulers)");
        bool increasing = true, positive = true;
        for (int i = 0; i < milestones.Count; i++)
        {
            if (i > 0 && milestones[i] <= milestones[i - 1]) increasing = false;
            if (milestones[i] < 1) positive = false;
        }
        p.Check(increasing, "milestones", milestones, "must be strictly increasing");
        p.Check(positive, "milestones", milestones, "must be positive (a milestone at 0 would never run the first scheduler)");
        return p;
    }

    public override string TypeName => "SequentialLR";

    internal override Node Build(GroupState g)
    {
        var kids = Schedulers.Select(s => s.Build(g)).ToArray();
        var n = new Impl(kids, Milestones.ToArray(), g);
        n.Construct();
        return n;
    }

    sealed class Impl(Node[] kids, int[] milestones, GroupState g) : Node(g, "SequentialLR")
    {
        public override void Construct()
        {
            LastEpoch = 0;
            for (int i = 0; i < G.Count; i++)
            {
                if (!G.HasInitialLr[i]) throw new ScheduleStepException($"param group {i} has no initial_lr");
                G.Lr[i] = G.InitialLr[i];
            }
            foreach (var k in kids) k.Undo();
            kids[0].InitialStep();
            Array.Copy(kids[0].LastLr, LastLr, G.Count);
        }

        // SequentialLR.step overrides LRScheduler.step: no _step_count, no chainable get_lr of its own.
        public override void Step()
        {
            LastEpoch++;
            int idx = PyMath.BisectRight(milestones, LastEpoch);
            var k = kids[idx];
            if (idx > 0 && milestones[idx - 1] == LastEpoch) k.UpdateLr(0);
            else k.Step();
            Array.Copy(k.LastLr, LastLr, G.Count);
        }

        public override void UpdateLr(int? epoch) =>
            throw new ScheduleStepException("a SequentialLR inside SequentialLR cannot be switched to at a milestone (PyTorch raises NotImplementedError)");

        protected override void Chainable(double[] into) => throw new InvalidOperationException("unreachable");
        public override void Undo() { foreach (var k in kids) k.Undo(); }
    }
}
