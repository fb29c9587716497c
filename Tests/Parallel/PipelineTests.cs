using Expecto;
using FsCheck;
using FsCheck.Fluent;
using Microsoft.FSharp.Core;
using Tests.Harness;
using Tests.Training;
using TorchSharp;
using Trainer.Cli;
using Trainer.Models;
using Trainer.Parallel;
using Trainer.Training;
using static TorchSharp.torch;

namespace Tests.Parallel;

/// <summary>
/// Pipeline parallelism: the schedules as pure task tables (no tensors), chunk assignment, stage gradients against
/// the unsplit model, whole training runs against the single-device run, and resuming a 3-D checkpoint.
/// </summary>
public static class PipelineTests
{
    [Tests]
    public static Test All => Spec.Sequenced(Spec.List("parallel.pipeline", Schedules(), Stages(), Training()));

    [Tests]
    public static Test CheckpointTests => Spec.Sequenced(Spec.List("parallel.checkpoint", Checkpoints()));

    // ---- task tables ----------------------------------------------------------------------------------------------

    static ulong Seed => ulong.TryParse(Environment.GetEnvironmentVariable("LR_PROPERTY_SEED"), out var s) ? s : 20_261_202;

    static void Check<T>(string name, int tests, Gen<T> gen, Action<T> property) =>
        FsCheck.Check.One(FsCheck.Config.QuickThrowOnFailure.WithMaxTest(tests).WithQuietOnSuccess(true).WithName(name)
            .WithReplay(FSharpOption<Replay>.Some(new Replay(new Rnd(Seed), FSharpOption<int>.None))), Prop.ForAll(Arb.From(gen), property));

    /// <summary>(kind, PP, VPP, micro-batches) that the kind supports.</summary>
    static Gen<(PipelineScheduleKind Kind, int Pp, int Vpp, int M)> Pipelines =>
        from kind in Gen.Elements(Enum.GetValues<PipelineScheduleKind>())
        from pp in Gen.Choose(1, 5)
        from vpp in Gen.Choose(1, 3)
        from m in Gen.Choose(1, 12)
        where PipelineSchedule.Unsupported(kind, pp, vpp, m) is null
        select (kind, pp, vpp, m);

    static string Show(IEnumerable<PipelineTask> ts) => string.Join(" ", ts);

    /// <summary>Every (micro-batch, chunk) runs forward once then backward once, on the chunk's stage.</summary>
    static void EachOnceInOrder(PipelineSchedule s)
    {
        for (int st = 0; st < s.Stages; st++)
        {
            var tasks = s.Tasks(st);
            foreach (var t in tasks)
                if (PipelineChunks.StageOf(t.Chunk, s.Stages) != st) throw new Exception($"stage {st} runs {t}, a chunk of another stage");
            for (int m = 0; m < s.MicroBatches; m++)
                for (int l = 0; l < s.VirtualStages; l++)
                {
                    int g = PipelineChunks.GlobalChunk(st, l, s.Stages);
                    var f = tasks.Select((t, i) => (t, i)).Where(x => x.t == new PipelineTask(m, g, true)).Select(x => x.i).ToArray();
                    var b = tasks.Select((t, i) => (t, i)).Where(x => x.t == new PipelineTask(m, g, false)).Select(x => x.i).ToArray();
                    if (f.Length != 1 || b.Length != 1) throw new Exception($"stage {st}: F(m{m},c{g}) {f.Length}x, B {b.Length}x: {Show(tasks)}");
                    if (f[0] > b[0]) throw new Exception($"stage {st}: backward of (m{m},c{g}) before its forward");
                }
            if (tasks.Count != 2 * s.MicroBatches * s.VirtualStages) throw new Exception($"stage {st}: {tasks.Count} tasks");
        }
    }

    /// <summary>
    /// Runs the tables as the trainer does — buffered sends, blocking receives — and fails on a deadlock: F(m,g) waits
    /// for F(m,g−1), B(m,g) for F(m,g) and B(m,g+1). Returns the order in which tasks completed.
    /// </summary>
    static List<PipelineTask> Simulate(PipelineSchedule s)
    {
        var done = new HashSet<PipelineTask>();
        var order = new List<PipelineTask>();
        var pos = new int[s.Stages];
        bool Ready(PipelineTask t) => t.Forward
            ? t.Chunk == 0 || done.Contains(new(t.MicroBatch, t.Chunk - 1, true))
            : done.Contains(new(t.MicroBatch, t.Chunk, true)) && (t.Chunk == s.Chunks - 1 || done.Contains(new(t.MicroBatch, t.Chunk + 1, false)));
        for (bool progress = true; progress;)
        {
            progress = false;
            for (int st = 0; st < s.Stages; st++)
                while (pos[st] < s.Tasks(st).Count && Ready(s.Tasks(st)[pos[st]]))
                {
                    var t = s.Tasks(st)[pos[st]++];
                    done.Add(t); order.Add(t); progress = true;
                }
        }
        for (int st = 0; st < s.Stages; st++)
            if (pos[st] < s.Tasks(st).Count)
                throw new Exception($"{PipelineSchedule.Name(s.Kind)} PP={s.Stages} VPP={s.VirtualStages} M={s.MicroBatches}: deadlock, stage {st} waits at {s.Tasks(st)[pos[st]]}");
        return order;
    }

    /// <summary>What each schedule promises: GPipe holds everything, 1F1B at most PP−s micro-batches on stage s,
    /// interleaved 1F1B its warm-up plus one chunk activations.</summary>
    static int InFlightLimit(PipelineSchedule s, int stage) => s.Kind switch
    {
        PipelineScheduleKind.GPipe => s.MicroBatches * s.VirtualStages,
        PipelineScheduleKind.OneFOneB => Math.Min(s.Stages - stage, s.MicroBatches),
        _ => s.MicroBatches == s.Stages ? s.MicroBatches * s.VirtualStages
            : Math.Min(s.MicroBatches * s.VirtualStages, (s.Stages - stage - 1) * 2 + (s.VirtualStages - 1) * s.Stages + 1),
    };

    static Test Schedules() => Spec.List("schedule",
        Spec.Case("every (micro-batch, chunk) forward once then backward once on its stage; the tables run without deadlock; in-flight within each schedule's bound (property)", () =>
            Check("pipeline tables", 300, Pipelines, p =>
            {
                var s = PipelineSchedule.Create(p.Kind, p.Pp, p.Vpp, p.M);
                EachOnceInOrder(s);
                Simulate(s);
                for (int st = 0; st < p.Pp; st++)
                    if (s.MaxInFlight(st) > InFlightLimit(s, st))
                        throw new Exception($"{p}: stage {st} holds {s.MaxInFlight(st)} activations, more than {InFlightLimit(s, st)}");
            })),
        Spec.Case("the simulator fails a table whose dependencies cannot be met (the last stage's first forward removed)", () =>
        {
            var ok = PipelineSchedule.Create(PipelineScheduleKind.GPipe, 2, 1, 2);
            Simulate(ok);
            bool threw = false;
            try { Simulate(Truncated(ok)); } catch (Exception e) when (e.Message.Contains("deadlock")) { threw = true; }
            if (!threw) throw new Exception("the simulator accepted a table with a missing forward");
        }),
        Spec.Case("1F1B, PP=4, 6 micro-batches: stage 1 warms up with 2 forwards, alternates, then drains", () =>
        {
            var s = PipelineSchedule.Create(PipelineScheduleKind.OneFOneB, 4, 1, 6);
            string want = "F(m0,c1) F(m1,c1) F(m2,c1) B(m0,c1) F(m3,c1) B(m1,c1) F(m4,c1) B(m2,c1) F(m5,c1) B(m3,c1) B(m4,c1) B(m5,c1)";
            if (Show(s.Tasks(1)) != want) throw new Exception($"got {Show(s.Tasks(1))}");
            if (Show(s.Tasks(3)) != "F(m0,c3) B(m0,c3) F(m1,c3) B(m1,c3) F(m2,c3) B(m2,c3) F(m3,c3) B(m3,c3) F(m4,c3) B(m4,c3) F(m5,c3) B(m5,c3)")
                throw new Exception($"last stage: {Show(s.Tasks(3))}");
        }),
        Spec.Case("interleaved 1F1B, PP=2, VPP=2, 4 micro-batches: Megatron's order (groups of PP micro-batches per chunk, warm-up (PP-s-1)*2+(VPP-1)*PP)", () =>
        {
            var s = PipelineSchedule.Create(PipelineScheduleKind.Interleaved1F1B, 2, 2, 4);
            string want0 = "F(m0,c0) F(m1,c0) F(m0,c2) F(m1,c2) F(m2,c0) B(m0,c2) F(m3,c0) B(m1,c2) F(m2,c2) B(m0,c0) F(m3,c2) B(m1,c0) B(m2,c2) B(m3,c2) B(m2,c0) B(m3,c0)";
            string want1 = "F(m0,c1) F(m1,c1) F(m0,c3) B(m0,c3) F(m1,c3) B(m1,c3) F(m2,c1) B(m0,c1) F(m3,c1) B(m1,c1) F(m2,c3) B(m2,c3) F(m3,c3) B(m3,c3) B(m2,c1) B(m3,c1)";
            if (Show(s.Tasks(0)) != want0) throw new Exception($"stage 0: {Show(s.Tasks(0))}");
            if (Show(s.Tasks(1)) != want1) throw new Exception($"stage 1: {Show(s.Tasks(1))}");
            if (s.MaxInFlight() >= PipelineSchedule.Create(PipelineScheduleKind.GPipe, 2, 2, 4).MaxInFlight())
                throw new Exception("interleaved holds no fewer activations than GPipe");
        }),
        Spec.Case("the default is the schedule with the fewest activations in flight; unsupported choices say why", () =>
        {
            void Expect(int pp, int vpp, int m, PipelineScheduleKind want)
            {
                var got = PipelineSchedule.Default(pp, vpp, m);
                if (got != want) throw new Exception($"PP={pp} VPP={vpp} M={m}: default {got}, expected {want}");
            }
            Expect(4, 1, 8, PipelineScheduleKind.OneFOneB);
            Expect(2, 1, 1, PipelineScheduleKind.OneFOneB);
            Expect(2, 2, 8, PipelineScheduleKind.Interleaved1F1B);
            Expect(2, 2, 3, PipelineScheduleKind.GPipe);   // interleaving needs M % PP == 0
            Check("default is minimal", 200, Pipelines, p =>
            {
                var d = PipelineSchedule.Create(PipelineSchedule.Default(p.Pp, p.Vpp, p.M), p.Pp, p.Vpp, p.M).MaxInFlight();
                if (d > PipelineSchedule.Create(p.Kind, p.Pp, p.Vpp, p.M).MaxInFlight()) throw new Exception($"{p}: the default holds more than {p.Kind}");
            });
            string Why(PipelineScheduleKind k, int pp, int vpp, int m) => PipelineSchedule.Unsupported(k, pp, vpp, m) ?? "";
            if (!Why(PipelineScheduleKind.OneFOneB, 2, 2, 4).Contains("--virtual_pipeline_parallel=2")) throw new Exception("1f1b with VPP");
            if (!Why(PipelineScheduleKind.Interleaved1F1B, 2, 2, 3).Contains("divisible by --pipeline_parallel=2")) throw new Exception("interleaved with M % PP");
            if (PipelineSchedule.Parse("Interleaved-1F1B") != PipelineScheduleKind.Interleaved1F1B || PipelineSchedule.Parse("zigzag") is not null) throw new Exception("Parse");
        }),
        Spec.Case("chunk layers: L mod chunks first chunks get one more (InfiniTrain); contiguous; chunk g on stage g mod PP (property)", () =>
        {
            var got = Enumerable.Range(0, 4).Select(g => PipelineChunks.Layers(10, 4, g)).ToArray();
            if (!got.SequenceEqual(new[] { (0, 3), (3, 3), (6, 2), (8, 2) })) throw new Exception($"L=10 over 4: {string.Join(" ", got)}");
            Check("chunk layers", 200, from n in Gen.Choose(1, 8) from extra in Gen.Choose(0, 20) select (Chunks: n, L: n + extra), c =>
            {
                int next = 0;
                for (int g = 0; g < c.Chunks; g++)
                {
                    var (start, count) = PipelineChunks.Layers(c.L, c.Chunks, g);
                    if (start != next || count != c.L / c.Chunks + (g < c.L % c.Chunks ? 1 : 0)) throw new Exception($"{c}: chunk {g} = ({start},{count})");
                    next += count;
                }
                if (next != c.L) throw new Exception($"{c}: chunks cover {next} layers");
            });
            if (PipelineChunks.StageOf(5, 2) != 1 || PipelineChunks.GlobalChunk(1, 2, 2) != 5) throw new Exception("interleaved assignment");
            try { PipelineChunks.Layers(3, 4, 0); throw new Exception("3 layers over 4 chunks accepted"); }
            catch (ArgumentException e) when (e.Message.Contains("4 model chunks need at least 4 layers")) { }
        }));

    /// <summary>The table without stage Stages−1's first forward (so nothing downstream of it can run).</summary>
    static PipelineSchedule Truncated(PipelineSchedule s)
    {
        var field = typeof(PipelineSchedule).GetField("_tasks", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!;
        var tasks = ((PipelineTask[][])field.GetValue(s)!).Select(t => t.ToArray()).ToArray();
        tasks[^1] = tasks[^1].Skip(1).ToArray();
        var copy = (PipelineSchedule)System.Runtime.CompilerServices.RuntimeHelpers.GetUninitializedObject(typeof(PipelineSchedule));
        foreach (var f in typeof(PipelineSchedule).GetFields(System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance))
            f.SetValue(copy, f == field ? tasks : f.GetValue(s));
        return copy;
    }

    // ---- stages against the unsplit model --------------------------------------------------------------------------

    /// <summary>Small models with 5 layers (uneven over 2 or 4 chunks) and a 64-token vocabulary: seconds per test.</summary>
    internal static readonly ModelConfig Gpt2Pp = ModelConfig.Gpt2("gpt2-pp-test", 5, 2, 16, blockSize: 16, vocabSize: 60, paddedVocabSize: 64);
    internal static readonly ModelConfig Llama3Pp = ModelConfig.Llama3("llama3-pp-test", 5, 4, 2, 16, 16, 64, 1.5f, 8);

    static Tensor Tokens(int n, long seed, int vocab) => randint(0, vocab, new long[] { n, 8 }, generator: torch.manual_seed(seed)).to(ScalarType.Int64);

    static void Close(Tensor got, Tensor want, string what, double rtol = 1e-5, double atol = 4e-5)
    {
        var g = got.to(ScalarType.Float64); var w = want.to(ScalarType.Float64);
        if (!g.shape.SequenceEqual(w.shape)) throw new Exception($"{what}: shape [{string.Join(",", g.shape)}] vs [{string.Join(",", w.shape)}]");
        var excess = ((g - w).abs() - (w.abs() * rtol + atol)).max().item<double>();
        if (excess > 0) throw new Exception($"{what}: off by {excess:E2} beyond rtol {rtol} + atol {atol}");
    }

    static Test Stages() => Spec.List("stage", new[] { Gpt2Pp, Llama3Pp }.SelectMany(cfg => new[] { (cfg, 2, 1), (cfg, 2, 2) }).Select(c =>
    {
        var (cfg, pp, vpp) = c;
        return Spec.Case($"{cfg.Kind} PP={pp} VPP={vpp} ({cfg.Name}, {cfg.NLayer} layers): every stage's gradients equal the unsplit model's (rtol 1e-5, atol 4e-5){(cfg.TiedEmbeddings ? "; both tied wte copies get the full wte gradient" : "")}", () =>
        {
            const int M = 4;
            torch.set_num_threads(1);
            using var full = ModelFactory.Create(cfg, 11, CPU, ScalarType.Float32);
            var batches = Enumerable.Range(0, M).Select(m => (X: Tokens(2, 100 + m, cfg.VocabSize), Y: Tokens(2, 200 + m, cfg.VocabSize))).ToArray();
            float fullLoss = 0f;
            foreach (var (x, y) in batches)
            {
                var loss = full.Loss(full.forward(x), y) / M;
                fullLoss += loss.item<float>();
                loss.backward();
            }
            var want = full.WeightFileOrder().ToDictionary(w => w.Name, w => w.Tensor.grad!);
            var schedule = PipelineSchedule.Create(PipelineSchedule.Default(pp, vpp, M), pp, vpp, M);
            var results = ThreadCommunicator.Run(pp, comm =>
            {
                using var tp = comm.Split(comm.Rank, 0);
                var stage = PipelineStageModel.FromFull(full, CPU, ScalarType.Float32, tp, false, comm.Rank, pp, vpp);
                float loss = new PipelineRunner(stage, comm).ForwardBackward(schedule, m => batches[m]);
                stage.AllReduceTiedEmbeddingGrads(comm);
                var grads = stage.Chunks.SelectMany(ch => ch.Shards()).Select(s => (s.Name, Grad: s.Tensor.grad!.detach().clone())).ToList();
                var layers = stage.Chunks.Select(ch => ch.Part).ToList();
                return (loss, grads, layers);
            }, TimeSpan.FromMinutes(2));
            if (Math.Abs(results[^1].loss - fullLoss) > 1e-5) throw new Exception($"last stage loss {results[^1].loss} vs unsplit {fullLoss}");
            var seen = new HashSet<string>();
            foreach (var (_, grads, _) in results)
                foreach (var (name, grad) in grads)
                {
                    string fullName = name == TensorParallelGpt2.TiedHeadName ? "wte" : name;
                    Close(grad, want[fullName], $"{name} on stage {results.ToList().FindIndex(r => r.grads.Any(g => g.Name == name))}");
                    seen.Add(name);
                }
            var missing = want.Keys.Where(k => !seen.Contains(k)).ToList();
            if (missing.Count > 0) throw new Exception($"no stage holds {string.Join(", ", missing)}");
            if (cfg.TiedEmbeddings != seen.Contains(TensorParallelGpt2.TiedHeadName)) throw new Exception("tied head copy presence");
            var counts = results.SelectMany(r => r.layers).OrderBy(p => p.Start).Select(p => p.Count).ToArray();
            var expected = Enumerable.Range(0, pp * vpp).Select(g => PipelineChunks.Layers(cfg.NLayer, pp * vpp, g).Count).ToArray();
            if (!counts.SequenceEqual(expected)) throw new Exception($"chunk layers {string.Join(",", counts)}, expected {string.Join(",", expected)}");
        });
    }));

    // ---- training runs -------------------------------------------------------------------------------------------

    static TrainOptions Options(ModelConfig cfg, int world, int batch, int globalSeqs, int steps = 3) => new()
    {
        BatchSize = batch, SequenceLength = 8, TotalBatchSize = 8 * globalSeqs, NumIterations = steps, World = world,
        Optimizer = OptimizerKind.AdamW, LearningRate = 1e-2, WeightDecay = 0.01, GradClip = 0.5, NumThreads = 1,
        ModelDescription = cfg.ToString(),
        Schedule = global::Schedules.Core.ScheduleJson.Parse("""{"type":"CosineAnnealingLR","T_max":4,"eta_min":0.001}"""),
    };

    static int[] TrainTokens => TinyLm.Tokens(3000, vocab: 60);

    static List<StepRecord> Train(ModelConfig cfg, TrainOptions o, Action<int, IReadOnlyList<nn.Module<Tensor, Tensor>>>? after = null)
    {
        var binding = new ModelBinding { Config = cfg, Name = cfg.Name, Seed = 5, BFloat16 = o.BFloat16 };
        var run = new TrainingRun(o, binding.RankFactory, null, TrainTokens, TextWriter.Null) { AfterStep = after };
        return run.Run();
    }

    static void SameRun(List<StepRecord> want, List<StepRecord> got, double tol, string what)
    {
        if (want.Count != got.Count) throw new Exception($"{what}: {got.Count} steps, expected {want.Count}");
        for (int i = 0; i < want.Count; i++)
        {
            double d = Math.Abs(want[i].Loss - got[i].Loss);
            if (!(d <= tol)) throw new Exception($"{what}: step {want[i].Step} loss {got[i].Loss:R} vs {want[i].Loss:R} (diff {d:E2} > {tol})");
            if (!want[i].Lrs.SequenceEqual(got[i].Lrs)) throw new Exception($"{what}: step {want[i].Step} LR {got[i].Lrs[0]:R} vs {want[i].Lrs[0]:R}");
        }
        if (!(want[^1].Loss < want[0].Loss)) throw new Exception($"{what}: the loss did not fall ({want[0].Loss} -> {want[^1].Loss})");
    }

    /// <summary>On every step, GPT-2's wte on the first stage and the head's copy on the last are the same bits.</summary>
    static Action<int, IReadOnlyList<nn.Module<Tensor, Tensor>>> TiedStaysTied(ParallelLayout l) => (step, models) =>
    {
        for (int tp = 0; tp < l.Tp; tp++)
            for (int dp = 0; dp < l.Dp; dp++)
            {
                var first = (PipelineStageModel)models[l.RankOf(tp, dp, 0)];
                var last = (PipelineStageModel)models[l.RankOf(tp, dp, l.Pp - 1)];
                var wte = first.Chunks[0].TiedEmbedding!;
                var copy = last.TiedHeadCopy!;
                if (wte.ne(copy).any().item<bool>()) throw new Exception($"step {step}: tp {tp} dp {dp}: the last stage's tied head differs from wte");
            }
    };

    static Test Training() => Spec.List("training",
        new[] { Gpt2Pp, Llama3Pp }.Select(cfg => Spec.Case($"{cfg.Kind} PP=2 (1F1B) equals the single-device run within 1e-5, LR bit-identical{(cfg.TiedEmbeddings ? ", wte stays tied across the first and last stage" : "")}", () =>
        {
            var single = Train(cfg, Options(cfg, 1, 2, 8));
            var o = Options(cfg, 2, 2, 8) with { PipelineParallel = 2 };
            var pp = Train(cfg, o, cfg.TiedEmbeddings ? TiedStaysTied(o.Layout) : null);
            SameRun(single, pp, 1e-5, "PP=2");
        })).Concat(new[]
        {
            Spec.Case("GPT2 3-D: TP=2 + SP x PP=2 x VPP=2 x DP=2, ZeRO-1, interleaved 1F1B, equals the single-device run within 1e-5", () =>
            {
                var single = Train(Gpt2Pp, Options(Gpt2Pp, 1, 2, 8));
                var o = Options(Gpt2Pp, 8, 2, 8) with { TensorParallel = 2, SequenceParallel = true, PipelineParallel = 2, VirtualPipelineParallel = 2, ZeroStage = 1 };
                SameRun(single, Train(Gpt2Pp, o, TiedStaysTied(o.Layout)), 1e-5, "3-D");
            }),
            Spec.Case("validation (forward only) under TP=2 + SP x PP=2 x VPP=2: the single-device validation losses within 1e-5", () =>
            {
                float[] ValLosses(TrainOptions o)
                {
                    var log = new StringWriter();
                    var binding = new ModelBinding { Config = Gpt2Pp, Name = Gpt2Pp.Name, Seed = 5, BFloat16 = false };
                    new TrainingRun(o, binding.RankFactory, null, TrainTokens, log) { Validation = new ValidationSet(TinyLm.Tokens(600, vocab: 60), Every: 1, MaxBatches: 3) }.Run();
                    return log.ToString().Split('\n').Where(l => l.Contains("| val loss ")).Select(l => float.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
                }
                var single = ValLosses(Options(Gpt2Pp, 1, 2, 8));
                var pp = ValLosses(Options(Gpt2Pp, 4, 2, 8) with { TensorParallel = 2, SequenceParallel = true, PipelineParallel = 2, VirtualPipelineParallel = 2 });
                if (single.Length != 3 || pp.Length != 3) throw new Exception($"validation losses: {single.Length} single-device, {pp.Length} pipeline (3 steps)");
                for (int i = 0; i < 3; i++)
                    if (!(Math.Abs(single[i] - pp[i]) <= 1e-5)) throw new Exception($"step {i + 1}: val loss {pp[i]:R} vs {single[i]:R}");
            }),
            Spec.Case("LLAMA3 PP=2 x VPP=2, GPipe, bfloat16: within 1e-2 of the single-device bfloat16 run", () =>
            {
                var single = Train(Llama3Pp, Options(Llama3Pp, 1, 2, 8) with { BFloat16 = true });
                var o = Options(Llama3Pp, 2, 2, 8) with { BFloat16 = true, PipelineParallel = 2, VirtualPipelineParallel = 2, PipelineSchedule = PipelineScheduleKind.GPipe };
                SameRun(single, Train(Llama3Pp, o), 1e-2, "PP bf16");
            }),
        }));

    // ---- checkpoints ----------------------------------------------------------------------------------------------

    static Test[] Checkpoints() => new[]
    {
        Spec.Case("3-D (TP=2 + SP x PP=2 x VPP=2 x DP=2, ZeRO-1): resume from step 2 under the same layout is bit-identical to the uninterrupted run", () =>
        {
            string dir = Path.Combine(Path.GetTempPath(), "pp-ckpt-" + Guid.NewGuid().ToString("N"));
            try
            {
                var o = Options(Gpt2Pp, 8, 2, 8, steps: 4) with { TensorParallel = 2, SequenceParallel = true, PipelineParallel = 2, VirtualPipelineParallel = 2, ZeroStage = 1 };
                var whole = Train(Gpt2Pp, o with { SaveDir = dir, SaveInterval = 2, KeepLast = 0 });
                var resumed = Train(Gpt2Pp, o with { LoadDir = Path.Combine(dir, "checkpoint_step_000002") });
                if (resumed.Count != 2 || resumed[0].Step != 3) throw new Exception($"resumed run ran steps {string.Join(",", resumed.Select(r => r.Step))}");
                for (int i = 0; i < 2; i++)
                    if (BitConverter.SingleToInt32Bits(resumed[i].Loss) != BitConverter.SingleToInt32Bits(whole[i + 2].Loss) || !resumed[i].Lrs.SequenceEqual(whole[i + 2].Lrs))
                        throw new Exception($"step {i + 3}: resumed loss {resumed[i].Loss:R} / LR {resumed[i].Lrs[0]:R} vs {whole[i + 2].Loss:R} / {whole[i + 2].Lrs[0]:R}");
                if (!Directory.Exists(Path.Combine(dir, "checkpoint_step_000002", "rank_000007"))) throw new Exception("no rank_000007 (ZeRO-1 optimizer shard of the last rank)");
            }
            finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
        }),
        CrossLayout("a 3-D checkpoint (TP=2 + SP x PP=2 x VPP=2 x DP=2, ZeRO-1) resumes on one device", Gpt2Pp,
            o => o with { World = 8, TensorParallel = 2, SequenceParallel = true, PipelineParallel = 2, VirtualPipelineParallel = 2, ZeroStage = 1 },
            o => o with { World = 1 }),
        CrossLayout("a DP=4 ZeRO-2 checkpoint resumes under TP=2 x PP=2 (ZeRO-0)", Llama3Pp,
            o => o with { World = 4, ZeroStage = 2 },
            o => o with { World = 4, TensorParallel = 2, PipelineParallel = 2 }),
        CrossLayout("a PP=2 x DP=2 ZeRO-1 bfloat16 checkpoint resumes under PP=4 (fp32 main parameters carried)", Gpt2Pp,
            o => o with { World = 4, PipelineParallel = 2, ZeroStage = 1, BFloat16 = true },
            o => o with { World = 4, PipelineParallel = 4, BFloat16 = true }, tol: 1e-2),
    };

    /// <summary>Saves at step 2 of 4 under one layout, resumes under another: steps 3-4 track the uninterrupted
    /// run (loss within <paramref name="tol"/>, LR bit-identical), which a fresh optimizer state would not.</summary>
    static Test CrossLayout(string name, ModelConfig cfg, Func<TrainOptions, TrainOptions> saveLayout, Func<TrainOptions, TrainOptions> resumeLayout, double tol = 1e-5) =>
        Spec.Case(name + $" ({cfg.Kind}): steps 3-4 within {tol:0e0} of the uninterrupted run, LR bit-identical", () =>
        {
            string dir = Path.Combine(Path.GetTempPath(), "pp-xlayout-" + Guid.NewGuid().ToString("N"));
            try
            {
                var o = Options(cfg, 1, 2, 8, steps: 4) with { LearningRate = 3e-2 };
                var whole = Train(cfg, saveLayout(o) with { SaveDir = dir, SaveInterval = 2, KeepLast = 0 });
                var resumed = Train(cfg, resumeLayout(o) with { LoadDir = Path.Combine(dir, "checkpoint_step_000002") });
                if (resumed.Count != 2 || resumed[0].Step != 3) throw new Exception($"resumed run ran steps {string.Join(",", resumed.Select(r => r.Step))}");
                for (int i = 0; i < 2; i++)
                {
                    double d = Math.Abs(resumed[i].Loss - whole[i + 2].Loss);
                    if (!(d <= tol) || !resumed[i].Lrs.SequenceEqual(whole[i + 2].Lrs))
                        throw new Exception($"step {i + 3}: resumed loss {resumed[i].Loss:R} / LR {resumed[i].Lrs[0]:R} vs {whole[i + 2].Loss:R} / {whole[i + 2].Lrs[0]:R} (diff {d:E2})");
                }
            }
            finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
        });
}
