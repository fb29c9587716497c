using System.Globalization;
using Schedules.Torch;
using Trainer.Parallel;
using static TorchSharp.torch;

namespace Trainer.Training;

/// <summary>Ranks whose optimizers hold different learning rates (or momenta) after a scheduler step.</summary>
public sealed class LrMismatchException(string message) : Exception(message);

/// <summary>
/// The guard behind "one schedule, the same LR bits on every rank": every rank gathers every param group's LR (and
/// momentum / beta1 where the optimizer has one) as raw float64 bits over the world and compares them with world
/// rank 0's. The schedule is stepped once per process; this proves that what reached each optimizer agrees.
/// </summary>
public static class LrConsensus
{
    /// <summary>Collective over <paramref name="world"/>. Throws <see cref="LrMismatchException"/> naming the step,
    /// the ranks, the group and both values on any difference.</summary>
    public static void Check(ICommunicator world, IParamGroups groups, int step)
    {
        int n = groups.Count, width = groups.HasMomentum ? 2 * n : n;
        var mine = new double[width];
        for (int g = 0; g < n; g++)
        {
            mine[g] = groups.GetLr(g);
            if (groups.HasMomentum) mine[n + g] = groups.GetMomentum(g);
        }
        using var local = tensor(mine, ScalarType.Float64);
        using var all = zeros(world.Size * width, ScalarType.Float64);
        world.AllGather(all, local);
        var bits = all.data<double>().ToArray();
        for (int r = 1; r < world.Size; r++)
            for (int i = 0; i < width; i++)
            {
                double a = bits[i], b = bits[r * width + i];
                if (BitConverter.DoubleToInt64Bits(a) != BitConverter.DoubleToInt64Bits(b))
                    throw new LrMismatchException(string.Create(CultureInfo.InvariantCulture,
                        $"step {step}: rank {world.WorldRanks[r]} holds {(i < n ? "lr" : "momentum")} {b:R} in param group {i % n}, rank {world.WorldRanks[0]} holds {a:R} — the ranks' optimizers no longer follow one schedule"));
            }
    }
}
