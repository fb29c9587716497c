using Schedules.Core.Runtime;

namespace Schedules.Core;

public enum PlateauMode { Min, Max }
public enum ThresholdMode { Rel, Abs }

/// <summary>
/// torch.optim.lr_scheduler.ReduceLROnPlateau: metric-driven, so not a function of the step alone. It cannot be nested
/// in SequentialLR or ChainedScheduler (PyTorch refuses that too); its run keeps its counters and current rates.
/// </summary>
public sealed record ReduceLROnPlateau : LeafSchedule
{
    public PlateauMode Mode { get; }
    public double Factor { get; }
    public int Patience { get; }
    public double Threshold { get; }
    public ThresholdMode ThresholdMode { get; }
    public int Cooldown { get; }
    public PerGroup<double> MinLr { get; }
    public double Eps { get; }

    public ReduceLROnPlateau(PlateauMode mode = PlateauMode.Min, double factor = TorchDefaults.PlateauFactor, int patience = TorchDefaults.PlateauPatience,
        double threshold = TorchDefaults.PlateauThreshold, ThresholdMode thresholdMode = ThresholdMode.Rel, int cooldown = TorchDefaults.PlateauCooldown, PerGroup<double>? minLr = null, double eps = 1e-8)
    {
        Mode = mode; Factor = factor; Patience = patience; Threshold = threshold; ThresholdMode = thresholdMode;
        Cooldown = cooldown; MinLr = minLr ?? 0.0; Eps = eps;
        var p = new ProblemList()
            .Check(factor < 1.0, "factor", factor, "Factor should be < 1.0")
            .Check(factor >= 0, "factor", factor, "must be >= 0 (a negative factor flips the sign of the learning rate)")
            .Check(patience >= 0, "patience", patience, "must be >= 0")
            .Check(cooldown >= 0, "cooldown", cooldown, "must be >= 0")
            .Check(double.IsFinite(threshold), "threshold", threshold, "must be a finite number")
            .Check(double.IsFinite(eps), "eps", eps, "must be a finite number");
        foreach (var m in MinLr.Values) p.Check(double.IsFinite(m), "min_lr", m, "must be a finite number");
        p.ThrowIfAny();
    }

    public override string TypeName => "ReduceLROnPlateau";
    public override bool IsMetricDriven => true;
    public override IEnumerable<ScheduleProblem> GroupProblems(int n, string path) => MinLr.CountProblems(path, "min_lr", n);
    internal override Node Build(GroupState g) =>
        throw new ScheduleStepException("ReduceLROnPlateau steps on a metric and cannot be composed");

    internal bool IsBetter(double a, double best) => (Mode, ThresholdMode) switch
    {
        (PlateauMode.Min, ThresholdMode.Rel) => a < best * (1.0 - Threshold),
        (PlateauMode.Min, ThresholdMode.Abs) => a < best - Threshold,
        (PlateauMode.Max, ThresholdMode.Rel) => a > best * (Threshold + 1.0),
        _ => a > best + Threshold,
    };

    internal double ModeWorse => Mode == PlateauMode.Min ? double.PositiveInfinity : double.NegativeInfinity;
}

/// <summary>ReduceLROnPlateau's counters: with the current rates, all a checkpoint needs.</summary>
public sealed record PlateauCounters(int LastEpoch, double Best, int NumBadEpochs, int CooldownCounter);

internal sealed class PlateauNode
{
    readonly ReduceLROnPlateau _s;
    readonly GroupState _g;
    public readonly double[] LastLr;
    int _lastEpoch, _bad, _cooldown;
    double _best;

    public PlateauNode(ReduceLROnPlateau s, GroupState g)
    {
        _s = s; _g = g;
        LastLr = g.Lr.ToArray();
        _best = s.ModeWorse;
    }

    public PlateauCounters Counters => new(_lastEpoch, _best, _bad, _cooldown);

    public void Restore(PlateauCounters c)
    {
        (_lastEpoch, _best, _bad, _cooldown) = (c.LastEpoch, c.Best, c.NumBadEpochs, c.CooldownCounter);
        Array.Copy(_g.Lr, LastLr, _g.Count);
    }

    public void Step(double metric)
    {
        if (double.IsNaN(metric)) throw new ScheduleStepException("ReduceLROnPlateau: the metric is NaN");
        _lastEpoch++;
        if (_s.IsBetter(metric, _best)) { _best = metric; _bad = 0; }
        else _bad++;
        if (_cooldown > 0) { _cooldown--; _bad = 0; }
        if (_bad > _s.Patience)
        {
            for (int i = 0; i < _g.Count; i++)
            {
                double old = _g.Lr[i];
                double min = _s.MinLr.For(i);
                double cand = old * _s.Factor;
                double next = cand >= min ? cand : min;
                if (old - next > _s.Eps) _g.Lr[i] = next;
            }
            _cooldown = _s.Cooldown;
            _bad = 0;
        }
        Array.Copy(_g.Lr, LastLr, _g.Count);
    }
}
