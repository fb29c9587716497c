using Schedules.Torch;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using TS = TorchSharp.torch.optim.lr_scheduler;

namespace Benchmarks;

/// <summary>A real TorchSharp SGD optimizer over one parameter (one param group), as the trainer has.</summary>
public sealed class TorchSgd : IDisposable
{
    public Parameter Param { get; }
    public optim.Optimizer Optimizer { get; }

    public TorchSgd(double lr)
    {
        Param = new Parameter(zeros(16, dtype: float32));
        Optimizer = optim.SGD([Param], learningRate: lr);
    }

    public double Lr => Optimizer.ParamGroups.First().LearningRate;

    public void Dispose()
    {
        Optimizer.Dispose();
        Param.Dispose();
    }
}

/// <summary>Our scheduler over <see cref="InMemoryParamGroups"/>: the library's own cost.</summary>
public sealed class OursInMemoryRig
{
    public readonly InMemoryParamGroups Groups = new([Compositions.BaseLr]);
    public readonly LRScheduler Scheduler;
    public OursInMemoryRig(Composition c) => Scheduler = new LRScheduler(Compositions.Ours(c), Groups);
    public int Steps => Scheduler.LastEpoch;
    public double Lr => Groups.Lrs[0];
}

/// <summary>Our scheduler over a live TorchSharp SGD through <see cref="TorchSharpParamGroups"/>.</summary>
public sealed class OursTorchRig : IDisposable
{
    public readonly TorchSgd Sgd = new(Compositions.BaseLr);
    public readonly LRScheduler Scheduler;
    public OursTorchRig(Composition c) => Scheduler = new LRScheduler(Compositions.Ours(c), new TorchSharpParamGroups(Sgd.Optimizer));
    public int Steps => Scheduler.LastEpoch;
    public double Lr => Sgd.Lr;
    public void Dispose() => Sgd.Dispose();
}

/// <summary>TorchSharp 0.107's own schedulers on a live SGD.</summary>
public sealed class TorchSharpRig : IDisposable
{
    public readonly TorchSgd Sgd = new(Compositions.BaseLr);
    public readonly TS.LRScheduler Scheduler;
    public int Steps;
    public TorchSharpRig(Composition c) => Scheduler = Compositions.TorchSharp(c, Sgd.Optimizer);
    public void Step() { Scheduler.step(); Steps++; }
    public double Lr => Sgd.Lr;
    public void Dispose() => Sgd.Dispose();
}
