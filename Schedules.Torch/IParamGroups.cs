namespace Schedules.Torch;

/// <summary>
/// The only way a scheduler touches an optimizer: read and write the hyper-parameters of param group i.
/// A TorchSharp optimizer is one implementation (<see cref="TorchSharpParamGroups"/>); <see cref="InMemoryParamGroups"/> serves tests and tools.
/// </summary>
public interface IParamGroups
{
    /// <summary>Number of param groups.</summary>
    int Count { get; }
    double GetLr(int group);
    void SetLr(int group, double lr);
    /// <summary>Whether the optimizer has a momentum-like hyper-parameter (SGD momentum, Adam/AdamW beta1).</summary>
    bool HasMomentum { get; }
    double GetMomentum(int group);
    void SetMomentum(int group, double momentum);
}

/// <summary>Plain in-memory param groups (no tensors): what the golden replay and the previews drive.</summary>
public sealed class InMemoryParamGroups : IParamGroups
{
    readonly double[] _lr;
    readonly double[]? _momentum;

    public InMemoryParamGroups(IReadOnlyList<double> lrs, double? momentum = null)
    {
        if (lrs.Count == 0) throw new ArgumentException("at least one param group is needed", nameof(lrs));
        _lr = lrs.ToArray();
        _momentum = momentum is { } m ? Enumerable.Repeat(m, lrs.Count).ToArray() : null;
    }

    public int Count => _lr.Length;
    public double GetLr(int group) => _lr[group];
    public void SetLr(int group, double lr) => _lr[group] = lr;
    public bool HasMomentum => _momentum is not null;
    public double GetMomentum(int group) => _momentum is { } m ? m[group] : throw new InvalidOperationException("these param groups have no momentum");
    public void SetMomentum(int group, double momentum)
    {
        if (_momentum is null) throw new InvalidOperationException("these param groups have no momentum");
        _momentum[group] = momentum;
    }
    public IReadOnlyList<double> Lrs => _lr;
    public IReadOnlyList<double>? Momenta => _momentum;
}
