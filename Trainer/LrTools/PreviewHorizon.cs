using Schedules.Core;

namespace Trainer.LrTools;

/// <summary>
/// The number of steps a preview shows by default: where the schedule reaches its final value, or a few periods of a
/// periodic one; null when the schedule has no natural end (StepLR, ExponentialLR, MultiplicativeLR, most lambdas).
/// <list type="bullet">
/// <item>ConstantLR, LinearLR, PolynomialLR: total_iters. CosineAnnealingLR: T_max (eta_min reached).</item>
/// <item>OneCycleLR: total_steps − 1 (the last step PyTorch allows). CyclicLR: two cycles.
/// CosineAnnealingWarmRestarts: three cycles (T_0 + T_0·T_mult + T_0·T_mult²).</item>
/// <item>MultiStepLR: the last milestone + 10% (at least 1 step), so the last drop is visible.</item>
/// <item>LambdaLR: the lambda's total (warmup_linear, warmup_cosine) or length (one_minus_sqrt).</item>
/// <item>SequentialLR: the last milestone + the last child's horizon (100 when that has none).
/// ChainedScheduler: the longest known horizon among its children.</item>
/// </list>
/// </summary>
public static class PreviewHorizon
{
    public static int? Of(Schedule s)
    {
        long? h = Raw(s);
        return h is { } v && v >= 1 ? (int)Math.Min(v, PreviewDefaults.MaxSteps) : null; // a run is capped by the caller
    }

    static long? Raw(Schedule s) => s switch
    {
        ConstantLR c => c.TotalIters,
        LinearLR l => l.TotalIters,
        PolynomialLR p => p.TotalIters,
        CosineAnnealingLR c => c.TMax,
        OneCycleLR o => o.TotalSteps - 1L,
        CyclicLR c => 2L * (c.StepSizeUp + (c.StepSizeDown ?? c.StepSizeUp)),
        CosineAnnealingWarmRestarts w => w.T0 * (1L + w.TMult + (long)w.TMult * w.TMult),
        MultiStepLR m when m.Milestones.Length > 0 => m.Milestones.Max() + Math.Max(1L, m.Milestones.Max() / 10),
        LambdaLR l when !l.LrLambda.IsList || l.LrLambda.Values.Length > 0 => l.LrLambda.Values.Select(Lambda).Max(),
        SequentialLR q => q.Milestones.Length == 0 ? Raw(q.Schedulers[^1]) : q.Milestones[^1] + (Raw(q.Schedulers[^1]) ?? PreviewDefaults.Steps),
        ChainedScheduler c => c.Schedulers.Select(Raw).Where(h => h is not null).DefaultIfEmpty(null).Max(),
        _ => null,
    };

    static long? Lambda(LrLambda f) => f switch
    {
        LrLambda.WarmupLinear w => w.Total,
        LrLambda.WarmupCosine w => w.Total,
        LrLambda.OneMinusSqrt o => o.Length,
        _ => null,
    };
}
