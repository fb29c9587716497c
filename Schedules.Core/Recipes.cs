namespace Schedules.Core;

public enum WarmupShape { Linear, Cosine }
public enum DecayShape { Linear, Cosine, OneMinusSqrt }

/// <summary>
/// The schedules people otherwise hand-write with lambdas, built from the algebra's own nodes, so they serialise to the
/// JSON format, run with PyTorch's semantics and can be reproduced in PyTorch from their JSON form.
/// </summary>
public static class Recipes
{
    /// <summary>
    /// Warmup into any schedule. Linear warmup is LinearLR from <paramref name="startFactor"/> (default 1/warmupSteps)
    /// to 1; cosine warmup is a half-cosine ramp (LambdaLR). For a leaf schedule: SequentialLR([warmup, then],
    /// [warmupSteps]), so <paramref name="then"/> starts from its own epoch 0 at the milestone. PyTorch cannot switch to a
    /// composite at a SequentialLR milestone (NotImplementedError), so a SequentialLR is flattened (its milestones shifted
    /// by warmupSteps) and a ChainedScheduler gets the warmup as one more chained factor over its first warmupSteps.
    /// </summary>
    public static Schedule WithWarmup(Schedule then, int warmupSteps, WarmupShape shape = WarmupShape.Linear, double? startFactor = null)
    {
        var p = new ProblemList("warmup").Check(warmupSteps >= 0, "warmup_steps", warmupSteps, "must be >= 0");
        double start = startFactor ?? (warmupSteps > 0 ? 1.0 / warmupSteps : 1.0);
        p.Check(start > 0 && start <= 1, "start_factor", start, "must be greater than 0 and at most 1");
        p.ThrowIfAny();
        if (warmupSteps == 0) return then;
        Schedule warm = shape == WarmupShape.Linear
            ? new LinearLR(start, 1.0, warmupSteps)
            : new LambdaLR(new LrLambda.CosineWarmup(warmupSteps, start));
        return then switch
        {
            SequentialLR seq => new SequentialLR([warm, .. seq.Schedulers], [warmupSteps, .. seq.Milestones.Select(m => m + warmupSteps)]),
            ChainedScheduler chain => new ChainedScheduler([warm, .. chain.Schedulers]),
            _ => new SequentialLR([warm, then], [warmupSteps]),
        };
    }

    /// <summary>
    /// Linear warmup to the base LR over <paramref name="warmupSteps"/>, then cosine annealing to the absolute floor
    /// <paramref name="minLr"/> at <paramref name="totalSteps"/> (PyTorch: SequentialLR(LinearLR, CosineAnnealingLR)).
    /// </summary>
    public static Schedule WarmupCosine(int warmupSteps, int totalSteps, double minLr = 0.0, WarmupShape warmup = WarmupShape.Linear)
    {
        new ProblemList("warmup_cosine")
            .Check(warmupSteps >= 0, "warmup_steps", warmupSteps, "must be >= 0")
            .Check(totalSteps > warmupSteps, "total_steps", totalSteps, $"must exceed warmup_steps ({warmupSteps})")
            .Check(double.IsFinite(minLr) && minLr >= 0, "min_lr", minLr, "must be a finite number >= 0")
            .ThrowIfAny();
        return WithWarmup(new CosineAnnealingLR(totalSteps - warmupSteps, minLr), warmupSteps, warmup);
    }

    /// <summary>
    /// Warmup-stable-decay (trapezoidal): warm up over <paramref name="warmupSteps"/>, hold the base LR for
    /// <paramref name="stableSteps"/>, then decay over <paramref name="decaySteps"/> to <paramref name="minFactor"/> × base
    /// (linear: LinearLR; cosine and 1-sqrt: LambdaLR with the library's cosine_decay / one_minus_sqrt functions).
    /// </summary>
    public static Schedule WarmupStableDecay(int warmupSteps, int stableSteps, int decaySteps, DecayShape decay = DecayShape.Linear,
        double minFactor = 0.0, WarmupShape warmup = WarmupShape.Linear)
    {
        new ProblemList("warmup_stable_decay")
            .Check(warmupSteps >= 0, "warmup_steps", warmupSteps, "must be >= 0")
            .Check(stableSteps >= 0, "stable_steps", stableSteps, "must be >= 0")
            .Check(decaySteps >= 1, "decay_steps", decaySteps, "must be >= 1")
            .Check(minFactor >= 0 && minFactor <= 1, "min_factor", minFactor, "must be between 0 and 1")
            .ThrowIfAny();
        Schedule cooldown = decay switch
        {
            DecayShape.Linear => new LinearLR(1.0, minFactor, decaySteps),
            DecayShape.Cosine => new LambdaLR(new LrLambda.CosineDecay(decaySteps, minFactor)),
            _ => new LambdaLR(new LrLambda.OneMinusSqrt(decaySteps, minFactor)),
        };
        Schedule afterWarmup = stableSteps == 0
            ? cooldown
            : new SequentialLR([new LambdaLR(new LrLambda.Const(1.0)), cooldown], [stableSteps]);
        return WithWarmup(afterWarmup, warmupSteps, warmup);
    }

    /// <summary>Inverse square root with linear warmup (Hugging Face's schedule; timescale = warmup).</summary>
    public static Schedule InverseSqrt(int warmupSteps)
    {
        new ProblemList("inverse_sqrt").Check(warmupSteps >= 1, "warmup_steps", warmupSteps, "must be >= 1").ThrowIfAny();
        return new LambdaLR(new LrLambda.InverseSqrt(warmupSteps));
    }
}
