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
    /// The warmup's default LinearLR start factor, 1/(W+1): step k of the warmup runs at base·(k+1)/(W+1) (nanoGPT's
    /// ramp), so the first step already trains and step W reaches the base LR. The CLI and the PyTorch reference use it.
    /// </summary>
    public static double DefaultWarmupStart(int warmupSteps) => 1.0 / (warmupSteps + 1);

    /// <summary>
    /// Warmup into any schedule PyTorch can run after one. Linear warmup is LinearLR from <paramref name="startFactor"/>
    /// (default <see cref="DefaultWarmupStart"/>) to 1; cosine warmup is a half-cosine ramp (LambdaLR).
    /// <list type="bullet">
    /// <item>A leaf: SequentialLR([warmup, then], [W]); <paramref name="then"/> starts from its own epoch 0 at step W.</item>
    /// <item>A SequentialLR whose first child is a leaf: flattened, its milestones shifted by W (PyTorch cannot switch
    /// into a nested SequentialLR).</item>
    /// <item>A ChainedScheduler whose members all multiply the rate (<see cref="MultipliesRate"/>): PyTorch cannot
    /// switch into a ChainedScheduler at a milestone either, so the linear warmup becomes its first member,
    /// ChainedScheduler([LinearLR(start, 1, W), ...members]): the rate is the chain's own times a factor that rises to 1
    /// over the chain's first W steps (the chain is not delayed).</item>
    /// </list>
    /// Anything else (ReduceLROnPlateau, a chain with a member that sets the rate outright, a SequentialLR that starts
    /// with a composite, a cosine warmup before a chain) is refused with the reason (<see cref="WarmupRefusal"/>).
    /// </summary>
    public static Schedule WithWarmup(Schedule then, int warmupSteps, WarmupShape shape = WarmupShape.Linear, double? startFactor = null)
    {
        var p = new ProblemList("warmup").Check(warmupSteps >= 0, "warmup_steps", warmupSteps, "must be >= 0");
        double start = startFactor ?? DefaultWarmupStart(Math.Max(0, warmupSteps));
        p.Check(start > 0 && start <= 1, "start_factor", start, "must be greater than 0 and at most 1");
        if (warmupSteps > 0 && WarmupRefusal(then, shape) is { } why) p.Add("warmup_steps", warmupSteps, why);
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

    /// <summary>Why PyTorch cannot run a warmup before <paramref name="then"/> (see <see cref="WithWarmup"/>); null when it can.</summary>
    public static string? WarmupRefusal(Schedule then, WarmupShape shape = WarmupShape.Linear) => then switch
    {
        _ when then.IsMetricDriven || then.Children.Any(c => c.IsMetricDriven) => "ReduceLROnPlateau cannot follow a warmup (PyTorch cannot sequence or chain it)",
        SequentialLR { Schedulers: [var first, ..] } when first.Children.Count > 0 =>
            $"a SequentialLR that starts with a {first.TypeName} cannot follow a warmup (PyTorch cannot switch into a composite at a milestone)",
        ChainedScheduler when shape != WarmupShape.Linear =>
            "a ChainedScheduler takes only a linear warmup (a chained LambdaLR would set the rate outright)",
        ChainedScheduler chain when chain.Schedulers.FirstOrDefault(s => !MultipliesRate(s)) is { } setter =>
            $"a ChainedScheduler with a {setter.TypeName} cannot follow a warmup: PyTorch cannot switch into a chain at a milestone, " +
            $"and a warmup chained with it would be overwritten ({setter.TypeName} sets the rate instead of multiplying it)",
        _ => null,
    };

    /// <summary>
    /// Whether PyTorch's chainable step of this schedule multiplies the current rate by a factor of its own epoch alone,
    /// at construction as at every step (ConstantLR, LinearLR, StepLR, MultiStepLR, ExponentialLR, MultiplicativeLR,
    /// PolynomialLR, and chains of them), so that chaining a warmup with it yields the product of the two.
    /// CosineAnnealingLR is not: past T_max its step adds a multiple of the base LR.
    /// </summary>
    public static bool MultipliesRate(Schedule s) => s switch
    {
        ConstantLR or LinearLR or StepLR or MultiStepLR or ExponentialLR or MultiplicativeLR or PolynomialLR => true,
        ChainedScheduler c => c.Schedulers.All(MultipliesRate),
        _ => false,
    };

    /// <summary>
    /// Linear warmup to the base LR over <paramref name="warmupSteps"/>, then cosine annealing to the absolute floor
    /// <paramref name="minLr"/> at <paramref name="totalSteps"/> (PyTorch: SequentialLR(LinearLR, CosineAnnealingLR)).
    /// </summary>
    public static Schedule WarmupCosine(int warmupSteps, int totalSteps, double minLr = 0.0, WarmupShape warmup = WarmupShape.Linear,
        double? warmupStart = null)
    {
        new ProblemList("warmup_cosine")
            .Check(warmupSteps >= 0, "warmup_steps", warmupSteps, "must be >= 0")
            .Check(totalSteps > warmupSteps, "total_steps", totalSteps, $"must exceed warmup_steps ({warmupSteps})")
            .Check(double.IsFinite(minLr) && minLr >= 0, "min_lr", minLr, "must be a finite number >= 0")
            .ThrowIfAny();
        return WithWarmup(new CosineAnnealingLR(totalSteps - warmupSteps, minLr), warmupSteps, warmup, warmupStart);
    }

    /// <summary>
    /// Warmup-stable-decay (trapezoidal): warm up over <paramref name="warmupSteps"/>, hold the base LR for
    /// <paramref name="stableSteps"/> (ConstantLR(1, 0)), then decay over <paramref name="decaySteps"/> to <paramref name="minFactor"/> × base
    /// (linear: LinearLR; cosine and 1-sqrt: LambdaLR with the library's cosine_decay / one_minus_sqrt functions).
    /// </summary>
    public static Schedule WarmupStableDecay(int warmupSteps, int stableSteps, int decaySteps, DecayShape decay = DecayShape.Linear,
        double minFactor = 0.0, WarmupShape warmup = WarmupShape.Linear, double? warmupStart = null)
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
            : new SequentialLR([new ConstantLR(1.0, 0), cooldown], [stableSteps]);
        return WithWarmup(afterWarmup, warmupSteps, warmup, warmupStart);
    }

    /// <summary>Inverse square root with linear warmup (Hugging Face's schedule; timescale = warmup).</summary>
    public static Schedule InverseSqrt(int warmupSteps)
    {
        new ProblemList("inverse_sqrt").Check(warmupSteps >= 1, "warmup_steps", warmupSteps, "must be >= 1").ThrowIfAny();
        return new LambdaLR(new LrLambda.InverseSqrt(warmupSteps));
    }
}
