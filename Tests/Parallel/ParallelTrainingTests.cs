using Expecto;
using Schedules.Core;
using Schedules.Torch;
using Tests.Harness;
using Tests.Training;
using Trainer.Checkpoint;
using Trainer.Cli;
using Trainer.Parallel;
using Trainer.Training;

namespace Tests.Parallel;

/// <summary>
/// The whole training loop under parallel layouts (ranks as threads): TP × DP (+SP, ZeRO) against the single-device
/// run of the same global batch, ZeRO stages against each other, determinism, resume, the LR guard, layout refusals.
/// The catalog's llama3-tiny-tp (8 heads, 4 KV heads) and gpt2-tiny, on the embedded data, a few steps each.
/// </summary>
public static class ParallelTrainingTests
{
    const int B = 2, T = 16;

    /// <summary>Global batch: 8 sequences of 16 tokens (single device: 4 micro-batches of 2; DP 2: 2 of 2 per rank).</summary>
    static TrainOptions Options(int world = 1, int tp = 1, bool sp = false, int zero = 0, int steps = 4, Schedule? schedule = null) => new()
    {
        BatchSize = B, SequenceLength = T, TotalBatchSize = 8 * T, NumIterations = steps,
        World = world, TensorParallel = tp, SequenceParallel = sp, ZeroStage = zero,
        Optimizer = OptimizerKind.AdamW, LearningRate = 3e-3, WeightDecay = 0.1, GradClip = 1.0, NumThreads = 1, Seed = 42,
        Schedule = schedule ?? Recipes.WarmupCosine(2, steps, 1e-4),
        ScheduleWantsMetric = schedule?.IsMetricDriven ?? false,
    };

    sealed record Result(List<StepRecord> Records, float[][] FinalParams);

    static Result Train(TrainOptions o, string model = "llama3-tiny-tp")
    {
        var binding = ModelBinding.Resolve(model, "", o.BFloat16, o.Seed);
        var tokens = binding.LoadTokens(null, "--input_bin");
        float[][] final = Array.Empty<float[]>();
        var run = new TrainingRun(o with { ModelDescription = binding.Description }, binding.RankFactory, null, tokens, TextWriter.Null)
        {
            // World rank 0's parameters after the last step (a TP shard when TP > 1: compare equal layouts only).
            AfterStep = (step, models) =>
            {
                if (step == o.NumIterations)
                    final = models[0].parameters().Select(p => p.detach().to(TorchSharp.torch.ScalarType.Float32).data<float>().ToArray()).ToArray();
            },
        };
        return new Result(run.Run(), final);
    }

    static void SameBits(Result a, Result b, string what)
    {
        Must.Equal(b.Records.Count, a.Records.Count, $"{what}: steps");
        for (int i = 0; i < a.Records.Count; i++)
        {
            Must.Equal(BitConverter.SingleToInt32Bits(b.Records[i].Loss), BitConverter.SingleToInt32Bits(a.Records[i].Loss), $"{what}: loss bits at step {i + 1} ({a.Records[i].Loss:R} vs {b.Records[i].Loss:R})");
            SameLrs(a.Records[i], b.Records[i], $"{what}: step {i + 1}");
        }
        Must.Equal(b.FinalParams.Length, a.FinalParams.Length, $"{what}: parameter count");
        for (int p = 0; p < a.FinalParams.Length; p++)
            Must.True(a.FinalParams[p].AsSpan().SequenceEqual(b.FinalParams[p]), $"{what}: parameter {p} differs after the last step");
    }

    static void SameLrs(StepRecord a, StepRecord b, string what)
    {
        Must.Equal(b.Lrs.Length, a.Lrs.Length, $"{what}: param groups");
        for (int g = 0; g < a.Lrs.Length; g++)
            Must.Equal(BitConverter.DoubleToInt64Bits(b.Lrs[g]), BitConverter.DoubleToInt64Bits(a.Lrs[g]), $"{what}: LR bits of group {g} ({a.Lrs[g]:R} vs {b.Lrs[g]:R})");
    }

    static void CloseLosses(Result single, Result parallel, double tol, string what)
    {
        Must.Equal(parallel.Records.Count, single.Records.Count, $"{what}: steps");
        for (int i = 0; i < single.Records.Count; i++)
        {
            double d = Math.Abs(single.Records[i].Loss - parallel.Records[i].Loss);
            Must.True(d <= tol, $"{what}: step {i + 1}: loss {parallel.Records[i].Loss:R} vs single device {single.Records[i].Loss:R} (|Δ| {d:E2} > {tol:E0})");
            SameLrs(single.Records[i], parallel.Records[i], $"{what}: step {i + 1}");
        }
        Must.True(single.Records[^1].Loss < single.Records[0].Loss, $"{what}: the loss did not fall ({single.Records[0].Loss} -> {single.Records[^1].Loss}), so the comparison proves little");
    }

    [Tests]
    public static Test Layouts => Spec.Sequenced(Spec.List("parallel.training",
        Spec.Case("TP 2 x DP 2 on 4 threads (llama3-tiny-tp) reproduces the single-device losses within 1e-5, LR bits equal", () =>
        {
            var single = Train(Options());
            CloseLosses(single, Train(Options(world: 4, tp: 2)), 1e-5, "TP2xDP2");
        }),
        Spec.Case("TP 2 + SP and TP 4 on GPT-2 (tied embedding, padded vocabulary) reproduce the single-device losses within 1e-5", () =>
        {
            var single = Train(Options(), "gpt2-tiny");
            CloseLosses(single, Train(Options(world: 2, tp: 2, sp: true), "gpt2-tiny"), 1e-5, "TP2+SP");
            CloseLosses(single, Train(Options(world: 4, tp: 4), "gpt2-tiny"), 1e-5, "TP4");
        }),
        Spec.Case("ZeRO-1 and ZeRO-2 reproduce ZeRO-0 bit for bit (TP 2 + SP x DP 2): losses, LRs, parameters", () =>
        {
            var z0 = Train(Options(world: 4, tp: 2, sp: true, zero: 0));
            SameBits(z0, Train(Options(world: 4, tp: 2, sp: true, zero: 1)), "ZeRO-1 vs ZeRO-0");
            SameBits(z0, Train(Options(world: 4, tp: 2, sp: true, zero: 2)), "ZeRO-2 vs ZeRO-0");
        }),
        Spec.Case("the same layout run twice is bit-identical (DP 4, ZeRO-2)", () =>
        {
            var o = Options(world: 4, zero: 2, steps: 3) with { TotalBatchSize = 4 * B * T * 2 };
            SameBits(Train(o), Train(o), "run twice");
        }),
        Spec.Case("ReduceLROnPlateau under TP 2 x DP 2 steps on the agreed loss: the LR sequence equals the single-device one", () =>
        {
            // patience 0 and a coarse threshold: the LR drops whenever the loss fails to fall by 5%, so it moves during the run.
            var plateau = new ReduceLROnPlateau(factor: 0.5, patience: 0, threshold: 0.05);
            var single = Train(Options(steps: 6, schedule: plateau));
            var tp = Train(Options(world: 4, tp: 2, steps: 6, schedule: plateau));
            Must.True(single.Records.Select(r => r.Lrs[0]).Distinct().Count() > 1, "the plateau schedule never moved the LR");
            CloseLosses(single, tp, 1e-5, "plateau TP2xDP2");
        })));

    [Tests]
    public static Test Checkpoints => Spec.Sequenced(Spec.List("parallel.training.checkpoints",
        Spec.Case("resume under the same layout (TP 2 + SP x DP 2, ZeRO-1) reproduces the uninterrupted run bit for bit", () =>
        {
            var dir = ResumeTests.TempDir("tp-resume");
            try
            {
                var o = Options(world: 4, tp: 2, sp: true, zero: 1, steps: 4);
                var full = Train(o);
                Train(o with { NumIterations = 2, SaveDir = dir, SaveInterval = 2 });
                var resumed = Train(o with { LoadDir = dir });
                var tail = new Result(full.Records.Skip(2).ToList(), full.FinalParams);
                SameBits(tail, resumed, "resumed vs uninterrupted");
                Must.True(Directory.EnumerateFiles(dir, "optimizer.bin", SearchOption.AllDirectories).Count() == 4, "ZeRO-1 writes one optimizer shard per rank");
                Must.True(Directory.EnumerateFiles(dir, "model.pt", SearchOption.AllDirectories).Count() == 2, "one model file per TP rank (DP replicas share it)");
            }
            finally { Directory.Delete(dir, true); }
        }),
        Spec.Case("a checkpoint of another layout is refused, naming both layouts; replicated layouts move between DP sizes", () =>
        {
            var dir = ResumeTests.TempDir("tp-layout");
            try
            {
                var o = Options(world: 2, tp: 2, steps: 2, schedule: new StepLR(2, 0.5));
                Train(o with { SaveDir = Path.Combine(dir, "tp"), SaveInterval = 2 });
                var e = Must.Throws<CheckpointException>(() => Train(o with { World = 2, TensorParallel = 1, NumIterations = 3, LoadDir = Path.Combine(dir, "tp") }), "TP 2 checkpoint under DP 2");
                Must.Contains(e.Message, "TP=2 DP=1", "the saved layout");
                Must.Contains(e.Message, "TP=1 DP=2", "this run's layout");
                var z = Options(world: 2, zero: 1, steps: 2, schedule: new StepLR(2, 0.5));
                Train(z with { SaveDir = Path.Combine(dir, "zero"), SaveInterval = 2 });
                Must.Throws<CheckpointException>(() => Train(z with { ZeroStage = 0, NumIterations = 3, LoadDir = Path.Combine(dir, "zero") }), "ZeRO-1 checkpoint under ZeRO-0");
                var dp = Options(world: 2, steps: 2, schedule: new StepLR(2, 0.5));
                Train(dp with { SaveDir = Path.Combine(dir, "dp"), SaveInterval = 2 });
                var moved = Train(dp with { World = 1, NumIterations = 3, LoadDir = Path.Combine(dir, "dp") });
                Must.Equal(moved.Records.Count, 1, "a DP 2 checkpoint resumes on one rank");
            }
            finally { Directory.Delete(dir, true); }
        })));

    [Tests]
    public static Test Guard => Spec.List("parallel.training.guard",
        Spec.Case("the LR guard names the rank, group and both values when one rank's optimizer holds another LR", () =>
        {
            var errors = new Exception?[3];
            ThreadCommunicator.Run(3, c =>
            {
                var groups = new InMemoryParamGroups(c.Rank == 2 ? new[] { 1e-3, 2e-3 } : new[] { 1e-3, Math.BitIncrement(2e-3) });
                try { LrConsensus.Check(c, groups, 7); } catch (LrMismatchException e) { errors[c.Rank] = e; }
            });
            foreach (var e in errors)
            {
                Must.True(e is not null, "every rank must fail (the check is collective)");
                Must.Contains(e!.Message, "step 7", "step");
                Must.Contains(e.Message, "rank 2", "the odd rank");
                Must.Contains(e.Message, "param group 1", "group");
            }
            // Equal bits pass.
            ThreadCommunicator.Run(3, c => LrConsensus.Check(c, new InMemoryParamGroups(new[] { 0.1 / 3 }), 1));
        }),
        Spec.Case("impossible layouts are usage errors naming the flags and numbers, before anything is built", () =>
        {
            (int, string, string) Run(params string[] args)
            {
                var o = new StringWriter(); var e = new StringWriter();
                return (TrainCommand.Run(args.Append("--noprogress").ToArray(), o, e), o.ToString(), e.ToString());
            }
            void Expect(string[] contains, params string[] args)
            {
                var (code, output, err) = Run(args);
                Must.Equal(code, 2, $"exit code for {string.Join(" ", args)} (stderr: {err})");
                Must.True(!output.Contains("step "), $"no step may run: {output}");
                foreach (var c in contains) Must.Contains(err, c, string.Join(" ", args));
            }
            Expect(new[] { "n_head 4", "--tensor_parallel=3" }, "--model=gpt2-tiny", "--nthread_per_process=3", "--tensor_parallel=3", "--total_batch_size=256", "--batch_size=4", "--sequence_length=64");
            Expect(new[] { "n_kv_head 2", "--tensor_parallel=4" }, "--model=llama3-tiny", "--nthread_per_process=4", "--tensor_parallel=4");
            Expect(new[] { "--sequence_parallel", "--tensor_parallel > 1" }, "--sequence_parallel");
            Expect(new[] { "--zero_stage=3", "not supported" }, "--zero_stage=3");
            Expect(new[] { "world size 3", "--tensor_parallel=2" }, "--nthread_per_process=3", "--tensor_parallel=2");
            Expect(new[] { "--sequence_length=30", "--tensor_parallel=4" }, "--model=gpt2-tiny", "--nthread_per_process=4", "--tensor_parallel=4", "--sequence_parallel", "--sequence_length=30", "--total_batch_size=120");
        }));
}
