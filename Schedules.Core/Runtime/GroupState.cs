namespace Schedules.Core.Runtime;

/// <summary>
/// What PyTorch keeps in <c>optimizer.param_groups</c> while schedulers run: each group's current lr, its
/// <c>initial_lr</c> (set by the first scheduler constructed on it), and momentum when the optimizer has one.
/// Owned by one <see cref="ScheduleRun"/>; nothing outside it sees this mutable state.
/// </summary>
internal sealed class GroupState
{
    public readonly double[] Lr;
    public readonly double[] InitialLr;
    public readonly bool[] HasInitialLr;
    public readonly double[]? Momentum;
    // group["max_lr"], group["min_lr"], group["max_momentum"], group["base_momentum"]: written by OneCycleLR (and the
    // momenta by CyclicLR) at construction and read back by OneCycleLR at every step, so a later scheduler on the same
    // groups changes what an earlier OneCycleLR anneals between, exactly as in PyTorch.
    public readonly double[] MaxLr, MinLr, MaxMomentum, BaseMomentum;

    public GroupState(IReadOnlyList<double> lrs, IReadOnlyList<double>? momenta)
    {
        Lr = lrs.ToArray();
        InitialLr = new double[Lr.Length];
        HasInitialLr = new bool[Lr.Length];
        Momentum = momenta?.ToArray();
        MaxLr = new double[Lr.Length];
        MinLr = new double[Lr.Length];
        MaxMomentum = new double[Lr.Length];
        BaseMomentum = new double[Lr.Length];
    }

    public int Count => Lr.Length;
}
