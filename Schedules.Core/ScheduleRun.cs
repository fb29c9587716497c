using Schedules.Core.Runtime;

namespace Schedules.Core;

/// <summary>
/// An incremental evaluation of a <see cref="Schedule"/> on some param groups: what PyTorch's scheduler objects do, held
/// privately. <see cref="Step()"/> costs O(size of the schedule tree) and allocates nothing. Two runs of the same schedule
/// from the same initial rates agree bit for bit after the same number of steps, so a run at step k is fully described by
/// (k, initial rates) — plus, for ReduceLROnPlateau, its counters and current rates.
/// </summary>
public sealed class ScheduleRun
{
    readonly Node? _node;
    readonly PlateauNode? _plateau;
    readonly GroupState _groups;
    bool _faulted;

    public Schedule Schedule { get; }
    /// <summary>Number of step() calls since construction.</summary>
    public int Steps { get; private set; }
    /// <summary>Each group's current learning rate.</summary>
    public IReadOnlyList<double> Lrs => _groups.Lr;
    /// <summary>Each group's current momentum, when the run was started with momenta.</summary>
    public IReadOnlyList<double>? Momenta => _groups.Momentum;
    /// <summary>PyTorch's get_last_lr().</summary>
    public IReadOnlyList<double> LastLr => _plateau?.LastLr ?? _node!.LastLr;
    public IReadOnlyList<double> InitialLrs { get; }

    internal ScheduleRun(Schedule schedule, IReadOnlyList<double> initialLrs, IReadOnlyList<double>? momenta)
    {
        if (initialLrs.Count == 0) throw new ArgumentException("at least one param group is needed", nameof(initialLrs));
        var problems = new ProblemList();
        for (int i = 0; i < initialLrs.Count; i++)
            problems.Check(double.IsFinite(initialLrs[i]), $"lr[{i}]", initialLrs[i], "an initial learning rate must be finite");
        problems.AddRange(schedule.GroupProblems(initialLrs.Count, "$"));
        if (schedule.CyclesMomentum && momenta is null)
            problems.Add("cycle_momentum", true, "the optimizer has no momentum (or beta1) to cycle");
        if (momenta is not null && momenta.Count != initialLrs.Count)
            problems.Add("momenta", $"{momenta.Count} values", $"one momentum per param group ({initialLrs.Count}) is needed");
        problems.ThrowIfAny();

        Schedule = schedule;
        InitialLrs = initialLrs.ToArray();
        _groups = new GroupState(initialLrs, momenta);
        // Construction can already fail in PyTorch (e.g. a nested SequentialLR whose reset reaches a division by zero).
        try
        {
            if (schedule is ReduceLROnPlateau p) _plateau = new PlateauNode(p, _groups);
            else _node = schedule.Build(_groups);
        }
        catch (ScheduleStepException e)
        {
            throw new InvalidScheduleException([new ScheduleProblem("$", "type", schedule.TypeName, "PyTorch fails while constructing this configuration: " + e.Message)]);
        }
    }

    /// <summary>scheduler.step() for every schedule but ReduceLROnPlateau.</summary>
    public void Step()
    {
        if (_plateau is not null) throw new InvalidOperationException("ReduceLROnPlateau steps on a metric: call Step(metric)");
        EnsureNotFaulted();
        try { _node!.Step(); Steps++; }
        catch (ScheduleStepException e) { throw Fault(e); }
    }

    /// <summary>scheduler.step(metric) for ReduceLROnPlateau.</summary>
    public void Step(double metric)
    {
        if (_plateau is null) throw new InvalidOperationException($"{Schedule.TypeName} does not take a metric: call Step()");
        EnsureNotFaulted();
        try { _plateau.Step(metric); Steps++; }
        catch (ScheduleStepException e) { throw Fault(e); }
    }

    /// <summary>Steps <paramref name="steps"/> times (not for ReduceLROnPlateau).</summary>
    public void Advance(int steps)
    {
        for (int i = 0; i < steps; i++) Step();
    }

    // No closures on the step path: a step allocates nothing.
    void EnsureNotFaulted()
    {
        if (_faulted) throw new InvalidOperationException("this schedule run failed at an earlier step and cannot continue");
    }

    ScheduleStepException Fault(ScheduleStepException e)
    {
        _faulted = true;
        return new ScheduleStepException($"step {Steps + 1}: {e.Message}");
    }

    /// <summary>ReduceLROnPlateau's counters, for checkpoints.</summary>
    public PlateauCounters? Plateau => _plateau?.Counters;

    /// <summary>Restores ReduceLROnPlateau's counters and the groups' rates from a checkpoint.</summary>
    public void RestorePlateau(PlateauCounters counters, IReadOnlyList<double> lrs)
    {
        if (_plateau is null) throw new InvalidOperationException("not a ReduceLROnPlateau run");
        if (lrs.Count != _groups.Count) throw new ArgumentException($"expected {_groups.Count} learning rates, got {lrs.Count}");
        for (int i = 0; i < lrs.Count; i++) _groups.Lr[i] = lrs[i];
        _plateau.Restore(counters);
        Steps = counters.LastEpoch;
    }
}
