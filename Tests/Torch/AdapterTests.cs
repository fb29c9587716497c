using Expecto;
using Schedules.Core;
using Schedules.Torch;
using Tests.Harness;
using Trainer.LrTools;

namespace Tests.Torch;

/// <summary>The stateful adapter: PyTorch's construction step, Step(), state and resume, and the replay tool.</summary>
public static class AdapterTests
{
    static readonly Schedule Warmup = new SequentialLR([new LinearLR(0.01, 1.0, 20), new CosineAnnealingLR(180, 1e-5)], [20]);

    [Tests]
    public static Test All => Spec.List("torch.adapter",
        Spec.Case("construction applies the initial step to the param groups", () =>
        {
            var g = new InMemoryParamGroups([6e-4, 3e-4]);
            var s = LRSchedulers.Create(Warmup, g);
            Must.Close(g.GetLr(0), 6e-6, 1e-15, "group 0 starts at start_factor x lr");
            Must.Close(g.GetLr(1), 3e-6, 1e-15, "group 1 too");
            Must.True(s.GetLastLr().SequenceEqual(g.Lrs), "get_last_lr equals the groups' rates");
            Must.True(s.BaseLrs.SequenceEqual([6e-4, 3e-4]), "base lrs are the initial rates");
        }),
        Spec.Case("Step() hands every group the schedule's rate", () =>
        {
            var g = new InMemoryParamGroups([6e-4]);
            var s = LRSchedulers.Create(Warmup, g);
            var trace = Warmup.Trace([6e-4], 200);
            for (int i = 1; i <= 200; i++)
            {
                s.Step();
                Must.Equal(g.GetLr(0), trace[i][0], $"step {i}");
            }
            Must.Equal(s.LastEpoch, 200, "last epoch");
        }),
        Spec.Case("resume from the state JSON continues exactly", () =>
        {
            var g1 = new InMemoryParamGroups([0.1, 0.05]);
            var s1 = LRSchedulers.Create(Warmup, g1);
            for (int i = 0; i < 37; i++) s1.Step();
            string json = s1.StateDict().ToJson();
            var g2 = new InMemoryParamGroups([0.1, 0.05]);
            var s2 = LRSchedulers.Create(ScheduleJson.Parse(Warmup.ToJson()), g2);
            s2.LoadStateDict(SchedulerState.FromJson(json));
            Must.True(g2.Lrs.SequenceEqual(g1.Lrs), "rates restored");
            for (int i = 0; i < 100; i++)
            {
                s1.Step(); s2.Step();
                Must.True(g2.Lrs.SequenceEqual(g1.Lrs), $"step {38 + i} identical");
            }
        }),
        Spec.Case("a state is refused by a different schedule or optimizer", () =>
        {
            var s1 = LRSchedulers.Create(Warmup, new InMemoryParamGroups([0.1]));
            s1.Step();
            var state = SchedulerState.FromJson(s1.StateDict().ToJson());
            var other = LRSchedulers.Create(new StepLR(5), new InMemoryParamGroups([0.1]));
            Must.Contains(Must.Throws<SchedulerStateException>(() => other.LoadStateDict(state), "other schedule").Message, "different schedule", "message");
            var twoGroups = LRSchedulers.Create(Warmup, new InMemoryParamGroups([0.1, 0.2]));
            Must.Contains(Must.Throws<SchedulerStateException>(() => twoGroups.LoadStateDict(state), "groups").Message, "param groups", "message");
            Must.Contains(Must.Throws<SchedulerStateException>(() => SchedulerState.FromJson("{\"format\":\"x\"}"), "format").Message, "not a scheduler state", "message");
            Must.Contains(Must.Throws<SchedulerStateException>(() => SchedulerState.FromJson("{oops"), "json").Message, "not valid JSON", "message");
        }),
        Spec.Case("ReduceLROnPlateau resumes with its counters", () =>
        {
            var plateau = new ReduceLROnPlateau(factor: 0.5, patience: 1);
            double[] metrics = [1, 0.9, 0.95, 0.97, 0.9, 0.99, 1.2, 0.5, 0.6, 0.7, 0.8];
            var g1 = new InMemoryParamGroups([0.1]);
            var s1 = LRSchedulers.Create(plateau, g1);
            for (int i = 0; i < 4; i++) s1.Step(metrics[i]);
            var g2 = new InMemoryParamGroups([0.1]);
            var s2 = LRSchedulers.Create(plateau, g2);
            s2.LoadStateDict(SchedulerState.FromJson(s1.StateDict().ToJson()));
            for (int i = 4; i < metrics.Length; i++)
            {
                s1.Step(metrics[i]); s2.Step(metrics[i]);
                Must.Equal(g2.GetLr(0), g1.GetLr(0), $"step {i + 1}");
            }
            Must.True(g1.GetLr(0) < 0.1, "the plateau did cut");
        }),
        Spec.Case("a schedule can drive momentum instead of the LR", () =>
        {
            var g = new InMemoryParamGroups([0.1], momentum: 0.9);
            var s = LRSchedulers.Create(new LinearLR(0.5, 1.0, 4), g, HyperParameter.Momentum);
            Must.Close(g.GetMomentum(0), 0.45, 1e-15, "momentum starts at 0.5 x 0.9");
            for (int i = 0; i < 4; i++) s.Step();
            Must.Close(g.GetMomentum(0), 0.9, 1e-15, "momentum back to 0.9");
            Must.Equal(g.GetLr(0), 0.1, "the LR is untouched");
        }),
        Spec.Case("`lr replay` replays the public corpus: 2516 passed, 0 failed", () =>
        {
            var (exit, output, _) = TestData.Capture(() => LrCommand.Run(["replay", TestData.GoldenCorpus]));
            Must.Contains(output, "replay: 2516 passed, 0 failed", "summary");
            Must.Equal(exit, 0, "exit code");
        }),
        Spec.Case("`lr replay` reports a failing case by id and exits 1", () =>
        {
            string path = Path.Combine(Path.GetTempPath(), $"replay-{Guid.NewGuid():N}.jsonl");
            File.WriteAllText(path, """{"id":"bad","lrs":[0.1],"steps":2,"scheduler":{"type":"StepLR","step_size":1,"gamma":0.5},"trace":[[0.1],[0.05],[0.026]]}""" + "\n");
            try
            {
                var (exit, output, _) = TestData.Capture(() => LrCommand.Run(["replay", path]));
                Must.Contains(output, "FAIL bad: lr at step 2", "failure line");
                Must.Contains(output, "replay: 0 passed, 1 failed", "summary");
                Must.Equal(exit, 1, "exit code");
            }
            finally { File.Delete(path); }
        })
    );
}
