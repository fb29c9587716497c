using static TorchSharp.torch.optim;

namespace Schedules.Torch;

/// <summary>
/// <see cref="IParamGroups"/> over a live TorchSharp optimizer: reads and writes each param group's learning rate
/// and momentum-like hyper-parameter in place, so the optimizer's next <c>step()</c> uses what the scheduler set.
/// </summary>
/// <remarks>
/// "Momentum" follows PyTorch's <c>cycle_momentum</c> convention: SGD's (and RMSprop's) <c>momentum</c>, or <c>beta1</c>
/// of optimizers with <c>betas</c> (Adam, AdamW, ...); writing it keeps <c>beta2</c>.
/// The groups are read from the optimizer on every call, so groups added later with <c>add_param_group</c> are seen.
/// The adapter does not own the optimizer and does not dispose it.
/// </remarks>
public sealed class TorchSharpParamGroups : IParamGroups
{
    readonly Optimizer _optimizer;

    public TorchSharpParamGroups(Optimizer optimizer)
    {
        _optimizer = optimizer ?? throw new ArgumentNullException(nameof(optimizer));
        if (Groups.Count == 0) throw new ArgumentException("the optimizer has no param groups", nameof(optimizer));
    }

    /// <summary>The optimizer these param groups belong to.</summary>
    public Optimizer Optimizer => _optimizer;

    // TorchSharp keeps its groups in a list; fall back to a copy should a future version hand out a lazy sequence.
    IReadOnlyList<ILearningRateController> Groups =>
        _optimizer.ParamGroups as IReadOnlyList<ILearningRateController> ?? _optimizer.ParamGroups.ToList();

    ILearningRateController Group(int group)
    {
        var groups = Groups;
        if ((uint)group >= (uint)groups.Count)
            throw new ArgumentOutOfRangeException(nameof(group), group, $"the optimizer has {groups.Count} param group(s)");
        return groups[group];
    }

    public int Count => Groups.Count;

    public double GetLr(int group) => Group(group).LearningRate;

    public void SetLr(int group, double lr) => Group(group).LearningRate = lr;

    /// <summary>True when every param group has <c>momentum</c> or <c>betas</c>.</summary>
    public bool HasMomentum => Groups.All(g => g is IMomentum or IBetas);

    public double GetMomentum(int group) => Group(group) switch
    {
        IMomentum m => m.Momentum,
        IBetas b => b.Betas.Item1,
        _ => throw NoMomentum(group),
    };

    public void SetMomentum(int group, double momentum)
    {
        switch (Group(group))
        {
            case IMomentum m: m.Momentum = momentum; break;
            case IBetas b: b.Betas = (momentum, b.Betas.Item2); break;
            default: throw NoMomentum(group);
        }
    }

    InvalidOperationException NoMomentum(int group) =>
        new($"param group {group} of {_optimizer.GetType().Name} has neither momentum nor betas");
}
