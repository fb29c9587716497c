using Expecto;
using Tests.Harness;
using TorchSharp;
using Trainer.Training;
using static TorchSharp.torch;

namespace Tests.Training;

public static class DataParallelTests
{
    internal static TrainOptions Tiny(int dp, int steps = 4, int batch = 2, int seq = 8, int globalSeqs = 8) => new()
    {
        BatchSize = batch,
        SequenceLength = seq,
        TotalBatchSize = seq * globalSeqs,
        NumIterations = steps,
        World = dp,
        Optimizer = OptimizerKind.AdamW,
        LearningRate = 1e-2,
        WeightDecay = 0.01,
        GradClip = 1.0,
        ModelDescription = "tiny-lm v32 c16",
        NumThreads = 1,
    };

    static List<StepRecord> Run(TrainOptions o, Action<int, IReadOnlyList<nn.Module<Tensor, Tensor>>>? after = null)
    {
        var run = new TrainingRun(o, TinyLm.Factory(), TinyLm.Loss, TinyLm.Tokens(4000), TextWriter.Null) { AfterStep = after };
        return run.Run();
    }

    [Tests]
    public static Test All => Spec.Sequenced(Spec.List("training.data-parallel",
        Spec.Case("rank r reads the r-th slice of each global batch (DistributedDataLoader order)", () =>
        {
            var tokens = TinyLm.Tokens(1000);
            var one = new DistributedBatches(tokens, 8, 5, 1);
            var four = new DistributedBatches(tokens, 2, 5, 4);
            for (long g = 0; g < 3; g++)
            {
                var whole = one.Batch(g, 0);
                var parts = Enumerable.Range(0, 4).Select(r => four.Batch(g, r)).ToArray();
                var xs = parts.SelectMany(p => p.X).ToArray();
                var ys = parts.SelectMany(p => p.Y).ToArray();
                if (!xs.SequenceEqual(whole.X) || !ys.SequenceEqual(whole.Y)) throw new Exception($"global batch {g} differs");
            }
            var b = one.Batch(0, 0);
            if (b.X[0] != tokens[0] || b.Y[0] != tokens[1] || b.X[5] != tokens[5]) throw new Exception("sample layout is not x=tokens[iT..], y=x shifted by one");
        }),
        Spec.Case("DP=8 reproduces DP=1 with the same global batch (loss within 1e-5 every step, replicas identical)", () =>
        {
            var o1 = Tiny(1) with { TotalBatchSize = 2 * 8 * 8 };   // B=2, T=8: 8 accumulation steps
            var o8 = Tiny(8) with { TotalBatchSize = 2 * 8 * 8 };   // 8 ranks x 1 step
            if (o1.GradAccumulationSteps != 8 || o8.GradAccumulationSteps != 1) throw new Exception("accumulation arithmetic");
            var l1 = Run(o1);
            int checkedSteps = 0;
            var l8 = Run(o8, (step, reps) =>
            {
                var p0 = reps[0].parameters().ToArray();
                for (int r = 1; r < reps.Count; r++)
                {
                    var pr = reps[r].parameters().ToArray();
                    for (int i = 0; i < p0.Length; i++)
                        if (p0[i].ne(pr[i]).any().item<bool>()) throw new Exception($"step {step}: rank {r} parameter {i} differs from rank 0");
                }
                checkedSteps++;
            });
            if (checkedSteps != o8.NumIterations) throw new Exception("hook not called every step");
            for (int i = 0; i < l1.Count; i++)
            {
                double d = Math.Abs(l1[i].Loss - l8[i].Loss);
                if (d > 1e-5) throw new Exception($"step {i + 1}: DP=1 loss {l1[i].Loss:R} vs DP=8 loss {l8[i].Loss:R} (diff {d:E2})");
                if (l1[i].Lrs[0] != l8[i].Lrs[0]) throw new Exception($"step {i + 1}: lr differs");
            }
            if (!(l1[^1].Loss < l1[0].Loss)) throw new Exception($"loss did not fall: {l1[0].Loss} -> {l1[^1].Loss}");
        }),
        Spec.Case("DP=2 with 2 accumulation steps matches DP=1 with 4", () =>
        {
            var a = Run(Tiny(1, steps: 3) with { TotalBatchSize = 2 * 8 * 4 });
            var b = Run(Tiny(2, steps: 3) with { TotalBatchSize = 2 * 8 * 4 });
            for (int i = 0; i < a.Count; i++)
                if (Math.Abs(a[i].Loss - b[i].Loss) > 1e-5) throw new Exception($"step {i + 1}: {a[i].Loss:R} vs {b[i].Loss:R}");
        }),
        Spec.Case("total batch size not divisible by B x T x DP is refused", () =>
        {
            try { Run(Tiny(3) with { TotalBatchSize = 2 * 8 * 8 }); }
            catch (ArgumentException e) when (e.Message.Contains("total batch size 128") && e.Message.Contains("48")) { return; }
            throw new Exception("expected an ArgumentException naming the total batch size and B x T x DP");
        })));
}
