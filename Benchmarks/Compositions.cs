using Schedules.Core;
using TorchSharp;
using TS = TorchSharp.torch.optim.lr_scheduler;

namespace Benchmarks;

/// <summary>The compositions measured. pytorch_step_bench.py builds the same ones, in the same construction order.</summary>
public enum Composition
{
    /// <summary>StepLR(step_size=100000, gamma=0.5): a single leaf, for reference.</summary>
    Leaf,
    /// <summary>ChainedScheduler([StepLR(100000, 0.5), LinearLR(0.1, 1.0, 500)]): the trainer's acceptance case.</summary>
    A_Chained,
    /// <summary>ChainedScheduler([SequentialLR([LinearLR(0.01, 1.0, 500), CosineAnnealingLR(2e6, 1e-5)], [500]), ExponentialLR(0.9999999)]): three levels.</summary>
    B_ThreeLevel,
    /// <summary>SequentialLR([LinearLR(0.01, 1.0, 500), CosineAnnealingLR(2e6, 1e-5)], [500]): the LLM warmup-cosine recipe.</summary>
    C_WarmupCosine,
}

/// <summary>
/// The parameters are chosen so that no rate reaches a subnormal double by step 1.1e6 (subnormal arithmetic is slow
/// and would fake a non-O(1) cost), and so that both measurement windows (from step 1e3 and from step 1e6) lie past
/// the 500-step warmup.
/// </summary>
public static class Compositions
{
    public const double BaseLr = 0.1;

    public static string Describe(Composition c) => c switch
    {
        Composition.Leaf => "StepLR(100000, 0.5)",
        Composition.A_Chained => "Chained(StepLR, LinearLR)",
        Composition.B_ThreeLevel => "Chained(Seq(Linear, Cos), Exp)",
        Composition.C_WarmupCosine => "Seq(Linear, Cos)",
        _ => throw new ArgumentOutOfRangeException(nameof(c)),
    };

    /// <summary>The key pytorch_step_bench.py uses for the composition.</summary>
    public static string PyKey(Composition c) => c.ToString();

    static SequentialLR WarmupCosine() =>
        new([new LinearLR(0.01, 1.0, 500), new CosineAnnealingLR(2_000_000, 1e-5)], [500]);

    public static Schedule Ours(Composition c) => c switch
    {
        Composition.Leaf => new StepLR(100_000, 0.5),
        Composition.A_Chained => new ChainedScheduler(new StepLR(100_000, 0.5), new LinearLR(0.1, 1.0, 500)),
        Composition.B_ThreeLevel => new ChainedScheduler(WarmupCosine(), new ExponentialLR(0.9999999)),
        Composition.C_WarmupCosine => WarmupCosine(),
        _ => throw new ArgumentOutOfRangeException(nameof(c)),
    };

    static TS.LRScheduler TsWarmupCosine(torch.optim.Optimizer o)
    {
        // Children first, in the order PyTorch code constructs them.
        var warm = TS.LinearLR(o, 0.01, 1.0, 500);
        var cos = TS.CosineAnnealingLR(o, 2_000_000, 1e-5);
        return TS.SequentialLR(o, [warm, cos], [500]);
    }

    /// <summary>TorchSharp 0.107's own scheduler objects for the composition, on <paramref name="o"/>.</summary>
    public static TS.LRScheduler TorchSharp(Composition c, torch.optim.Optimizer o)
    {
        switch (c)
        {
            case Composition.Leaf:
                return TS.StepLR(o, 100_000, 0.5);
            case Composition.A_Chained:
            {
                var step = TS.StepLR(o, 100_000, 0.5);
                var lin = TS.LinearLR(o, 0.1, 1.0, 500);
                return TS.ChainedLR([step, lin]);
            }
            case Composition.B_ThreeLevel:
            {
                var seq = TsWarmupCosine(o);
                var exp = TS.ExponentialLR(o, 0.9999999);
                return TS.ChainedLR([seq, exp]);
            }
            case Composition.C_WarmupCosine:
                return TsWarmupCosine(o);
            default:
                throw new ArgumentOutOfRangeException(nameof(c));
        }
    }
}
