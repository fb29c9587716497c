using Schedules.Torch;

namespace Trainer.Training;

/// <summary>
/// The param groups of every replica's optimizer seen as one: reads come from rank 0, writes go to all ranks,
/// so one scheduler drives the LR (and momentum/beta1) of every replica identically.
/// </summary>
public sealed class ReplicatedParamGroups : IParamGroups
{
    readonly IReadOnlyList<IParamGroups> _ranks;
    public ReplicatedParamGroups(IReadOnlyList<IParamGroups> ranks) { _ranks = ranks; }
    public int Count => _ranks[0].Count;
    public double GetLr(int group) => _ranks[0].GetLr(group);
    public void SetLr(int group, double lr) { foreach (var r in _ranks) r.SetLr(group, lr); }
    public bool HasMomentum => _ranks[0].HasMomentum;
    public double GetMomentum(int group) => _ranks[0].GetMomentum(group);
    public void SetMomentum(int group, double m) { foreach (var r in _ranks) r.SetMomentum(group, m); }
}
