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

    public GroupState(IReadOnlyList<double> lrs, IReadOnlyList<double>? momenta)
    {
        Lr = lrs.ToArray();
        InitialLr = new double[Lr.Length];
        HasInitialLr = new bool[Lr.Length];
        Momentum = momenta?.ToArray();
    }

    public int Count => Lr.Length;
}
