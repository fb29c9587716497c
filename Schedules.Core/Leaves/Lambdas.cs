using Schedules.Core.Runtime;

namespace Schedules.Core;

/// <summary>torch.optim.lr_scheduler.LambdaLR: base LR × lr_lambda(epoch), one function or one per param group.</summary>
public sealed record LambdaLR : LeafSchedule
{
    public PerGroup<LrLambda> LrLambda { get; }

    public LambdaLR(PerGroup<LrLambda> lrLambda)
    {
        LrLambda = lrLambda;
        var p = new ProblemList();
        foreach (var f in lrLambda.Values) p.AddRange(f.Problems(""));
        p.ThrowIfAny();
    }

    public override string TypeName => "LambdaLR";
    public override IEnumerable<ScheduleProblem> GroupProblems(int n, string path) => LrLambda.CountProblems(path, "lr_lambda", n);
    public override double? ClosedForm(int e, double baseLr) => baseLr * LrLambda.For(0).At(e);
    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    sealed class Impl(LambdaLR s, GroupState g) : Node(g, "LambdaLR")
    {
        protected override void Chainable(double[] into)
        {
            for (int i = 0; i < into.Length; i++) into[i] = BaseLrs[i] * s.LrLambda.For(i).At(LastEpoch);
        }
    }
}

/// <summary>torch.optim.lr_scheduler.MultiplicativeLR: the current LR × lr_lambda(epoch) every epoch.</summary>
public sealed record MultiplicativeLR : LeafSchedule
{
    public PerGroup<LrLambda> LrLambda { get; }

    public MultiplicativeLR(PerGroup<LrLambda> lrLambda)
    {
        LrLambda = lrLambda;
        var p = new ProblemList();
        foreach (var f in lrLambda.Values) p.AddRange(f.Problems(""));
        p.ThrowIfAny();
    }

    public override string TypeName => "MultiplicativeLR";
    public override IEnumerable<ScheduleProblem> GroupProblems(int n, string path) => LrLambda.CountProblems(path, "lr_lambda", n);
    internal override Node Build(GroupState g) { var n = new Impl(this, g); n.Construct(); return n; }

    // No closed form in PyTorch: a SequentialLR switch (explicit epoch 0) runs get_lr, which multiplies by lr_lambda(0).
    sealed class Impl(MultiplicativeLR s, GroupState g) : Node(g, "MultiplicativeLR")
    {
        protected override void Chainable(double[] into)
        {
            for (int i = 0; i < into.Length; i++) into[i] = IsInitial ? G.Lr[i] : G.Lr[i] * s.LrLambda.For(i).At(LastEpoch);
        }
    }
}
