using Expecto;
using Schedules.Core;
using Tests.Harness;

namespace Tests.Core;

public static class RecipeTests
{
    static double[] Lrs(Schedule s, double lr, int steps) => s.Trace([lr], steps).Select(r => r[0]).ToArray();

    [Tests]
    public static Test All => Spec.List("core.recipes",
        Spec.Case("warmup-cosine: ramps to the base LR, then anneals to the floor", () =>
        {
            var t = Lrs(Recipes.WarmupCosine(10, 110, minLr: 1e-5), 6e-4, 110);
            for (int k = 0; k < 10; k++) Must.Close(t[k], 6e-4 * (k + 1) / 11, 1e-12, $"warmup step {k} = base (k+1)/(W+1)");
            for (int i = 1; i <= 10; i++) Must.True(t[i] > t[i - 1], $"rising at {i}");
            Must.Close(t[10], 6e-4, 1e-12, "peak at the milestone");
            for (int i = 11; i <= 110; i++) Must.True(t[i] < t[i - 1], $"falling at {i}");
            Must.Close(t[110], 1e-5, 1e-9, "floor at total_steps");
            Must.Close(t[60], 1e-5 + (6e-4 - 1e-5) / 2, 1e-9, "half-way point");
        }),
        Spec.Case("warmup-stable-decay: holds the base LR, then decays to min_factor", () =>
        {
            foreach (var shape in new[] { DecayShape.Linear, DecayShape.Cosine, DecayShape.OneMinusSqrt })
            {
                var t = Lrs(Recipes.WarmupStableDecay(5, 20, 10, shape, minFactor: 0.1), 1.0, 40);
                for (int i = 5; i < 25; i++) Must.Close(t[i], 1.0, 1e-12, $"{shape}: stable at {i}");
                Must.Close(t[35], 0.1, 1e-12, $"{shape}: end of decay");
                Must.Close(t[40], 0.1, 1e-12, $"{shape}: stays at the floor");
            }
            var sqrt = Lrs(Recipes.WarmupStableDecay(0, 0, 100, DecayShape.OneMinusSqrt), 1.0, 100);
            Must.Close(sqrt[25], 0.5, 1e-12, "1-sqrt at a quarter of the decay is 1 - sqrt(1/4)");
        }),
        Spec.Case("inverse-sqrt: linear warmup, then 1/sqrt(step/warmup)", () =>
        {
            var t = Lrs(Recipes.InverseSqrt(4), 1.0, 16);
            Must.Close(t[2], 0.5, 1e-15, "warmup");
            Must.Close(t[4], 1.0, 1e-15, "peak");
            Must.Close(t[16], 0.5, 1e-15, "1/sqrt(4)");
        }),
        Spec.Case("warmup into composites runs where PyTorch would refuse a nested switch", () =>
        {
            var chain = new ChainedScheduler(new StepLR(10, 0.5), new ExponentialLR(0.99));
            var seq = new SequentialLR([new ConstantLR(0.5, 5), new CosineAnnealingLR(50)], [10]);
            foreach (var s in new[] { Recipes.WithWarmup(chain, 8), Recipes.WithWarmup(seq, 8) })
            {
                var t = Lrs(s, 0.1, 120);
                Must.True(t.All(double.IsFinite), "finite");
                Must.True(t[0] < t[7], "warms up");
                Must.Equal(ScheduleJson.Parse(s.ToJson()).ToJson(), s.ToJson(), "round trip");
            }
        }),
        Spec.Case("warmup before a chain multiplies it; before a SequentialLR delays it; what PyTorch cannot run is refused", () =>
        {
            var chain = new ChainedScheduler(new StepLR(10, 0.5), new ExponentialLR(0.99));
            var warmChain = Lrs(Recipes.WithWarmup(chain, 8), 0.1, 40);
            var plain = Lrs(chain, 0.1, 40);
            for (int k = 0; k <= 40; k++)
                Must.Close(warmChain[k], plain[k] * Math.Min(1.0, (k + 1) / 9.0), 1e-12, $"chain x warmup factor at {k}");
            var seq = new SequentialLR([new ConstantLR(0.5, 5), new CosineAnnealingLR(50)], [10]);
            var warmSeq = Lrs(Recipes.WithWarmup(seq, 8), 0.1, 60);
            var seqAlone = Lrs(seq, 0.1, 52);
            for (int k = 8; k <= 60; k++) Must.Close(warmSeq[k], seqAlone[k - 8], 1e-12, $"SequentialLR delayed by the warmup at {k}");
            foreach (var (s, why) in new (Schedule, string)[]
            {
                (new ChainedScheduler(new StepLR(10, 0.5), new LambdaLR(new LrLambda.Const(0.5))), "LambdaLR"),
                (new ChainedScheduler(new StepLR(10, 0.5), new CosineAnnealingLR(10)), "CosineAnnealingLR"),
                (new SequentialLR([chain, new StepLR(3)], [5]), "starts with a ChainedScheduler"),
                (new ReduceLROnPlateau(), "ReduceLROnPlateau"),
            })
            {
                Must.True(Recipes.WarmupRefusal(s) is { } r && r.Contains(why), $"{s.TypeName}: refusal names {why}");
                Must.Throws<InvalidScheduleException>(() => Recipes.WithWarmup(s, 4), $"{s.TypeName} refused");
            }
            Must.True(Recipes.WarmupRefusal(chain, WarmupShape.Cosine) is not null, "a chain takes only a linear warmup");
        })
    );
}
