using Expecto;
using Tests.Harness;
using Trainer.Checkpoint;
using Trainer.Cli;

namespace Tests.Training;

public static class CheckpointTests
{
    static readonly CheckpointIdentity Id = new("model A", "{\"type\":\"StepLR\"}", "AdamW", "float32", 8);

    static CheckpointMeta Meta(int step) => new()
    {
        Step = step, ConsumedSamples = step * 8L, Model = Id.Model, Schedule = Id.Schedule, Optimizer = Id.Optimizer,
        Dtype = Id.Dtype, SequenceLength = Id.SequenceLength, DataParallel = 1,
        RngState = Convert.ToBase64String(new byte[CheckpointStore.RngStateLength]),
    };

    static Dictionary<string, Action<string>> Files(string tag) => new()
    {
        [CheckpointStore.ModelFile] = p => File.WriteAllText(p, "model " + tag),
        [CheckpointStore.OptimizerFile] = p => File.WriteAllText(p, "optimizer " + tag),
        [CheckpointStore.SchedulerFile] = p => File.WriteAllText(p, "{}"),
    };

    static void Expect(Action a, string containing)
    {
        try { a(); }
        catch (Trainer.Checkpoint.CheckpointException e)
        {
            if (!e.Message.Contains(containing)) throw new Exception($"message '{e.Message}' lacks '{containing}'");
            return;
        }
        throw new Exception($"expected a CheckpointException containing '{containing}'");
    }

    static void WithRoot(Action<string> body)
    {
        var root = ResumeTests.TempDir("ckpt");
        try { body(root); } finally { Directory.Delete(root, true); }
    }

    [Tests]
    public static Test All => Spec.List("training.checkpoint",
        Spec.Case("save then verify; --load DIR picks the newest; keep_last prunes", () => WithRoot(root =>
        {
            for (int s = 1; s <= 4; s++) CheckpointStore.Save(root, Meta(s), 2, Files("s" + s));
            var left = CheckpointStore.List(root).Select(t => t.Step).ToArray();
            if (!left.SequenceEqual(new[] { 4, 3 })) throw new Exception("kept: " + string.Join(",", left));
            var info = CheckpointStore.Verify(root, Id);
            if (info.Meta.Step != 4 || File.ReadAllText(info.ModelPath) != "model s4") throw new Exception("did not load the newest");
        })),
        Spec.Case("a crash mid-write leaves the previous checkpoint intact and no half checkpoint", () => WithRoot(root =>
        {
            CheckpointStore.Save(root, Meta(1), 3, Files("one"));
            var failing = Files("two");
            failing[CheckpointStore.OptimizerFile] = _ => throw new IOException("disk full (simulated)");
            try { CheckpointStore.Save(root, Meta(2), 3, failing); throw new Exception("save should have failed"); }
            catch (IOException) { }
            var all = Directory.GetDirectories(root).Select(Path.GetFileName).ToArray();
            if (!all.SequenceEqual(new[] { "checkpoint_step_000001" })) throw new Exception("left: " + string.Join(",", all));
            // a crash that left a temp dir behind (process killed): ignored by load, swept by the next save
            Directory.CreateDirectory(Path.Combine(root, ".checkpoint_step_000002.tmp-dead"));
            File.WriteAllText(Path.Combine(root, ".checkpoint_step_000002.tmp-dead", CheckpointStore.ModelFile), "half");
            if (CheckpointStore.Verify(root, Id).Meta.Step != 1) throw new Exception("loaded a half-written checkpoint");
            CheckpointStore.Save(root, Meta(2), 3, Files("two"));
            if (Directory.Exists(Path.Combine(root, ".checkpoint_step_000002.tmp-dead"))) throw new Exception("stale temp dir not swept");
        })),
        Spec.Case("a corrupted file is named (SHA-256 mismatch)", () => WithRoot(root =>
        {
            var dir = CheckpointStore.Save(root, Meta(1), 3, Files("x"));
            File.AppendAllText(Path.Combine(dir, CheckpointStore.OptimizerFile), "!");
            Expect(() => CheckpointStore.Verify(dir, Id), "optimizer.bin is corrupt");
        })),
        Spec.Case("a missing file is named", () => WithRoot(root =>
        {
            var dir = CheckpointStore.Save(root, Meta(1), 3, Files("x"));
            File.Delete(Path.Combine(dir, CheckpointStore.SchedulerFile));
            Expect(() => CheckpointStore.Verify(dir, Id), "scheduler.json is missing");
        })),
        Spec.Case("another format version is refused", () => WithRoot(root =>
        {
            var dir = CheckpointStore.Save(root, Meta(1), 3, Files("x"));
            var m = Path.Combine(dir, CheckpointStore.ManifestFile);
            File.WriteAllText(m, File.ReadAllText(m).Replace("\"format_version\": 1", "\"format_version\": 99"));
            Expect(() => CheckpointStore.Verify(dir, Id), "format version 99");
        })),
        Spec.Case("model configuration, schedule, optimizer, dtype mismatches are named", () => WithRoot(root =>
        {
            var dir = CheckpointStore.Save(root, Meta(1), 3, Files("x"));
            Expect(() => CheckpointStore.Verify(dir, Id with { Model = "model B" }), "model configuration differs");
            Expect(() => CheckpointStore.Verify(dir, Id with { Schedule = "{}" }), "lr schedule differs");
            Expect(() => CheckpointStore.Verify(dir, Id with { Optimizer = "SGD" }), "optimizer differs");
            Expect(() => CheckpointStore.Verify(dir, Id with { Dtype = "bfloat16" }), "dtype differs");
        })),
        Spec.Case("an empty or missing directory is refused", () => WithRoot(root =>
        {
            Expect(() => CheckpointStore.Verify(root, Id), "holds no checkpoint");
            Expect(() => CheckpointStore.Verify(Path.Combine(root, "nope"), Id), "does not exist");
        })));
}
