using System.Text.Json.Nodes;
using Expecto;
using Schedules.Core;
using Schedules.Torch.Golden;
using Tests.Harness;

namespace Tests.Core;

/// <summary>Bugs the property and oracle tests found, kept as reproducers.</summary>
public static class RegressionTests
{
    [Tests]
    public static Test All => Spec.List("core.regressions",
        Spec.Case("two OneCycleLRs on one optimizer share the groups' max_lr/min_lr, as in PyTorch", () =>
        {
            // PyTorch 1.13's answer (Tests/Oracle/torch_oracle.py); OneCycleLR keeps these values in the param groups.
            const string c = """{"id":"two_onecycle_seq","lrs":[0.1],"steps":3,"scheduler":{"type":"SequentialLR","schedulers":[{"type":"OneCycleLR","max_lr":1.0,"total_steps":10},{"type":"OneCycleLR","max_lr":0.5,"total_steps":10}],"milestones":[5]},"trace":[[0.020000000000000018],[0.26],[0.5],[0.47524231600673683]],"last_lr":[[0.020000000000000018],[0.26],[0.5],[0.47524231600673683]],"momentum":[[0.95],[0.8999999999999999],[0.85],[0.854951556604879]]}""";
            var o = GoldenReplay.Check((JsonObject)JsonNode.Parse(c)!, rtol: 0);
            Must.True(o.Passed, o.Failure ?? "");
        }),
        Spec.Case("a bad lr_lambda is a refusal with its path, not a crash", () =>
        {
            foreach (var json in new[]
            {
                """{"type":"LambdaLR","lr_lambda":[]}""",
                """{"type":"LambdaLR"}""",
                """{"type":"MultiplicativeLR","lr_lambda":{"fn":"sqrt"}}""",
                """{"type":"LambdaLR","lr_lambda":{"fn":"step","gamma":0.5}}""",
                """{"type":"LambdaLR","lr_lambda":{"fn":"step","gamma":0.5,"every":0}}""",
            })
            {
                var e = Must.Throws<InvalidScheduleException>(() => ScheduleJson.Parse(json), json);
                Must.Contains(e.Message, "lr_lambda", json);
                Must.Equal(e.Problems.Count, e.Problems.Distinct().Count(), $"{json}: no problem listed twice");
            }
        }),
        Spec.Case("a JSON tree built in C# (int-backed values) parses", () =>
        {
            var s = ScheduleJson.Parse(new JsonObject { ["type"] = "StepLR", ["step_size"] = 3, ["gamma"] = 0.5 });
            Must.Equal(s.ToJson(), new StepLR(3, 0.5).ToJson(), "parsed");
        })
    );
}
