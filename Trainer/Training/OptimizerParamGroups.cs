using Schedules.Torch;
using TorchSharp.Modules;
using TorchSharp;
using static TorchSharp.torch.optim;

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

/// <summary>IParamGroups over one TorchSharp optimizer (SGD momentum, Adam/AdamW beta1 as momentum).</summary>
public sealed class OptimizerParamGroups : IParamGroups
{
    readonly torch.optim.ILearningRateController[] _groups;
    public OptimizerParamGroups(OptimizerHelper optimizer) { _groups = optimizer.ParamGroups.ToArray(); }
    public int Count => _groups.Length;
    public double GetLr(int group) => _groups[group].LearningRate;
    public void SetLr(int group, double lr) => _groups[group].LearningRate = lr;
    public bool HasMomentum => _groups.Length > 0 && (_groups[0] is ParamGroup<SGD.Options> or ParamGroup<Adam.Options> or ParamGroup<AdamW.Options>);
    public double GetMomentum(int group) => _groups[group] switch
    {
        ParamGroup<SGD.Options> s => s.Options.momentum ?? 0.0,
        ParamGroup<Adam.Options> a => a.Options.beta1 ?? 0.9,
        ParamGroup<AdamW.Options> a => a.Options.beta1 ?? 0.9,
        _ => throw new InvalidOperationException("this optimizer has no momentum"),
    };
    public void SetMomentum(int group, double m)
    {
        switch (_groups[group])
        {
            case ParamGroup<SGD.Options> s: s.Options.momentum = m; break;
            case ParamGroup<Adam.Options> a: a.Options.beta1 = m; break;
            case ParamGroup<AdamW.Options> a: a.Options.beta1 = m; break;
            default: throw new InvalidOperationException("this optimizer has no momentum");
        }
    }
}
