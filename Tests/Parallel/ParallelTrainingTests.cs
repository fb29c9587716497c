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

    static void CloseLossesNoTrend(Result expected, Result actual, double tol, string what)
    {
        for (int i = 0; i < expected.Records.Count; i++)
        {
            double d = Math.Abs(expected.Records[i].Loss - actual.Records[i].Loss);
            Must.True(d <= tol, $"{what}: step {expected.Records[i].Step}: loss {actual.Records[i].Loss:R} vs {expected.Records[i].Loss:R} (|Δ| {d:E2})");
            SameLrs(expected.Records[i], actual.Records[i], $"{what}: step {expected.Records[i].Step}");
        }
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
        Spec.Case("a checkpoint moves between layouts: TP 2 -> DP 2 and ZeRO-1 -> ZeRO-0 continue the run within 1e-5, LR bits equal", () =>
        {
            var dir = ResumeTests.TempDir("tp-layout");
            try
            {
                void Moves(TrainOptions src, TrainOptions dst, string name)
                {
                    var full = Train(src with { NumIterations = 3 });
                    Train(src with { NumIterations = 2, SaveDir = Path.Combine(dir, name), SaveInterval = 2 });
                    var moved = Train(dst with { NumIterations = 3, LoadDir = Path.Combine(dir, name) });
                    Must.Equal(moved.Records.Count, 1, $"{name}: the resumed run continues at step 3");
                    var tail = new Result(full.Records.Skip(2).ToList(), full.FinalParams);
                    CloseLossesNoTrend(tail, moved, 1e-5, name);
                }
                var s = new StepLR(2, 0.5);
                Moves(Options(world: 2, tp: 2, schedule: s), Options(world: 2, schedule: s), "tp2-to-dp2");
                Moves(Options(world: 2, zero: 1, schedule: s), Options(world: 2, zero: 0, schedule: s), "zero1-to-zero0");
                Moves(Options(world: 2, schedule: s), Options(world: 1, schedule: s), "dp2-to-single");
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
