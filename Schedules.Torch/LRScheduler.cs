using Schedules.Core;

namespace Schedules.Torch;

/// <summary>Which hyper-parameter of the param groups a scheduler drives.</summary>
public enum HyperParameter { LearningRate, Momentum }

/// <summary>A PyTorch-style stateful scheduler (names as in torch.optim.lr_scheduler).</summary>
public interface ILRScheduler
{
    Schedule Schedule { get; }
    /// <summary>scheduler.step(): call after optimizer.step().</summary>
    void Step();
    /// <summary>scheduler.step(metric): ReduceLROnPlateau only.</summary>
    void Step(double metric);
    /// <summary>The rates this scheduler last set, one per param group.</summary>
    IReadOnlyList<double> GetLastLr();
    /// <summary>Number of Step() calls since construction.</summary>
    int LastEpoch { get; }
    /// <summary>The groups' rates when the scheduler was constructed (PyTorch's initial_lr / base_lrs).</summary>
    IReadOnlyList<double> BaseLrs { get; }
    SchedulerState StateDict();
    void LoadStateDict(SchedulerState state);
}

/// <summary>Creates schedulers over param groups.</summary>
public static class LRSchedulers
{
    public static ILRScheduler Create(Schedule schedule, IParamGroups groups, HyperParameter target = HyperParameter.LearningRate) =>
        new LRScheduler(schedule, groups, target);
}

/// <summary>
/// Wraps a <see cref="ScheduleRun"/> as PyTorch's scheduler object: construction applies the schedule's initial step to
/// the groups, Step() advances it and hands each group its new rate through <see cref="IParamGroups.SetLr"/> (and momentum
/// where the schedule cycles it). The state is (last epoch, base rates) plus ReduceLROnPlateau's counters.
/// </summary>
public sealed class LRScheduler : ILRScheduler
{
    readonly IParamGroups _groups;
    readonly HyperParameter _target;
    ScheduleRun _run;
    double[]? _baseMomenta;

    public Schedule Schedule { get; }

    public LRScheduler(Schedule schedule, IParamGroups groups, HyperParameter target = HyperParameter.LearningRate)
    {
        if (target == HyperParameter.Momentum && !groups.HasMomentum)
            throw new ArgumentException("these param groups have no momentum to schedule", nameof(target));
        if (target == HyperParameter.Momentum && schedule.CyclesMomentum)
            throw new ArgumentException("a momentum schedule cannot itself cycle momentum", nameof(schedule));
        Schedule = schedule;
        _groups = groups;
        _target = target;
        _baseMomenta = ReadMomenta();
        _run = Start(Read(), _baseMomenta);
        Push();
    }

    double[] Read() => Enumerable.Range(0, _groups.Count).Select(i => _target == HyperParameter.Momentum ? _groups.GetMomentum(i) : _groups.GetLr(i)).ToArray();

    double[]? ReadMomenta() =>
        _target == HyperParameter.LearningRate && _groups.HasMomentum && Schedule.CyclesMomentum
            ? Enumerable.Range(0, _groups.Count).Select(_groups.GetMomentum).ToArray()
            : null;

    ScheduleRun Start(IReadOnlyList<double> bases, IReadOnlyList<double>? momenta) => Schedule.Start(bases, momenta);

    void Push()
    {
        var lrs = _run.Lrs;
        for (int i = 0; i < lrs.Count; i++)
        {
            if (_target == HyperParameter.Momentum) _groups.SetMomentum(i, lrs[i]);
            else _groups.SetLr(i, lrs[i]);
        }
        if (_run.Momenta is { } m)
            for (int i = 0; i < m.Count; i++) _groups.SetMomentum(i, m[i]);
    }

    public void Step()
    {
        _run.Step();
        Push();
    }

    public void Step(double metric)
    {
        _run.Step(metric);
        Push();
    }

    public IReadOnlyList<double> GetLastLr() => _run.LastLr;
    public int LastEpoch => _run.Steps;
    public IReadOnlyList<double> BaseLrs => _run.InitialLrs;

    public SchedulerState StateDict() => new(
        Schedule: Schedule.ToJson(),
        Target: _target,
        LastEpoch: _run.Steps,
        BaseLrs: _run.InitialLrs.ToArray(),
        BaseMomenta: _baseMomenta?.ToArray(),
        Plateau: _run.Plateau is { } c ? new PlateauState(c, _run.Lrs.ToArray()) : null);

    public void LoadStateDict(SchedulerState state)
    {
        var mine = Schedule.ToJson();
        if (state.Schedule != mine)
            throw new SchedulerStateException($"the saved state belongs to a different schedule:\n  saved: {state.Schedule}\n  this:  {mine}");
        if (state.Target != _target)
            throw new SchedulerStateException($"the saved state drives {state.Target}, this scheduler drives {_target}");
        if (state.BaseLrs.Count != _groups.Count)
            throw new SchedulerStateException($"the saved state has {state.BaseLrs.Count} param groups, the optimizer has {_groups.Count}");
        if (Schedule.CyclesMomentum && state.BaseMomenta is null && _target == HyperParameter.LearningRate)
            throw new SchedulerStateException("the saved state lacks the base momenta this schedule cycles");
        if (state.LastEpoch < 0) throw new SchedulerStateException($"last_epoch {state.LastEpoch} is negative");
        if (Schedule.IsMetricDriven != (state.Plateau is not null))
            throw new SchedulerStateException("the saved state's plateau counters do not match the schedule");

        var run = Start(state.BaseLrs, Schedule.CyclesMomentum ? state.BaseMomenta : null);
        if (state.Plateau is { } p) run.RestorePlateau(p.Counters, p.Lrs);
        else run.Advance(state.LastEpoch); // deterministic: bit-identical to the run that never stopped
        _run = run;
        _baseMomenta = Schedule.CyclesMomentum ? state.BaseMomenta?.ToArray() : null;
        Push();
    }
}
