using Expecto;
using Schedules.Core;
using Tests.Harness;
using Trainer.Checkpoint;
using Trainer.Cli;
using Trainer.Training;

namespace Tests.Training;

/// <summary>Stopping at a checkpoint and resuming gives exactly the losses and LRs of the run that never stopped.</summary>
public static class ResumeTests
{
    internal static string TempDir(string tag)
    {
        var d = Path.Combine(Path.GetTempPath(), "trainer-tests", tag + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(d);
        return d;
    }

    static List<StepRecord> Run(TrainOptions o, int[] tokens, TextWriter? log = null) =>
        new TrainingRun(o, TinyLm.Factory(), TinyLm.Loss, tokens, log ?? TextWriter.Null).Run();

    static void CheckResume(string name, Schedule? schedule, OptimizerKind opt = OptimizerKind.AdamW, int dp = 1, int steps = 8, int at = 4)
    {
        var root = TempDir("resume-" + name);
        try
        {
            var tokens = TinyLm.Tokens(4000);
            var o = DataParallelTests.Tiny(dp, steps) with
            {
                TotalBatchSize = 2 * 8 * 4,
                Optimizer = opt,
                Momentum = opt == OptimizerKind.Sgd ? 0.9 : 0,
                LearningRate = 0.05,
                Schedule = schedule,
                ScheduleWantsMetric = schedule?.IsMetricDriven ?? false,
                SaveDir = root,
                SaveInterval = at,
                KeepLast = 0,
            };
            var fullLog = new StringWriter();
            var full = Run(o, tokens, fullLog);
            var resumedLog = new StringWriter();
            var resumed = Run(o with { SaveDir = null, SaveInterval = 0, LoadDir = Path.Combine(root, CheckpointStore.DirectoryName(at)) }, tokens, resumedLog);
            if (resumed.Count != steps - at) throw new Exception($"{name}: resumed run ran {resumed.Count} steps, expected {steps - at}");
            for (int i = 0; i < resumed.Count; i++)
            {
                var a = full[at + i];
                var b = resumed[i];
                if (a.Step != b.Step) throw new Exception($"{name}: step numbers {a.Step} vs {b.Step}");
                if (BitConverter.SingleToInt32Bits(a.Loss) != BitConverter.SingleToInt32Bits(b.Loss))
                    throw new Exception($"{name}: step {a.Step}: loss {a.Loss:R} (uninterrupted) vs {b.Loss:R} (resumed)");
                if (!a.Lrs.SequenceEqual(b.Lrs))
                    throw new Exception($"{name}: step {a.Step}: lr {string.Join(",", a.Lrs)} vs {string.Join(",", b.Lrs)}");
                if (StepLog.Format(a).Split(" | (")[0] != StepLog.Format(b).Split(" | (")[0])
                    throw new Exception($"{name}: printed lines differ at step {a.Step}");
            }
            // the schedule really moved the LR (except plateau/constant ones)
            if (schedule is not null && !schedule.IsMetricDriven && full.Select(r => r.Lrs[0]).Distinct().Count() < 2)
                throw new Exception($"{name}: the LR never changed: {string.Join(",", full.Select(r => r.Lrs[0]))}");
        }
        finally { Directory.Delete(root, true); }
    }

    static SchedulerFlagValues Flags(string kind, int warmup = 0) => new() { Scheduler = kind, WarmupSteps = warmup };

    [Tests]
    public static Test All => Spec.Sequenced(Spec.List("training.resume",
        Spec.Case("StepLR, AdamW", () => CheckResume("steplr", new StepLR(2, 0.5))),
        Spec.Case("Sequential warmup -> cosine (the default recipe), AdamW", () =>
            CheckResume("warmup-cosine", SchedulerFlags.FromFlags(Flags("cosine", 3), 0.05, 8))),
        Spec.Case("ChainedScheduler(StepLR, LinearLR), SGD momentum", () =>
            CheckResume("chained", new ChainedScheduler(new StepLR(3, 0.5), new LinearLR(0.1, 1.0, 5)), OptimizerKind.Sgd)),
        Spec.Case("OneCycleLR cycling Adam beta1", () =>
            CheckResume("onecycle", new OneCycleLR(0.05, 8, cycleMomentum: true), OptimizerKind.Adam)),
        Spec.Case("warmup-stable-decay", () => CheckResume("wsd", SchedulerFlags.FromFlags(Flags("warmup-stable-decay", 2) with { DecaySteps = 3 }, 0.05, 8))),
        Spec.Case("ReduceLROnPlateau on the train loss", () =>
            CheckResume("plateau", new ReduceLROnPlateau(PlateauMode.Min, 0.5, 0, 0.5))),
        Spec.Case("DP=2 resume with a warmup schedule", () =>
            CheckResume("dp2", SchedulerFlags.FromFlags(Flags("linear", 2), 0.05, 6), dp: 2, steps: 6, at: 3))));
}
