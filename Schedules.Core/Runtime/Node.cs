namespace Schedules.Core.Runtime;

/// <summary>
/// One scheduler object of a run, mirroring PyTorch's <c>LRScheduler</c> state machine: <c>last_epoch</c>,
/// <c>_step_count</c>, <c>_is_initial</c>, <c>base_lrs</c>, <c>_last_lr</c>. Every counter here evolves as a function of the
/// number of steps alone, never of the rates, which is why a run is a pure function of (step, base lrs) and a
/// checkpoint needs only those two (see docs/DESIGN.md).
/// </summary>
internal abstract class Node
{
    protected readonly GroupState G;
    protected readonly double[] BaseLrs;
    readonly double[] _buf;
    public readonly double[] LastLr;
    public int LastEpoch = -1;
    public int StepCount;
    public bool IsInitial;
    public readonly string Name;

    protected Node(GroupState g, string name)
    {
        G = g;
        Name = name;
        BaseLrs = new double[g.Count];
        _buf = new double[g.Count];
        LastLr = new double[g.Count];
    }

    /// <summary>LRScheduler.__init__(optimizer, last_epoch=-1): initial_lr, base_lrs, then the initial step.</summary>
    public virtual void Construct()
    {
        for (int i = 0; i < G.Count; i++)
        {
            if (!G.HasInitialLr[i]) { G.InitialLr[i] = G.Lr[i]; G.HasInitialLr[i] = true; }
            BaseLrs[i] = G.InitialLr[i];
        }
        LastEpoch = -1;
        InitialStep();
    }

    /// <summary>LRScheduler._initial_step: reset the step count and step once in initial mode.</summary>
    public virtual void InitialStep()
    {
        StepCount = 0;
        IsInitial = true;
        try { Step(); }
        finally { IsInitial = false; }
    }

    /// <summary>LRScheduler.step().</summary>
    public virtual void Step()
    {
        StepCount++;
        UpdateLr(null);
    }

    /// <summary>
    /// LRScheduler._update_lr(epoch): the chainable form after advancing the epoch, or, when SequentialLR switches to this
    /// scheduler with an explicit epoch 0, the closed form (where the class has one; else get_lr again).
    /// </summary>
    public virtual void UpdateLr(int? epoch)
    {
        if (epoch is null) { LastEpoch++; Chainable(_buf); }
        else { LastEpoch = epoch.Value; AtExplicitEpoch(_buf); }
        Assign(_buf);
    }

    /// <summary>Computes get_lr() without touching the epoch and writes it to the groups (for classes that override step()).</summary>
    protected void ApplyChainable()
    {
        Chainable(_buf);
        Assign(_buf);
    }

    /// <summary>get_lr(): reads the groups' current lrs where the class is chainable.</summary>
    protected abstract void Chainable(double[] into);

    /// <summary>_get_closed_form_lr() where the class has it, else get_lr().</summary>
    protected virtual void AtExplicitEpoch(double[] into) => Chainable(into);

    /// <summary>SequentialLR.recursive_undo on a plain scheduler.</summary>
    public virtual void Undo() => LastEpoch--;

    protected void Assign(double[] values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            double v = values[i];
            if (!double.IsFinite(v))
                throw new ScheduleStepException($"{Name}: the learning rate of param group {i} would be {v} at epoch {LastEpoch}; refusing a non-finite rate");
            G.Lr[i] = v;
        }
        Array.Copy(G.Lr, LastLr, G.Count);
    }

    protected void SnapshotLastLr() => Array.Copy(G.Lr, LastLr, G.Count);

    protected void SetMomentum(int group, double m)
    {
        if (!double.IsFinite(m))
            throw new ScheduleStepException($"{Name}: the momentum of param group {group} would be {m} at epoch {LastEpoch}");
        G.Momentum![group] = m;
    }
}

/// <summary>A scheduler whose class has PyTorch's <c>_get_closed_form_lr</c>: used when SequentialLR switches to it.</summary>
internal abstract class ClosedFormNode(LeafSchedule schedule, GroupState g) : Node(g, schedule.TypeName)
{
    protected override void AtExplicitEpoch(double[] into)
    {
        for (int i = 0; i < into.Length; i++) into[i] = schedule.ClosedForm(LastEpoch, BaseLrs[i])!.Value;
    }
}
