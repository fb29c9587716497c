using Schedules.Core.Runtime;

namespace Schedules.Core;

/// <summary>
/// torch.optim.lr_scheduler.CosineAnnealingLR. Its chainable step is affine in (lr - eta_min), not a ratio of closed
/// forms, which is why a chain containing it differs from the product of closed forms (golden case cosine_chain_exp).
/// </summary>
public sealed record CosineAnnealingLR : LeafSchedule
{
    public int TMax { get; }
    public double EtaMin { get; }

    public CosineAnnealingLR(int tMax, double etaMin = 0.0)
    {
        TMax = tMax; EtaMin = etaMin;
        Problems(tMax, etaMin, new ProblemList()).ThrowIfAny();
    }

    public static ProblemList Problems(int tMax, double etaMin, ProblemList p) => p
        .Check(tMax >= 1, "T_max", tMax, "must be a positive integer (PyTorch divides by it and fails with a modulo by zero at the first step)")
        .Check(double.IsFinite(etaMin), "eta_min", etaMin, "must be a finite number");

    public override string TypeName => "CosineAnnealingLR";
    public override double? ClosedForm(int e, double baseLr) => EtaMin + (baseLr - EtaMin) * (1 + Math.Cos(Math.PI * e / TMax)) / 2;
    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    sealed class Impl(CosineAnnealingLR s, GroupState g) : ClosedFormNode(s, g)
    {
        protected override void Chainable(double[] into)
        {
            int e = LastEpoch, T = s.TMax;
            double eta = s.EtaMin;
            if (IsInitial)
            {
                for (int i = 0; i < into.Length; i++) into[i] = G.Lr[i];
            }
            else if (StepCount == 1 && e > 0)
            {
                for (int i = 0; i < into.Length; i++) into[i] = eta + (BaseLrs[i] - eta) * (1 + Math.Cos(e * Math.PI / T)) / 2;
            }
            else if (PyMath.FloorMod(e - 1 - T, 2 * T, Name) == 0)
            {
                for (int i = 0; i < into.Length; i++) into[i] = G.Lr[i] + (BaseLrs[i] - eta) * (1 - Math.Cos(Math.PI / T)) / 2;
            }
            else
            {
                double ratio = PyMath.Div(1 + Math.Cos(Math.PI * e / T), 1 + Math.Cos(Math.PI * (e - 1) / T), Name);
                for (int i = 0; i < into.Length; i++) into[i] = ratio * (G.Lr[i] - eta) + eta;
            }
        }
    }
}

/// <summary>torch.optim.lr_scheduler.CosineAnnealingWarmRestarts (SGDR): cosine cycles of T_0, T_0·T_mult, ... epochs.</summary>
public sealed record CosineAnnealingWarmRestarts : LeafSchedule
{
    public int T0 { get; }
    public int TMult { get; }
    public double EtaMin { get; }

    public CosineAnnealingWarmRestarts(int t0, int tMult = 1, double etaMin = 0.0)
    {
        T0 = t0; TMult = tMult; EtaMin = etaMin;
        Problems(t0, tMult, etaMin, new ProblemList()).ThrowIfAny();
    }

    public static ProblemList Problems(int t0, int tMult, double etaMin, ProblemList p) => p
        .Check(t0 >= 1, "T_0", t0, "Expected positive integer T_0")
        .Check(tMult >= 1, "T_mult", tMult, "Expected integer T_mult >= 1")
        .Check(double.IsFinite(etaMin), "eta_min", etaMin, "must be a finite number");

    public override string TypeName => "CosineAnnealingWarmRestarts";

    /// <summary>Epochs since the last restart and the current cycle length at epoch e, as PyTorch's integer recurrence gives them.</summary>
    public (int TCur, long TI) Cycle(int e)
    {
        if (TMult == 1) return (e % T0, T0);
        // Cycles grow geometrically: O(log e) of them before e.
        long ti = T0; long tcur = e;
        while (tcur >= ti) { tcur -= ti; ti *= TMult; }
        return ((int)tcur, ti);
    }

    public override double? ClosedForm(int e, double baseLr)
    {
        var (tcur, ti) = Cycle(Math.Max(e, 0));
        return EtaMin + (baseLr - EtaMin) * (1 + Math.Cos(Math.PI * tcur / ti)) / 2;
    }

    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    sealed class Impl(CosineAnnealingWarmRestarts s, GroupState g) : Node(g, "CosineAnnealingWarmRestarts")
    {
        long _tCur = -1, _tI = s.T0;

        // CosineAnnealingWarmRestarts overrides step(): its own cycle counters, no _step_count.
        public override void Step()
        {
            if (LastEpoch < 0)
            {
                _tI = s.T0; _tCur = 0; LastEpoch = 0;
            }
            else
            {
                LastEpoch++;
                _tCur++;
                if (_tCur >= _tI) { _tCur %= _tI; _tI = checked(_tI * s.TMult); }
            }
            ApplyChainable();
        }

        protected override void Chainable(double[] into)
        {
            double c = 1 + Math.Cos(Math.PI * _tCur / _tI);
            for (int i = 0; i < into.Length; i++) into[i] = s.EtaMin + (BaseLrs[i] - s.EtaMin) * c / 2;
        }
    }
}
