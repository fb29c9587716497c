using Expecto;
using Schedules.Core;
using Schedules.Torch;
using Tests.Harness;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Tests.Native;

/// <summary>
/// Real TorchSharp optimizers driven through <see cref="TorchSharpParamGroups"/>: what the adapter sets is what the
/// next step uses. Gradients are powers of two so that lr * grad is exact and SGD's results can be compared exactly.
/// </summary>
public static class TorchSharpParamGroupsTests
{
    static Parameter Param(params double[] values) => new(tensor(values, dtype: float64));

    /// <summary>Sets p.grad to exactly <paramref name="grad"/> through autograd: d/dp sum(p * grad) = grad.</summary>
    static void Backward(Parameter p, params double[] grad)
    {
        using var scope = NewDisposeScope();
        (p * tensor(grad, dtype: float64)).sum().backward();
    }

    static double[] Values(Tensor t) => t.data<double>().ToArray();

    static void Exactly(double[] expected, Tensor actual, string what)
    {
        var values = Values(actual);
        if (!expected.SequenceEqual(values))
            throw new Exception($"{what}: expected [{string.Join(", ", expected)}], got [{string.Join(", ", values)}]");
    }

    static void Close(double[] expected, Tensor actual, double tolerance, string what)
    {
        var values = Values(actual);
        if (values.Length != expected.Length || values.Zip(expected).Any(v => Math.Abs(v.Item1 - v.Item2) > tolerance))
            throw new Exception($"{what}: expected [{string.Join(", ", expected)}] within {tolerance}, got [{string.Join(", ", values)}]");
    }

    static void Equal<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual)) throw new Exception($"{what}: expected {expected}, got {actual}");
    }

    static void Throws<E>(Action action, string what) where E : Exception
    {
        try { action(); }
        catch (E) { return; }
        throw new Exception($"{what}: expected {typeof(E).Name}");
    }

    static readonly double[] P0 = [1.0, -2.0, 0.5, 3.0];
    static readonly double[] G = [1.0, 2.0, -4.0, 0.5];
    static readonly double[] G2 = [-0.5, 0.25, 8.0, -1.0];

    /// <summary>p0 - lr * g element-wise, in double like the float64 tensors.</summary>
    static double[] SgdStep(double[] p0, double lr, double[] g) => p0.Zip(g, (p, d) => p - lr * d).ToArray();

    /// <summary>The first Adam(W) step by hand: m̂ = g, v̂ = g², so the update is lr * g / (|g| + eps).</summary>
    static double[] FirstAdamStep(double[] p0, double lr, double[] g, double weightDecay = 0, double eps = 1e-8) =>
        p0.Zip(g, (p, d) => p * (1 - lr * weightDecay) - lr * d / (Math.Abs(d) + eps)).ToArray();

    static Test Case(string name, Action<DisposeScope> body) =>
        Spec.Case(name, () => { using var scope = NewDisposeScope(); body(scope); });

    [Tests]
    public static Test All => Spec.Sequenced(Spec.List("TorchSharpParamGroups",
        Case("SGD: SetLr(0, 0.05) then step() gives p0 - 0.05 * grad exactly", _ =>
        {
            var p = Param(P0);
            using var sgd = optim.SGD([p], learningRate: 0.1);
            var groups = new TorchSharpParamGroups(sgd);
            Equal(1, groups.Count, "Count");
            Equal(0.1, groups.GetLr(0), "GetLr before");
            groups.SetLr(0, 0.05);
            Equal(0.05, groups.GetLr(0), "GetLr after");
            Equal(0.05, sgd.ParamGroups.Single().LearningRate, "the optimizer's own param group");
            Backward(p, G);
            sgd.step();
            Exactly(SgdStep(P0, 0.05, G), p, "p after one step");
        }),
        Case("SGD: each param group steps with its own LR, and only the group set changes", _ =>
        {
            var a = Param(P0);
            var b = Param(P0);
            using var sgd = optim.SGD([new SGD.ParamGroup([a], lr: 0.1), new SGD.ParamGroup([b], lr: 0.2)], learningRate: 0.5);
            var groups = new TorchSharpParamGroups(sgd);
            Equal(2, groups.Count, "Count");
            Equal(0.1, groups.GetLr(0), "GetLr(0)");
            Equal(0.2, groups.GetLr(1), "GetLr(1)");
            groups.SetLr(1, 0.25);
            Equal(0.1, groups.GetLr(0), "GetLr(0) after SetLr(1, ...)");
            Backward(a, G);
            Backward(b, G);
            sgd.step();
            Exactly(SgdStep(P0, 0.1, G), a, "group 0");
            Exactly(SgdStep(P0, 0.25, G), b, "group 1");
            groups.SetLr(0, 0.5);
            sgd.zero_grad();
            Backward(a, G2);
            Backward(b, G2);
            sgd.step();
            Exactly(SgdStep(SgdStep(P0, 0.1, G), 0.5, G2), a, "group 0, second step");
            Exactly(SgdStep(SgdStep(P0, 0.25, G), 0.25, G2), b, "group 1, second step");
        }),
        Case("SGD: groups added after the adapter was made are seen; a bad group index throws", _ =>
        {
            using var sgd = optim.SGD([Param(P0)], learningRate: 0.1);
            var groups = new TorchSharpParamGroups(sgd);
            sgd.add_param_group(new SGD.ParamGroup([Param(P0)], lr: 0.3));
            Equal(2, groups.Count, "Count");
            Equal(0.3, groups.GetLr(1), "GetLr(1)");
            Throws<ArgumentOutOfRangeException>(() => groups.GetLr(2), "GetLr(2)");
            Throws<ArgumentOutOfRangeException>(() => groups.SetLr(-1, 0.1), "SetLr(-1)");
        }),
        Case("SGD: momentum round-trips and the step uses it", _ =>
        {
            var p = Param(P0);
            using var sgd = optim.SGD([p], learningRate: 0.5, momentum: 0.0);
            var groups = new TorchSharpParamGroups(sgd);
            Equal(true, groups.HasMomentum, "HasMomentum");
            Equal(0.0, groups.GetMomentum(0), "GetMomentum before");
            groups.SetMomentum(0, 0.75);
            Equal(0.75, groups.GetMomentum(0), "GetMomentum after");
            // Step 1: buf = g; step 2: buf = 0.75 g + g2. Without momentum step 2 would move by lr * g2 alone.
            Backward(p, G);
            sgd.step();
            sgd.zero_grad();
            Backward(p, G);
            sgd.step();
            var buf = G.Select(g => 0.75 * g + g).ToArray();
            Exactly(SgdStep(SgdStep(P0, 0.5, G), 0.5, buf), p, "p after two steps");
        }),
        Case("Adam: LR and beta1 round-trip (beta2 kept), and the steps match an Adam built with them", _ =>
        {
            var p = Param(P0);
            using var adam = optim.Adam([p], lr: 0.1, beta1: 0.9, beta2: 0.999);
            var groups = new TorchSharpParamGroups(adam);
            Equal(true, groups.HasMomentum, "HasMomentum");
            Equal(0.9, groups.GetMomentum(0), "beta1 before");
            groups.SetLr(0, 0.01);
            groups.SetMomentum(0, 0.8);
            Equal(0.01, groups.GetLr(0), "GetLr");
            Equal(0.8, groups.GetMomentum(0), "beta1 after");
            Equal((0.8, 0.999), ((optim.IBetas)adam.ParamGroups.Single()).Betas, "betas of the optimizer's group");
            StepsMatchTwin(p, adam, q => optim.Adam([q], lr: 0.01, beta1: 0.8, beta2: 0.999), q => optim.Adam([q], lr: 0.01, beta1: 0.9, beta2: 0.999));
        }),
        Case("Adam: the first step after SetLr moves by the new LR (by hand)", _ =>
        {
            var p = Param(P0);
            using var adam = optim.Adam([p], lr: 0.1);
            new TorchSharpParamGroups(adam).SetLr(0, 0.003);
            Backward(p, G);
            adam.step();
            Close(FirstAdamStep(P0, 0.003, G), p, 1e-12, "p after one step");
        }),
        Case("AdamW: LR and beta1 round-trip, and the steps (decay included) use them", _ =>
        {
            var p = Param(P0);
            using var adamw = optim.AdamW([p], lr: 0.1, beta1: 0.9, beta2: 0.999, weight_decay: 0.1);
            var groups = new TorchSharpParamGroups(adamw);
            groups.SetLr(0, 0.02);
            groups.SetMomentum(0, 0.7);
            Equal(0.02, groups.GetLr(0), "GetLr");
            Equal(0.7, groups.GetMomentum(0), "beta1");
            StepsMatchTwin(p, adamw,
                q => optim.AdamW([q], lr: 0.02, beta1: 0.7, beta2: 0.999, weight_decay: 0.1),
                q => optim.AdamW([q], lr: 0.02, beta1: 0.9, beta2: 0.999, weight_decay: 0.1));
        }),
        Case("AdamW: the first step after SetLr decays and moves by the new LR (by hand)", _ =>
        {
            var p = Param(P0);
            using var adamw = optim.AdamW([p], lr: 0.1, weight_decay: 0.1);
            new TorchSharpParamGroups(adamw).SetLr(0, 0.004);
            Backward(p, G);
            adamw.step();
            Close(FirstAdamStep(P0, 0.004, G, weightDecay: 0.1), p, 1e-12, "p after one step");
        }),
        Case("LRScheduler(OneCycleLR, cycle_momentum) drives a two-group SGD exactly as the in-memory groups say", _ =>
        {
            var schedule = new OneCycleLR(PerGroup<double>.List([0.1, 0.2]), totalSteps: 12);
            SGD Sgd(Parameter a, Parameter b) => optim.SGD(
                [new SGD.ParamGroup([a], lr: 0.01, momentum: 0.9), new SGD.ParamGroup([b], lr: 0.02, momentum: 0.9)], learningRate: 0.01);
            Parameter a1 = Param(P0), b1 = Param(P0), a2 = Param(P0), b2 = Param(P0);
            using var driven = Sgd(a1, b1);
            using var twin = Sgd(a2, b2);
            var scheduler = LRSchedulers.Create(schedule, new TorchSharpParamGroups(driven));
            var memory = new InMemoryParamGroups([0.01, 0.02], momentum: 0.9);
            var reference = LRSchedulers.Create(schedule, memory);
            var seen = new HashSet<double>();
            for (int step = 0; step < 12; step++)
            {
                var groups = driven.ParamGroups.ToList();
                var twinGroups = twin.ParamGroups.ToList();
                for (int i = 0; i < 2; i++)
                {
                    Equal(memory.Lrs[i], groups[i].LearningRate, $"step {step}, group {i}: LR");
                    Equal(memory.Momenta![i], ((optim.IMomentum)groups[i]).Momentum, $"step {step}, group {i}: momentum");
                    twinGroups[i].LearningRate = memory.Lrs[i];
                    ((optim.IMomentum)twinGroups[i]).Momentum = memory.Momenta[i];
                    seen.Add(memory.Lrs[i]);
                }
                var g = step % 2 == 0 ? G : G2;
                foreach (var (opt, ps) in new[] { (driven, new[] { a1, b1 }), (twin, new[] { a2, b2 }) })
                {
                    opt.zero_grad();
                    foreach (var p in ps) Backward(p, g);
                    opt.step();
                }
                scheduler.Step();
                reference.Step();
            }
            if (seen.Count < 12) throw new Exception($"the schedule should vary the LR; saw {seen.Count} distinct values");
            Exactly(Values(a2), a1, "group 0 after 12 steps");
            Exactly(Values(b2), b1, "group 1 after 12 steps");
        }),
        Case("an optimizer without momentum or betas says so", _ =>
        {
            using var adagrad = optim.Adagrad([Param(P0)], lr: 0.1);
            var groups = new TorchSharpParamGroups(adagrad);
            Equal(false, groups.HasMomentum, "HasMomentum");
            Throws<InvalidOperationException>(() => groups.GetMomentum(0), "GetMomentum");
            Throws<InvalidOperationException>(() => groups.SetMomentum(0, 0.9), "SetMomentum");
            groups.SetLr(0, 0.2);
            Equal(0.2, groups.GetLr(0), "GetLr");
        })));

    /// <summary>
    /// Two steps of <paramref name="driven"/> (set through the adapter) equal two steps of an optimizer built with those
    /// hyper-parameters, and differ from one built with the old beta1 (so the beta1 change did reach the step).
    /// </summary>
    static void StepsMatchTwin(Parameter p, optim.Optimizer driven, Func<Parameter, optim.Optimizer> twin, Func<Parameter, optim.Optimizer> oldBeta)
    {
        var q = Param(P0);
        var r = Param(P0);
        using var reference = twin(q);
        using var stale = oldBeta(r);
        foreach (var g in new[] { G, G2 })
            foreach (var (param, opt) in new[] { (p, driven), (q, reference), (r, stale) })
            {
                opt.zero_grad();
                Backward(param, g);
                opt.step();
            }
        Exactly(Values(q), p, "driven vs. built with the new hyper-parameters");
        if (Values(r).SequenceEqual(Values(p))) throw new Exception("the beta1 change made no difference to the second step");
    }
}
