using Schedules.Core.Runtime;

namespace Schedules.Core;

/// <summary>torch.optim.lr_scheduler.ConstantLR: multiply by factor until total_iters, then restore.</summary>
public sealed record ConstantLR : LeafSchedule
{
    public double Factor { get; }
    public int TotalIters { get; }

    public ConstantLR(double factor = 1.0 / 3, int totalIters = 5)
    {
        Factor = factor; TotalIters = totalIters;
        Problems(factor, totalIters, new ProblemList()).ThrowIfAny();
    }

    public static ProblemList Problems(double factor, int totalIters, ProblemList p) => p
        .Check(factor >= 0 && factor <= 1.0, "factor", factor, "Constant multiplicative factor expected to be between 0 and 1")
        .Check(totalIters >= 0, "total_iters", totalIters, "must be >= 0");

    public override string TypeName => "ConstantLR";
    public override double? ClosedForm(int e, double baseLr) => baseLr * (Factor + (e >= TotalIters ? 1 : 0) * (1 - Factor));
    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    sealed class Impl(ConstantLR s, GroupState g) : ClosedFormNode(s, g)
    {
        protected override void Chainable(double[] into)
        {
            if (LastEpoch == 0) { for (int i = 0; i < into.Length; i++) into[i] = G.Lr[i] * s.Factor; return; }
            if (LastEpoch != s.TotalIters) { for (int i = 0; i < into.Length; i++) into[i] = G.Lr[i]; return; }
            // PyTorch multiplies by 1.0 / factor here: with factor 0 that is a division by zero at total_iters.
            double inv = PyMath.Div(1.0, s.Factor, $"{Name} (factor=0 at total_iters={s.TotalIters})");
            for (int i = 0; i < into.Length; i++) into[i] = G.Lr[i] * inv;
        }
    }
}

/// <summary>torch.optim.lr_scheduler.LinearLR: the factor moves linearly from start_factor to end_factor over total_iters.</summary>
public sealed record LinearLR : LeafSchedule
{
    public double StartFactor { get; }
    public double EndFactor { get; }
    public int TotalIters { get; }

    public LinearLR(double startFactor = 1.0 / 3, double endFactor = 1.0, int totalIters = 5)
    {
        StartFactor = startFactor; EndFactor = endFactor; TotalIters = totalIters;
        Problems(startFactor, endFactor, totalIters, new ProblemList()).ThrowIfAny();
    }

    public static ProblemList Problems(double start, double end, int totalIters, ProblemList p) => p
        .Check(start > 0 && start <= 1.0, "start_factor", start, "Starting multiplicative factor expected to be greater than 0 and less or equal to 1")
        .Check(end >= 0 && end <= 1.0, "end_factor", end, "Ending multiplicative factor expected to be between 0 and 1")
        .Check(totalIters >= 0, "total_iters", totalIters, "must be >= 0");

    public override string TypeName => "LinearLR";
    public override double? ClosedForm(int e, double baseLr) =>
        baseLr * (StartFactor + PyMath.Div((EndFactor - StartFactor) * Math.Min(TotalIters, e), TotalIters,
            $"LinearLR closed form with total_iters=0"));
    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    sealed class Impl(LinearLR s, GroupState g) : ClosedFormNode(s, g)
    {
        protected override void Chainable(double[] into)
        {
            if (LastEpoch == 0) { for (int i = 0; i < into.Length; i++) into[i] = G.Lr[i] * s.StartFactor; return; }
            if (IsInitial || LastEpoch > s.TotalIters) { for (int i = 0; i < into.Length; i++) into[i] = G.Lr[i]; return; }
            double d = s.TotalIters * s.StartFactor + (LastEpoch - 1) * (s.EndFactor - s.StartFactor);
            double f = 1.0 + PyMath.Div(s.EndFactor - s.StartFactor, d, Name);
            for (int i = 0; i < into.Length; i++) into[i] = G.Lr[i] * f;
        }
    }
}

/// <summary>torch.optim.lr_scheduler.PolynomialLR: decay to 0 over total_iters with the given power.</summary>
public sealed record PolynomialLR : LeafSchedule
{
    public int TotalIters { get; }
    public double Power { get; }

    public PolynomialLR(int totalIters = 5, double power = 1.0)
    {
        TotalIters = totalIters; Power = power;
        Problems(totalIters, power, new ProblemList()).ThrowIfAny();
    }

    public static ProblemList Problems(int totalIters, double power, ProblemList p) => p
        .Check(totalIters >= 0, "total_iters", totalIters, "must be >= 0")
        .Check(double.IsFinite(power), "power", power, "must be a finite number");

    public override string TypeName => "PolynomialLR";
    public override double? ClosedForm(int e, double baseLr) =>
        baseLr * PyMath.Pow(1.0 - PyMath.Div(Math.Min(TotalIters, e), TotalIters, "PolynomialLR closed form with total_iters=0"), Power, TypeName);
    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    sealed class Impl(PolynomialLR s, GroupState g) : ClosedFormNode(s, g)
    {
        protected override void Chainable(double[] into)
        {
            if (IsInitial || LastEpoch > s.TotalIters) { for (int i = 0; i < into.Length; i++) into[i] = G.Lr[i]; return; }
            double num = 1.0 - PyMath.Div(LastEpoch, s.TotalIters, Name);
            double den = 1.0 - PyMath.Div(LastEpoch - 1, s.TotalIters, Name);
            double f = PyMath.Pow(PyMath.Div(num, den, Name), s.Power, Name);
            for (int i = 0; i < into.Length; i++) into[i] = G.Lr[i] * f;
        }
    }
}
