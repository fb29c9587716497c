using Expecto;
using Schedules.Core;
using Tests.Harness;

namespace Tests.Core;

/// <summary>Bad configurations are refused up front with every problem named; step-time failures are clear errors, never NaN.</summary>
public static class RefusalTests
{
    [Tests]
    public static Test All => Spec.List("core.refusals",
        Spec.Case("StepLR step_size=0 is refused with parameter, value and rule", () =>
        {
            var e = Must.Throws<InvalidScheduleException>(() => new StepLR(0), "StepLR(0)");
            Must.Equal(e.Problems.Count, 1, "problem count");
            Must.Equal(e.Problems[0].Parameter, "step_size", "parameter");
            Must.Equal(e.Problems[0].Value, "0", "value");
            Must.Contains(e.Message, "positive integer", "rule");
        }),
        Spec.Case("every problem of a node is listed, not only the first", () =>
        {
            var e = Must.Throws<InvalidScheduleException>(() => new LinearLR(0.0, 1.5, -1), "LinearLR(0, 1.5, -1)");
            var names = e.Problems.Select(p => p.Parameter).ToArray();
            Must.True(names.SequenceEqual(["start_factor", "end_factor", "total_iters"]), "problems: " + string.Join(", ", names));
        }),
        Spec.Case("JSON problems carry their path, across the whole tree", () =>
        {
            const string json = """
                {"type":"SequentialLR","milestones":[5],"schedulers":[
                  {"type":"StepLR","step_size":0},
                  {"type":"ExponentialLR","gamma":"fast","colour":"red"}]}
                """;
            var e = Must.Throws<ScheduleFormatException>(() => ScheduleJson.Parse(json), "parse");
            string all = e.Message;
            Must.Contains(all, "$.schedulers[0]: step_size=0", "first child");
            Must.Contains(all, "$.schedulers[1]: gamma=\"fast\": must be a number", "wrong type");
            Must.Contains(all, "$.schedulers[1]: colour=\"red\": unknown field", "unknown field");
        }),
        Spec.Case("unknown types, missing fields and bad JSON are named", () =>
        {
            Must.Contains(Must.Throws<ScheduleFormatException>(() => ScheduleJson.Parse("""{"type":"StepLr","step_size":3}"""), "type").Message, "unknown scheduler type", "type");
            Must.Contains(Must.Throws<ScheduleFormatException>(() => ScheduleJson.Parse("""{"type":"StepLR"}"""), "missing").Message, "step_size=(missing)", "missing");
            Must.Contains(Must.Throws<ScheduleFormatException>(() => ScheduleJson.Parse("""{"type":"StepLR","step_size":2.5}"""), "int").Message, "must be an integer", "integer");
            Must.Contains(Must.Throws<ScheduleFormatException>(() => ScheduleJson.Parse("{\"type\":"), "syntax").Message, "not valid JSON", "syntax");
        }),
        Spec.Case("a per-group list must match the optimizer's groups", () =>
        {
            var s = new LambdaLR(PerGroup<LrLambda>.List([new LrLambda.Const(1), new LrLambda.Const(2)]));
            var e = Must.Throws<InvalidScheduleException>(() => s.Start([0.1, 0.2, 0.3]), "bind to 3 groups");
            Must.Contains(e.Message, "lr_lambda=2 values", "count named");
        }),
        Spec.Case("ConstantLR factor=0 fails clearly at total_iters instead of producing infinity", () =>
        {
            var run = new ConstantLR(0.0, 3).Start([0.1]);
            run.Advance(2);
            Must.Equal(run.Lrs[0], 0.0, "lr before total_iters");
            var e = Must.Throws<ScheduleStepException>(() => run.Step(), "step 3");
            Must.Contains(e.Message, "step 3", "step named");
            Must.Contains(e.Message, "division by zero", "cause named");
            Must.Throws<InvalidOperationException>(() => run.Step(), "a failed run refuses to continue");
        }),
        Spec.Case("OneCycleLR stepped past total_steps raises a clear error", () =>
        {
            var run = new OneCycleLR(0.1, totalSteps: 10).Start([0.1], [0.9]);
            run.Advance(10);
            Must.Contains(Must.Throws<ScheduleStepException>(() => run.Step(), "step 11").Message, "total steps is 10", "message");
        }),
        Spec.Case("a composite nested in SequentialLR fails at its milestone as in PyTorch", () =>
        {
            var s = new SequentialLR([new ExponentialLR(0.9), new ChainedScheduler(new StepLR(2), new ExponentialLR(0.9))], [3]);
            var run = s.Start([1.0]);
            run.Advance(2);
            Must.Contains(Must.Throws<ScheduleStepException>(() => run.Step(), "milestone").Message, "NotImplementedError", "message");
        }),
        Spec.Case("ReduceLROnPlateau cannot be composed", () =>
        {
            var e = Must.Throws<InvalidScheduleException>(() => new ChainedScheduler(new StepLR(2), new ReduceLROnPlateau()), "chain");
            Must.Contains(e.Message, "schedulers[1]", "index named");
        })
    );
}
