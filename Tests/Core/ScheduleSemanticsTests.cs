using Expecto;
using Schedules.Core;
using Tests.Harness;

namespace Tests.Core;

/// <summary>Worked examples of PyTorch's semantics, derived by hand from torch.optim.lr_scheduler's definitions.</summary>
public static class ScheduleSemanticsTests
{
    static double[] Lrs(Schedule s, double lr, int steps) => s.Trace([lr], steps).Select(r => r[0]).ToArray();

    [Tests]
    public static Test All => Spec.List("core.semantics",
        Spec.Case("ConstantLR holds factor x lr until total_iters", () =>
        {
            var t = Lrs(new ConstantLR(0.5, 40), 0.05, 45);
            for (int e = 0; e < 40; e++) Must.Close(t[e], 0.025, 1e-15, $"epoch {e}");
            for (int e = 40; e <= 45; e++) Must.Close(t[e], 0.05, 1e-15, $"epoch {e}");
        }),
        Spec.Case("SequentialLR switches to the next child's closed form at the milestone", () =>
        {
            var s = new SequentialLR([new ConstantLR(0.1, 20), new ExponentialLR(0.9)], [20]);
            var t = Lrs(s, 0.05, 22);
            Must.Close(t[0], 0.005, 1e-14, "epoch 0");
            Must.Close(t[19], 0.005, 1e-14, "epoch 19");
            Must.Close(t[20], 0.05, 1e-14, "epoch 20 (ExponentialLR at its epoch 0)");
            Must.Close(t[21], 0.045, 1e-14, "epoch 21");
            Must.Close(t[22], 0.0405, 1e-14, "epoch 22");
        }),
        Spec.Case("ChainedScheduler composes the children's chainable steps", () =>
        {
            var s = new ChainedScheduler(new ConstantLR(0.1, 20), new ExponentialLR(0.9));
            var t = Lrs(s, 0.05, 21);
            for (int e = 0; e < 20; e++) Must.Close(t[e], 0.05 * 0.1 * Math.Pow(0.9, e), 1e-12, $"epoch {e}");
            Must.Close(t[20], 0.05 * Math.Pow(0.9, 20), 1e-12, "epoch 20: ConstantLR restores x10");
        }),
        Spec.Case("a chain with CosineAnnealingLR is not the product of closed forms (cosine_chain_exp)", () =>
        {
            var cos = new CosineAnnealingLR(100, 0.01);
            var exp = new ExponentialLR(0.99);
            var t = Lrs(new ChainedScheduler(cos, exp), 0.1, 500);
            double worst = 0;
            for (int e = 0; e <= 500; e++)
            {
                double product = cos.ClosedForm(e, 0.1)!.Value / 0.1 * exp.ClosedForm(e, 0.1)!.Value;
                worst = Math.Max(worst, Math.Max(t[e] / product, product / t[e]));
            }
            Must.True(worst > 100, $"the chain should differ from the product of closed forms by over 100x somewhere, max ratio {worst}");
        }),
        Spec.Case("every leaf's run equals its closed form up to rounding", () =>
        {
            LeafSchedule[] leaves =
            [
                new StepLR(7, 0.5), new MultiStepLR([3, 9, 9, 20], 0.3), new ConstantLR(0.25, 11), new LinearLR(0.1, 0.9, 13),
                new ExponentialLR(0.97), new PolynomialLR(17, 1.7), new CosineAnnealingLR(19, 0.001),
                new CosineAnnealingWarmRestarts(5, 2, 0.0005), new LambdaLR(new LrLambda.WarmupCosine(5, 40, 0.5)),
            ];
            foreach (var leaf in leaves)
            {
                var t = Lrs(leaf, 0.3, 60);
                for (int e = 0; e <= 60; e++)
                    Must.Close(t[e], leaf.ClosedForm(e, 0.3)!.Value, 1e-12, $"{leaf.TypeName} epoch {e}");
            }
        }),
        Spec.Case("Lr(step, base) is the pure function behind a run", () =>
        {
            var s = new SequentialLR([new LinearLR(0.01, 1.0, 20), new CosineAnnealingLR(180, 1e-5)], [20]);
            var f = s.AsFunc();
            var trace = s.Trace([6e-4], 200);
            foreach (int step in new[] { 0, 1, 19, 20, 21, 100, 200 })
                Must.Close(f(step, 6e-4), trace[step][0], 1e-12, $"step {step} (closed form)");
            Must.Equal(f(57, 6e-4), f(57, 6e-4), "same inputs, same output");
        }),
        Spec.Case("CyclicLR and OneCycleLR cycle momentum inversely", () =>
        {
            var run = new OneCycleLR(0.1, totalSteps: 100).Start([0.1], [0.9]);
            Must.Close(run.Momenta![0], 0.95, 1e-15, "momentum at start is max_momentum");
            run.Advance(29); // peak at pct_start * total - 1
            Must.Close(run.Lrs[0], 0.1, 1e-12, "lr at the peak is max_lr");
            Must.Close(run.Momenta![0], 0.85, 1e-12, "momentum at the peak is base_momentum");
        }),
        Spec.Case("ReduceLROnPlateau cuts after patience bad epochs, then cools down", () =>
        {
            var run = new ReduceLROnPlateau(factor: 0.5, patience: 2, cooldown: 1).Start([0.1]);
            // patience 2: the 4th non-improving epoch cuts; the cooldown epoch resets the count
            double[] expected = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025];
            for (int i = 0; i < expected.Length; i++)
            {
                run.Step(1.0);
                Must.Close(run.Lrs[0], expected[i], 1e-15, $"step {i + 1}");
            }
        })
    );
}
