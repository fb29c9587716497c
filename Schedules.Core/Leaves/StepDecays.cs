using System.Collections.Immutable;
using Schedules.Core.Runtime;

namespace Schedules.Core;

/// <summary>torch.optim.lr_scheduler.StepLR: multiply by gamma every step_size epochs.</summary>
public sealed record StepLR : LeafSchedule
{
    public int StepSize { get; }
    public double Gamma { get; }

    public StepLR(int stepSize, double gamma = TorchDefaults.StepGamma)
    {
        StepSize = stepSize; Gamma = gamma;
        Problems(stepSize, gamma, new ProblemList()).ThrowIfAny();
    }

    public static ProblemList Problems(int stepSize, double gamma, ProblemList p) => p
        .Check(stepSize >= 1, "step_size", stepSize, "must be a positive integer (PyTorch takes epoch % step_size and fails with a modulo by zero at the first step)")
        .Check(double.IsFinite(gamma), "gamma", gamma, "must be a finite number");

    public override string TypeName => "StepLR";
    public override double? ClosedForm(int e, double baseLr) => baseLr * PyMath.Pow(Gamma, PyMath.FloorDiv(e, StepSize, TypeName), TypeName);
    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    sealed class Impl(StepLR s, GroupState g) : ClosedFormNode(s, g)
    {
        protected override void Chainable(double[] into)
        {
            bool decay = LastEpoch != 0 && PyMath.FloorMod(LastEpoch, s.StepSize, Name) == 0;
            for (int i = 0; i < into.Length; i++) into[i] = decay ? G.Lr[i] * s.Gamma : G.Lr[i];
        }
    }
}

/// <summary>torch.optim.lr_scheduler.MultiStepLR: multiply by gamma at each milestone (a repeated milestone counts repeatedly).</summary>
public sealed record MultiStepLR : LeafSchedule
{
    /// <summary>Milestones as given (order and repeats kept for the JSON form).</summary>
    public ImmutableArray<int> Milestones { get; }
    public double Gamma { get; }
    readonly int[] _sorted;

    public MultiStepLR(IEnumerable<int> milestones, double gamma = TorchDefaults.StepGamma)
    {
        Milestones = milestones.ToImmutableArray(); Gamma = gamma;
        _sorted = Milestones.OrderBy(m => m).ToArray();
        Problems(Milestones, gamma, new ProblemList()).ThrowIfAny();
    }

    public static ProblemList Problems(IReadOnlyList<int> milestones, double gamma, ProblemList p) => p
        .Check(double.IsFinite(gamma), "gamma", gamma, "must be a finite number");

    public override string TypeName => "MultiStepLR";
    int CountAt(int e) { int c = 0; foreach (var m in Milestones) if (m == e) c++; return c; }

    /// <summary>How many milestones (with repeats) lie in epochs a..b.</summary>
    internal int CountIn(int a, int b)
    {
        int lo = 0, hi = _sorted.Length; // bisect_left(a)
        while (lo < hi) { int mid = (lo + hi) >> 1; if (_sorted[mid] < a) lo = mid + 1; else hi = mid; }
        return PyMath.BisectRight(_sorted, b) - lo;
    }
    public override double? ClosedForm(int e, double baseLr) => baseLr * PyMath.Pow(Gamma, PyMath.BisectRight(_sorted, e), TypeName);
    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    sealed class Impl(MultiStepLR s, GroupState g) : ClosedFormNode(s, g)
    {
        protected override void Chainable(double[] into)
        {
            int c = s.CountAt(LastEpoch);
            double f = c == 0 ? 1.0 : PyMath.Pow(s.Gamma, c, Name);
            for (int i = 0; i < into.Length; i++) into[i] = c == 0 ? G.Lr[i] : G.Lr[i] * f;
        }
    }
}

/// <summary>torch.optim.lr_scheduler.ExponentialLR: multiply by gamma every epoch.</summary>
public sealed record ExponentialLR : LeafSchedule
{
    public double Gamma { get; }

    public ExponentialLR(double gamma)
    {
        Gamma = gamma;
        Problems(gamma, new ProblemList()).ThrowIfAny();
    }

    public static ProblemList Problems(double gamma, ProblemList p) => p
        .Check(double.IsFinite(gamma), "gamma", gamma, "must be a finite number");

    public override string TypeName => "ExponentialLR";
    public override double? ClosedForm(int e, double baseLr) => baseLr * PyMath.Pow(Gamma, e, TypeName);
    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    sealed class Impl(ExponentialLR s, GroupState g) : ClosedFormNode(s, g)
    {
        protected override void Chainable(double[] into)
        {
            for (int i = 0; i < into.Length; i++) into[i] = IsInitial ? G.Lr[i] : G.Lr[i] * s.Gamma;
        }
    }
}
