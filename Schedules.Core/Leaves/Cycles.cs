using Schedules.Core.Runtime;

namespace Schedules.Core;

public enum CyclicMode { Triangular, Triangular2, ExpRange }
public enum AnnealStrategy { Cos, Linear }

/// <summary>torch.optim.lr_scheduler.CyclicLR (three modes, optional inverse momentum cycling).</summary>
public sealed record CyclicLR : LeafSchedule
{
    public PerGroup<double> BaseLr { get; }
    public PerGroup<double> MaxLr { get; }
    public int StepSizeUp { get; }
    public int? StepSizeDown { get; }
    public CyclicMode Mode { get; }
    public double Gamma { get; }
    public bool CycleMomentum { get; }
    public PerGroup<double> BaseMomentum { get; }
    public PerGroup<double> MaxMomentum { get; }

    public CyclicLR(PerGroup<double> baseLr, PerGroup<double> maxLr, int stepSizeUp = 2000, int? stepSizeDown = null,
        CyclicMode mode = CyclicMode.Triangular, double gamma = TorchDefaults.CyclicGamma, bool cycleMomentum = true,
        PerGroup<double>? baseMomentum = null, PerGroup<double>? maxMomentum = null)
    {
        BaseLr = baseLr; MaxLr = maxLr; StepSizeUp = stepSizeUp; StepSizeDown = stepSizeDown; Mode = mode; Gamma = gamma;
        CycleMomentum = cycleMomentum; BaseMomentum = baseMomentum ?? 0.8; MaxMomentum = maxMomentum ?? 0.9;
        var p = new ProblemList();
        p.Check(stepSizeUp >= 0, "step_size_up", stepSizeUp, "must be >= 0")
         .Check(stepSizeDown is null or >= 0, "step_size_down", stepSizeDown, "must be >= 0")
         .Check(stepSizeUp + (stepSizeDown ?? stepSizeUp) > 0, "step_size_up", stepSizeUp, "step_size_up + step_size_down must be positive (the cycle length divides the epoch)")
         .Check(double.IsFinite(gamma), "gamma", gamma, "must be a finite number");
        foreach (var (name, v) in new[] { ("base_lr", BaseLr), ("max_lr", MaxLr), ("base_momentum", BaseMomentum), ("max_momentum", MaxMomentum) })
            foreach (var x in v.Values) p.Check(double.IsFinite(x), name, x, "must be a finite number");
        p.ThrowIfAny();
    }

    public override string TypeName => "CyclicLR";
    public override bool CyclesMomentum => CycleMomentum;
    public override IEnumerable<ScheduleProblem> GroupProblems(int n, string path) =>
        BaseLr.CountProblems(path, "base_lr", n).Concat(MaxLr.CountProblems(path, "max_lr", n))
            .Concat(CycleMomentum ? BaseMomentum.CountProblems(path, "base_momentum", n).Concat(MaxMomentum.CountProblems(path, "max_momentum", n)) : []);

    double TotalSize => (double)StepSizeUp + (StepSizeDown ?? StepSizeUp);
    double StepRatio => StepSizeUp / TotalSize;
    bool ByCycle => Mode != CyclicMode.ExpRange;

    double Scale(double x) => Mode switch
    {
        CyclicMode.Triangular => 1.0,
        CyclicMode.Triangular2 => 1 / PyMath.Pow(2.0, x - 1, "CyclicLR triangular2"),
        _ => PyMath.Pow(Gamma, x, "CyclicLR exp_range"),
    };

    /// <summary>(scale factor within the cycle, amplitude scale) at epoch e.</summary>
    (double Factor, double Amplitude) At(int e)
    {
        double cycle = Math.Floor(1 + e / TotalSize);
        double x = 1.0 + e / TotalSize - cycle;
        double f = x <= StepRatio ? PyMath.Div(x, StepRatio, TypeName) : PyMath.Div(x - 1, StepRatio - 1, TypeName);
        return (f, Scale(ByCycle ? cycle : e));
    }

    public override double? ClosedForm(int e, double baseLr)
    {
        var (f, a) = At(e);
        double b = BaseLr.For(0);
        return b + (MaxLr.For(0) - b) * f * a;
    }

    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    sealed class Impl(CyclicLR s, GroupState g) : Node(g, "CyclicLR")
    {
        public override void Construct()
        {
            for (int i = 0; i < G.Count; i++) G.Lr[i] = s.BaseLr.For(i);
            if (s.CycleMomentum)
                for (int i = 0; i < G.Count; i++)
                {
                    G.Momentum![i] = s.MaxMomentum.For(i);
                    G.MaxMomentum[i] = s.MaxMomentum.For(i);
                    G.BaseMomentum[i] = s.BaseMomentum.For(i);
                }
            base.Construct(); // the construction-time step still uses base_lrs = initial_lr, as in PyTorch
            for (int i = 0; i < G.Count; i++) BaseLrs[i] = s.BaseLr.For(i);
        }

        protected override void Chainable(double[] into)
        {
            var (f, a) = s.At(LastEpoch);
            for (int i = 0; i < into.Length; i++)
            {
                double h = (s.MaxLr.For(i) - BaseLrs[i]) * f;
                into[i] = BaseLrs[i] + h * a;
            }
            if (s.CycleMomentum)
                for (int i = 0; i < into.Length; i++)
                {
                    double bm = s.BaseMomentum.For(i), mm = s.MaxMomentum.For(i);
                    SetMomentum(i, mm - (mm - bm) * f * a);
                }
        }
    }
}

/// <summary>torch.optim.lr_scheduler.OneCycleLR (cos/linear annealing, two or three phases, optional momentum).</summary>
public sealed record OneCycleLR : LeafSchedule
{
    public PerGroup<double> MaxLr { get; }
    public int? TotalStepsGiven { get; }
    public int? Epochs { get; }
    public int? StepsPerEpoch { get; }
    public double PctStart { get; }
    public AnnealStrategy AnnealStrategy { get; }
    public bool CycleMomentum { get; }
    public PerGroup<double> BaseMomentum { get; }
    public PerGroup<double> MaxMomentum { get; }
    public double DivFactor { get; }
    public double FinalDivFactor { get; }
    public bool ThreePhase { get; }
    /// <summary>total_steps, or epochs × steps_per_epoch.</summary>
    public int TotalSteps { get; }

    public OneCycleLR(PerGroup<double> maxLr, int? totalSteps = null, int? epochs = null, int? stepsPerEpoch = null,
        double pctStart = TorchDefaults.OneCyclePctStart, AnnealStrategy annealStrategy = AnnealStrategy.Cos, bool cycleMomentum = true,
        PerGroup<double>? baseMomentum = null, PerGroup<double>? maxMomentum = null, double divFactor = TorchDefaults.OneCycleDivFactor,
        double finalDivFactor = TorchDefaults.OneCycleFinalDivFactor, bool threePhase = false)
    {
        MaxLr = maxLr; TotalStepsGiven = totalSteps; Epochs = epochs; StepsPerEpoch = stepsPerEpoch; PctStart = pctStart;
        AnnealStrategy = annealStrategy; CycleMomentum = cycleMomentum; BaseMomentum = baseMomentum ?? 0.85;
        MaxMomentum = maxMomentum ?? 0.95; DivFactor = divFactor; FinalDivFactor = finalDivFactor; ThreePhase = threePhase;
        var p = new ProblemList();
        if (totalSteps is { } t) p.Check(t > 0, "total_steps", t, "Expected positive integer total_steps");
        else if (epochs is { } ep && stepsPerEpoch is { } spe)
            p.Check(ep > 0, "epochs", ep, "Expected positive integer epochs").Check(spe > 0, "steps_per_epoch", spe, "Expected positive integer steps_per_epoch");
        else p.Add("total_steps", null, "You must define either total_steps OR (epochs AND steps_per_epoch)");
        p.Check(pctStart >= 0 && pctStart <= 1, "pct_start", pctStart, "Expected float between 0 and 1")
         .Check(divFactor != 0 && double.IsFinite(divFactor), "div_factor", divFactor, "must be a finite non-zero number (initial_lr = max_lr / div_factor)")
         .Check(finalDivFactor != 0 && double.IsFinite(finalDivFactor), "final_div_factor", finalDivFactor, "must be a finite non-zero number (min_lr = initial_lr / final_div_factor)");
        foreach (var x in MaxLr.Values) p.Check(double.IsFinite(x), "max_lr", x, "must be a finite number");
        p.ThrowIfAny();
        TotalSteps = totalSteps ?? checked(epochs!.Value * stepsPerEpoch!.Value);
    }

    public override string TypeName => "OneCycleLR";
    public override bool CyclesMomentum => CycleMomentum;
    public override IEnumerable<ScheduleProblem> GroupProblems(int n, string path) =>
        MaxLr.CountProblems(path, "max_lr", n)
            .Concat(CycleMomentum ? BaseMomentum.CountProblems(path, "base_momentum", n).Concat(MaxMomentum.CountProblems(path, "max_momentum", n)) : []);

    enum Key { Initial, Max, Min, MaxMomentum, BaseMomentum }
    readonly record struct Phase(double EndStep, Key StartLr, Key EndLr, Key StartMomentum, Key EndMomentum);

    Phase[] Phases() => ThreePhase
        ? [
            new((double)(PctStart * TotalSteps) - 1, Key.Initial, Key.Max, Key.MaxMomentum, Key.BaseMomentum),
            new((double)(2 * PctStart * TotalSteps) - 2, Key.Max, Key.Initial, Key.BaseMomentum, Key.MaxMomentum),
            new(TotalSteps - 1, Key.Initial, Key.Min, Key.MaxMomentum, Key.MaxMomentum),
        ]
        : [
            new((double)(PctStart * TotalSteps) - 1, Key.Initial, Key.Max, Key.MaxMomentum, Key.BaseMomentum),
            new(TotalSteps - 1, Key.Max, Key.Min, Key.BaseMomentum, Key.MaxMomentum),
        ];

    double Anneal(double start, double end, double pct) => AnnealStrategy == AnnealStrategy.Cos
        ? end + (start - end) / 2.0 * (Math.Cos(Math.PI * pct) + 1)
        : (end - start) * pct + start;

    /// <summary>
    /// The rate at <paramref name="step"/> for one group when OneCycleLR is the only scheduler (nothing else rewrites the
    /// group's initial/max/min lr): the run's float operations, in its order. Beyond total_steps PyTorch raises.
    /// </summary>
    internal double ClosedFormAt(int step)
    {
        if (step > TotalSteps)
            throw new ScheduleStepException($"OneCycleLR: tried to step {step} times; the specified number of total steps is {TotalSteps}");
        double initial = MaxLr.For(0) / DivFactor, max = MaxLr.For(0), min = initial / FinalDivFactor;
        double Value(Key k) => k switch { Key.Initial => initial, Key.Max => max, _ => min };
        var phases = Phases();
        double start = 0.0;
        for (int k = 0; ; k++)
        {
            var ph = phases[k];
            if (step <= ph.EndStep || k == phases.Length - 1)
                return Anneal(Value(ph.StartLr), Value(ph.EndLr),
                    PyMath.Div(step - start, ph.EndStep - start, $"OneCycleLR phase {k + 1} has zero length"));
            start = ph.EndStep;
        }
    }

    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    sealed class Impl(OneCycleLR s, GroupState g) : Node(g, "OneCycleLR")
    {
        readonly Phase[] _phases = s.Phases();

        public override void Construct()
        {
            for (int i = 0; i < G.Count; i++)
            {
                G.InitialLr[i] = s.MaxLr.For(i) / s.DivFactor;
                G.HasInitialLr[i] = true;
                G.MaxLr[i] = s.MaxLr.For(i);
                G.MinLr[i] = G.InitialLr[i] / s.FinalDivFactor;
            }
            if (s.CycleMomentum)
                for (int i = 0; i < G.Count; i++)
                {
                    G.Momentum![i] = s.MaxMomentum.For(i);
                    G.MaxMomentum[i] = s.MaxMomentum.For(i);
                    G.BaseMomentum[i] = s.BaseMomentum.For(i);
                }
            base.Construct();
        }

        // PyTorch reads these from the param group at every step (see GroupState).
        double Value(Key k, int i) => k switch
        {
            Key.Initial => G.InitialLr[i],
            Key.Max => G.MaxLr[i],
            Key.Min => G.MinLr[i],
            Key.MaxMomentum => G.MaxMomentum[i],
            _ => G.BaseMomentum[i],
        };

        protected override void Chainable(double[] into)
        {
            int step = LastEpoch;
            if (step > s.TotalSteps)
                throw new ScheduleStepException($"OneCycleLR: tried to step {step} times; the specified number of total steps is {s.TotalSteps}");
            for (int i = 0; i < into.Length; i++)
            {
                double start = 0.0;
                for (int k = 0; k < _phases.Length; k++)
                {
                    var ph = _phases[k];
                    if (step <= ph.EndStep || k == _phases.Length - 1)
                    {
                        double pct = PyMath.Div(step - start, ph.EndStep - start, $"OneCycleLR phase {k + 1} has zero length");
                        into[i] = s.Anneal(Value(ph.StartLr, i), Value(ph.EndLr, i), pct);
                        if (s.CycleMomentum) SetMomentum(i, s.Anneal(Value(ph.StartMomentum, i), Value(ph.EndMomentum, i), pct));
                        break;
                    }
                    start = ph.EndStep;
                }
            }
        }
    }
}
