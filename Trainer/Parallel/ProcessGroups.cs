namespace Trainer.Parallel;

/// <summary>
/// One rank's communicators for a <see cref="ParallelLayout"/>, split once from the world: DP, TP, PP and the
/// model-parallel group (TP × PP). Collective: every rank of the world calls <see cref="Create"/> together.
/// Every group's member order is its layout order, so group rank = the coordinate along that axis
/// (ModelParallel: tp + TP·pp).
/// </summary>
public sealed class ProcessGroups : IDisposable
{
    public ParallelLayout Layout { get; }
    public ICommunicator World { get; }
    public ICommunicator Dp { get; }
    public ICommunicator Tp { get; }
    public ICommunicator Pp { get; }
    public ICommunicator ModelParallel { get; }
    public int Rank => World.Rank;
    public (int Tp, int Dp, int Pp) Coord { get; }

    ProcessGroups(ParallelLayout layout, ICommunicator world, ICommunicator dp, ICommunicator tp, ICommunicator pp, ICommunicator mp)
    {
        (Layout, World, Dp, Tp, Pp, ModelParallel) = (layout, world, dp, tp, pp, mp);
        Coord = layout.Coord(world.Rank);
    }

    public static ProcessGroups Create(ICommunicator world, ParallelLayout layout)
    {
        if (world.Size != layout.World)
            throw new ArgumentException($"layout {layout} needs a world of {layout.World} ranks, the communicator has {world.Size}");
        var (tp, dp, pp) = layout.Coord(world.Rank);
        int T = layout.Tp, D = layout.Dp;
        // Every rank makes the same Split calls in the same order (they are collectives).
        var dpGroup = world.Split(color: tp + T * pp, key: dp);
        var tpGroup = world.Split(color: dp + D * pp, key: tp);
        var ppGroup = world.Split(color: tp + T * dp, key: pp);
        var mpGroup = world.Split(color: dp, key: world.Rank);
        var groups = new ProcessGroups(layout, world, dpGroup, tpGroup, ppGroup, mpGroup);
        groups.Check("DP", dpGroup, layout.DpGroup(world.Rank));
        groups.Check("TP", tpGroup, layout.TpGroup(world.Rank));
        groups.Check("PP", ppGroup, layout.PpGroup(world.Rank));
        groups.Check("model-parallel", mpGroup, layout.ModelParallelGroup(world.Rank));
        return groups;
    }

    /// <summary>A backend whose Split disagrees with the layout would silently mix shards: refuse it.</summary>
    void Check(string name, ICommunicator group, IReadOnlyList<int> expected)
    {
        var want = expected.Select(r => World.WorldRanks[r]).ToArray();   // layout ranks are ranks of World
        if (!group.WorldRanks.SequenceEqual(want))
            throw new InvalidOperationException($"{name} group of rank {Rank} is [{string.Join(",", group.WorldRanks)}], the layout {Layout} says [{string.Join(",", want)}]");
    }

    public void Dispose()
    {
        Dp.Dispose();
        Tp.Dispose();
        Pp.Dispose();
        ModelParallel.Dispose();
    }
}
