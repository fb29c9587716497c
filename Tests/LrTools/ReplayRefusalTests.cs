using System.IO.Compression;
using System.Text.Json.Nodes;
using Expecto;
using Schedules.Core;
using Schedules.Torch.Golden;
using Tests.Harness;
using Tests.Properties;
using Trainer.Cli;
using Trainer.LrTools;

namespace Tests.LrTools;

/// <summary>
/// Issue 11: a replay fails every case it could not check in full (FORMAT.md: trace[0..steps], one number per group
/// in every row), an empty corpus is an error, and a JSON object with a key given twice is refused wherever a
/// schedule is read (the library, <c>train --lr_schedule</c>, <c>lr preview</c>, a corpus line), naming the JSON path.
/// </summary>
public static class ReplayRefusalTests
{
    /// <summary>The first corpus case with (or without) a momentum trace, 2+ groups, 4+ steps, no resume and no PyTorch error.</summary>
    static JsonObject RealCase(bool withMomentum) => GoldenCorpusTests.ReadCorpus().First(c =>
        c["error"] is null && c["error_at_step"] is null && c["resume_at"] is null && (c["momentum"] is not null) == withMomentum
        && c["lrs"]!.AsArray().Count >= 2 && (int)c["steps"]! >= 4);

    static JsonObject With(JsonObject c, Action<JsonObject> change)
    {
        var copy = (JsonObject)c.DeepClone();
        change(copy);
        return copy;
    }

    static void MustFail(JsonObject c, string because, string what)
    {
        var o = GoldenReplay.Check(c);
        Must.True(!o.Passed, $"{what}: passed a case it could not check");
        Must.Contains(o.Failure!, because, what);
    }

    static JsonArray Rows(JsonObject c, string field) => c[field]!.AsArray();

    [Tests]
    public static Test Replay => Spec.Sequenced(Spec.List("reliability.replay",
        Spec.Case("a complete case passes; a short, empty or null-row trace, or a row missing a group, fails with the reason", () =>
        {
            var c = RealCase(withMomentum: false);
            int steps = (int)c["steps"]!;
            Must.True(GoldenReplay.Check(c).Passed, "the complete case passes: " + GoldenReplay.Check(c).Failure);
            MustFail(With(c, x => Rows(x, "trace").RemoveAt(steps)), $"trace has {steps} rows, expected {steps + 1}", "short trace");
            MustFail(With(c, x => x["trace"] = new JsonArray()), "trace has 0 rows", "empty trace");
            MustFail(With(c, x => x.Remove("trace")), "no trace", "no trace");
            MustFail(With(c, x => Rows(x, "trace")[2] = null), "trace[2]", "null row");
            MustFail(With(c, x => Rows(x, "trace")[1]!.AsArray().RemoveAt(0)), "trace[1]", "a group missing");
            MustFail(With(c, x => Rows(x, "trace")[1]!.AsArray()[0] = "0.1"), "trace[1]", "a string for a number");
            MustFail(With(c, x => Rows(x, "last_lr").RemoveAt(steps)), "last_lr has", "short last_lr");
            MustFail(With(c, x => x["steps"] = -1), "steps", "negative steps");
        }),
        Spec.Case("a case whose schedule cycles momentum fails without a full momentum trace", () =>
        {
            var c = RealCase(withMomentum: true);
            Must.True(GoldenReplay.Check(c).Passed, "the complete case passes: " + GoldenReplay.Check(c).Failure);
            MustFail(With(c, x => x.Remove("momentum")), "momentum", "no momentum");
            MustFail(With(c, x => Rows(x, "momentum").RemoveAt(1)), "momentum has", "short momentum");
        }),
        Spec.Case("a ReduceLROnPlateau case fails without a metric per step", () =>
        {
            var c = GoldenCorpusTests.ReadCorpus().First(x => x["metrics"] is not null && x["error"] is null && (int)x["steps"]! >= 2);
            MustFail(With(c, x => x["metrics"]!.AsArray().RemoveAt(0)), "metrics", "short metrics");
            MustFail(With(c, x => x.Remove("metrics")), "metrics", "no metrics");
        }),
        Spec.Case("an empty, blank or 0-byte corpus is an error (exit 1, file named), never `0 passed, 0 failed`", () =>
        {
            var dir = Tests.Training.ResumeTests.TempDir("replay");
            try
            {
                var empty = Path.Combine(dir, "empty.jsonl"); File.WriteAllText(empty, "");
                var blank = Path.Combine(dir, "blank.jsonl"); File.WriteAllText(blank, "\n  \n");
                var zeroGz = Path.Combine(dir, "zero.jsonl.gz"); File.WriteAllBytes(zeroGz, []);
                var emptyGz = Path.Combine(dir, "empty.jsonl.gz");
                using (var gz = new GZipStream(File.Create(emptyGz), CompressionLevel.Fastest)) { }
                foreach (var f in new[] { empty, blank, zeroGz, emptyGz })
                {
                    var (exit, output, err) = TestData.Capture(() => LrCommand.Run(["replay", f]));
                    Must.Equal(exit, 1, $"{Path.GetFileName(f)}: exit code (stdout: {output})");
                    Must.Contains(err, f, Path.GetFileName(f));
                    Must.True(!output.Contains("0 passed, 0 failed"), $"{Path.GetFileName(f)}: reported an empty replay as a result");
                }
            }
            finally { Directory.Delete(dir, true); }
        }),
        Spec.Case("a corpus line with a key given twice is refused naming the line", () =>
        {
            var dir = Tests.Training.ResumeTests.TempDir("replay");
            try
            {
                var f = Path.Combine(dir, "dup.jsonl");
                File.WriteAllText(f, """{"id":"d","lrs":[0.1],"steps":1,"steps":2,"scheduler":{"type":"StepLR","step_size":1},"trace":[[0.1],[0.01],[0.001]]}""" + "\n");
                var (exit, _, err) = TestData.Capture(() => LrCommand.Run(["replay", f]));
                Must.Equal(exit, 1, "exit code");
                Must.Contains(err, f + ":1", "line named");
                Must.Contains(err, "steps", "key named");
            }
            finally { Directory.Delete(dir, true); }
        })));

    const string DupRoot = """{"type":"StepLR","step_size":3,"gamma":0.5,"step_size":4}""";
    const string DupNested = """{"type":"SequentialLR","schedulers":[{"type":"LinearLR","total_iters":2},{"type":"ExponentialLR","gamma":0.9,"gamma":0.5}],"milestones":[2]}""";
    const string DupLambda = """{"type":"LambdaLR","lr_lambda":[{"fn":"const","c":1},{"fn":"pow","base":0.9,"base":0.8}]}""";

    [Tests]
    public static Test DuplicateKeys => Spec.Sequenced(Spec.List("reliability.schedule-json",
        Spec.Case("ScheduleJson.Parse refuses a key given twice, naming the JSON path, from text and from a parsed node", () =>
        {
            foreach (var (json, path, key) in new[] { (DupRoot, "$", "step_size"), (DupNested, "$.schedulers[1]", "gamma"), (DupLambda, "$.lr_lambda[1]", "base") })
            {
                var e = Must.Throws<ScheduleFormatException>(() => ScheduleJson.Parse(json), json);
                Must.Contains(e.Message, $"{path}: {key}=", json);
                Must.Contains(e.Message, "given more than once", json);
                var fromNode = Must.Throws<ScheduleFormatException>(() => ScheduleJson.Parse(JsonNode.Parse(json)), "node " + json);
                Must.Contains(fromNode.Message, $"{path}: {key}=", "node " + json);
            }
            // The same keys in different objects are fine.
            ScheduleJson.Parse("""{"type":"SequentialLR","schedulers":[{"type":"ExponentialLR","gamma":0.9},{"type":"ExponentialLR","gamma":0.5}],"milestones":[2]}""");
        }),
        Spec.Case("train --lr_schedule with a key given twice: exit 2 naming the flag and the path; nothing written", () =>
        {
            var dir = Tests.Training.ResumeTests.TempDir("dupkey");
            try
            {
                var log = Path.Combine(dir, "log.jsonl");
                var o = new StringWriter();
                var e = new StringWriter();
                int code = TrainCommand.Run(["--lr_schedule=" + DupNested, "--num_iteration=4", "--log_json", log], o, e);
                Must.Equal(code, 2, "exit code; stderr: " + e);
                Must.Contains(e.ToString(), "--lr_schedule", "flag");
                Must.Contains(e.ToString(), "$.schedulers[1]: gamma=", "path");
                Must.True(!File.Exists(log), "log written");
            }
            finally { Directory.Delete(dir, true); }
        }),
        Spec.Case("a scheduler state (checkpoint) with a key given twice is a SchedulerStateException naming the key", () =>
        {
            var s = Schedules.Torch.LRSchedulers.Create(new StepLR(2, 0.5), new Schedules.Torch.InMemoryParamGroups(new[] { 0.1 }, 0.9));
            s.Step();
            var json = s.StateDict().ToJson();
            Must.True(Schedules.Torch.SchedulerState.FromJson(json) is not null, "the state reads back");
            var dup = json.Replace("\"last_epoch\"", "\"last_epoch\":7,\"last_epoch\"");
            var e = Must.Throws<Schedules.Torch.SchedulerStateException>(() => Schedules.Torch.SchedulerState.FromJson(dup), "duplicate key");
            Must.Contains(e.Message, "last_epoch", "key named");
        }),
        Spec.Case("lr preview with a key given twice: exit 2 naming the path (no crash)", () =>
        {
            var r = Kit.Run("--lr-schedule=" + DupRoot, "--steps=5");
            Must.Equal(r.Exit, 2, "exit code; stderr: " + r.Err);
            Must.Contains(r.Err, "$: step_size=", "path");
            Must.Contains(r.Err, "given more than once", "rule");
        })));
}
