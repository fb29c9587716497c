using Expecto;
using Schedules.Core;
using Tests.Harness;
using TorchSharp;
using TorchSharp.Modules;
using Trainer.Checkpoint;
using Trainer.Cli;
using Trainer.Data;
using Trainer.Lora;
using Trainer.Models;
using Trainer.Parallel;
using Trainer.Training;
using static TorchSharp.torch;

namespace Tests.Lora;

/// <summary>
/// LoRA (issue 10): the adapted layer's arithmetic, tensor/sequence-parallel adapters against the single-device ones
/// (loss, adapter gradients, the count-once gradient norm), the trainer in every layout against the single-device
/// LoRA run with the base frozen bit for bit and only adapter state in the optimizer, exact resume, adapter files,
/// merging, and the flags' usage errors.
/// </summary>
public static class LoraTests
{
    static readonly ModelConfig Gpt2L = ModelConfig.Gpt2("gpt2-lora-test", nLayer: 2, nHead: 4, nEmbd: 32, blockSize: 16, vocabSize: 250, paddedVocabSize: 256);
    static readonly ModelConfig LlamaL = ModelConfig.Llama3("llama3-lora-test", nLayer: 2, nHead: 8, nKvHead: 4, nEmbd: 32, blockSize: 16, vocabSize: 250, ffnDimMultiplier: 1.5f, multipleOf: 16);

    static LoraConfig Cfg(ModelConfig m, int rank = 4, double alpha = 8) =>
        new(rank, alpha, LoraConfig.ParseTargets(LoraConfig.DefaultTargets(m.Kind) + ",c_fc"));

    /// <summary>Seeded adapters with a non-zero B (a fresh B is zero, which would hide every error in B's path).</summary>
    static LoraWeights Adapters(ModelConfig m, LoraConfig cfg, long seed = 5)
    {
        var w = LoraWeights.Init(m, cfg, seed);
        using var g = new Generator((ulong)seed + 17);
        using var _ = no_grad();
        foreach (var (_, _, b) in w.Layers) b.copy_(randn(b.shape, generator: g) * 0.05);
        return w;
    }

    static double MaxDiff(Tensor a, Tensor b)
    {
        Must.True(a.shape.SequenceEqual(b.shape), $"shape [{string.Join(",", a.shape)}] vs [{string.Join(",", b.shape)}]");
        using var _ = no_grad();
        return (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();
    }

    static (Tensor X, Tensor Y) Batch(int vocab, long b = 2, long t = 8, int seed = 9)
    {
        using var g = new Generator((ulong)seed);
        var all = randint(0, vocab, new long[] { b, t + 1 }, generator: g);
        return (all.narrow(1, 0, t).contiguous(), all.narrow(1, 1, t).contiguous());
    }

    // ------------------------------------------------------------------------------------------------ layers

    static Test Layers() => Spec.List("layer",
        Spec.Case("an adapted Linear computes x (W + alpha/r · B A)ᵀ + b (float64, explicit matrices)", () =>
        {
            using var model = ModelFactory.Create(Gpt2L, 1, CPU, ScalarType.Float64);
            var cfg = Cfg(Gpt2L);
            using var w = Adapters(Gpt2L, cfg);
            LoraModel.Attach(model, w);
            foreach (var name in new[] { "h.1.attn.c_attn", "h.0.attn.c_proj", "h.1.mlp.c_fc", "h.0.mlp.c_proj" })
            {
                var lin = (Linear)model.named_modules().First(m => m.name == name).module;
                var (_, a, b) = w.Layers.First(l => l.Layer.Name == name);
                using var g = new Generator(4);
                var x = randn(new long[] { 2, 5, lin.weight!.shape[1] }, dtype: ScalarType.Float64, generator: g);
                var explicitW = lin.weight!.detach() + cfg.Scale * b.to(ScalarType.Float64).matmul(a.to(ScalarType.Float64));
                var expect = x.matmul(explicitW.t()) + lin.bias!.detach();
                using var _ = no_grad();
                double d = MaxDiff(lin.call(x), expect);
                Must.True(d < 1e-12, $"{name}: adapted output differs from the explicit product by {d:E2}");
                Must.True(MaxDiff(lin.forward(x), expect) > 1e-4, $"{name}: the adapter made no difference (B is non-zero)");
            }
        }),
        Spec.Case("A is kaiming-uniform(a=√5): within ±1/√in, spread over it, the same on every call; B zero; targets by suffix", () =>
        {
            var cfg = new LoraConfig(4, 16, LoraConfig.ParseTargets(LoraConfig.DefaultGpt2Targets));
            using var w1 = LoraWeights.Init(Gpt2L, cfg, 42);
            using var w2 = LoraWeights.Init(Gpt2L, cfg, 42);
            using var w3 = LoraWeights.Init(Gpt2L, cfg, 43);
            Must.Equal(string.Join(" ", w1.Layers.Select(l => l.Layer.Name)), "h.0.attn.c_attn h.1.attn.c_attn h.0.attn.c_proj h.1.attn.c_proj h.0.mlp.c_proj h.1.mlp.c_proj",
                "c_attn,c_proj selects both c_proj layers, in weight-file order");
            for (int i = 0; i < w1.Layers.Count; i++)
            {
                var (l, a, b) = w1.Layers[i];
                double bound = 1 / Math.Sqrt(l.In), max = a.abs().max().item<float>();
                Must.True(max <= bound * (1 + 1e-6) && max > 0.9 * bound, $"{l.Name}: max |A| {max} vs bound {bound}");
                Must.True(MaxDiff(a, w2.Layers[i].A) == 0, $"{l.Name}: A differs between two inits with the same seed");
                Must.True(MaxDiff(a, w3.Layers[i].A) > 0, $"{l.Name}: A does not depend on the seed");
                Must.True(b.abs().max().item<float>() == 0, $"{l.Name}: B is not zero");
            }
            Must.True(Math.Abs(LoraWeights.KaimingBound(64) - 0.125) < 1e-15, "bound for fan-in 64");
        }),
        Spec.Case("base frozen: only adapters require grad and get gradients; dropout acts in training only", () =>
        {
            using var model = ModelFactory.Create(LlamaL, 1, CPU, ScalarType.Float32);
            using var w = Adapters(LlamaL, Cfg(LlamaL) with { Dropout = 0.5 });
            var adapters = LoraModel.Attach(model, w);
            var trainable = model.parameters().Where(p => p.requires_grad).ToList();
            Must.Equal(trainable.Count, 2 * adapters.Count, "trainable parameters = A and B of every adapter");
            var (x, y) = Batch(250);
            model.train();
            model.Loss(model.forward(x), y).backward();
            foreach (var (name, t) in model.WeightFileOrder())
                Must.True(t.grad is null && !t.requires_grad, $"base weight {name} got a gradient");
            Must.True(adapters.All(a => a.lora_A.grad is not null && a.lora_B.grad is not null), "every adapter has gradients");
            using var _ = no_grad();
            var t1 = model.forward(x); var t2 = model.forward(x);
            Must.True(MaxDiff(t1, t2) > 0, "dropout 0.5 in training mode: two forwards should differ");
            model.eval();
            Must.True(MaxDiff(model.forward(x), model.forward(x)) == 0, "eval mode: no dropout");
        }));

    // ------------------------------------------------------------------------------------------------ TP

    sealed record Result(double Loss, Dictionary<string, Tensor> Grads, double GradSq);

    static Dictionary<string, Tensor> AdapterGrads(CausalLm m, bool gather)
    {
        var d = new Dictionary<string, Tensor>();
        foreach (var ad in m.LoraAdapters)
            foreach (var (name, t, spec) in ad.Shards())
            {
                var g = t.grad!.detach();
                d[name] = gather && spec is not null ? spec.Gather(g, ((TensorParallelLm)m).Tp) : g.clone();
            }
        return d;
    }

    static Test TensorParallel() => Spec.List("tensor-parallel",
        from cfg in new[] { Gpt2L, LlamaL }
        from tp in new[] { 2, 4 }
        from sp in new[] { false, true }
        select Spec.Case($"{cfg.Kind} TP={tp}{(sp ? "+SP" : "")}: loss, every adapter gradient and the grad norm equal the single-device LoRA model's", () =>
        {
            var lora = Cfg(cfg);
            using var w = Adapters(cfg, lora);
            var (x, y) = Batch(cfg.VocabSize);
            using var full = ModelFactory.Create(cfg, 5, CPU, ScalarType.Float32);
            Result single;
            using (var one = ModelFactory.Create(cfg, 5, CPU, ScalarType.Float32))
            {
                LoraModel.Attach(one, w);
                var loss = one.Loss(one.forward(x), y);
                loss.backward();
                var grads = AdapterGrads(one, gather: false);
                single = new Result(loss.item<float>(), grads, grads.Values.Sum(g => g.to(ScalarType.Float64).pow(2).sum().item<double>()));
            }
            var ranks = ThreadCommunicator.Run(tp, comm =>
            {
                using var shard = TensorParallelModels.FromFull(full, CPU, ScalarType.Float32, comm, sp);
                LoraModel.Attach(shard, w);
                var loss = shard.Loss(shard.forward(x), y);
                loss.backward();
                shard.AllReduceSequenceParallelGrads();
                Must.True(shard.WeightFileOrder().All(p => p.Tensor.grad is null), "a frozen base weight got a gradient");
                return new Result(loss.item<float>(), AdapterGrads(shard, gather: true), shard.GradSquaredNorm());
            }, TimeSpan.FromMinutes(2));
            foreach (var (r, res) in ranks.Select((res, r) => (r, res)))
            {
                Must.True(Math.Abs(res.Loss - single.Loss) <= 1e-5, $"rank {r}: loss {res.Loss:R} vs single {single.Loss:R}");
                foreach (var (name, g) in single.Grads)
                {
                    double d = MaxDiff(res.Grads[name], g);
                    Must.True(d <= 1e-6, $"rank {r}: grad of {name} differs by {d:E2}");
                }
                Must.True(Math.Abs(res.GradSq - single.GradSq) <= 1e-5 * single.GradSq, $"rank {r}: Σgrad² {res.GradSq:R} vs single {single.GradSq:R} (replicated adapter parts counted once)");
            }
            Must.True(single.GradSq > 0, "the adapters got no gradient");
        }));

    // ------------------------------------------------------------------------------------------------ trainer

    static int[] Tokens(int count = 6000, int vocab = 250)
    {
        var rng = new Random(3);
        return Enumerable.Range(0, count).Select(i => rng.NextDouble() < 0.2 ? rng.Next(vocab) : (i * 7 + i / 5) % vocab).ToArray();
    }

    static ModelBinding Binding(ModelConfig cfg, LoraConfig lora, string? load = null) =>
        new() { Config = cfg, Name = cfg.Name, Seed = 11, BFloat16 = false, Lora = lora, LoraLoadPath = load };

    static TrainOptions Options(ModelBinding b, int world = 1, int tp = 1, bool sp = false, int zero = 0, int steps = 3, int pp = 1, int vpp = 1) => new()
    {
        BatchSize = 2, SequenceLength = 8, TotalBatchSize = 2 * 8 * 4, NumIterations = steps, World = world,
        TensorParallel = tp, SequenceParallel = sp, ZeroStage = zero, PipelineParallel = pp, VirtualPipelineParallel = vpp,
        Optimizer = OptimizerKind.AdamW, LearningRate = 2e-2, WeightDecay = 0.01, GradClip = 1.0,
        Schedule = new StepLR(1, 0.5), ModelDescription = b.Description, Seed = b.Seed, NumThreads = 1, Lora = b.Lora,
    };

    /// <param name="Adapters">After the last step: every adapter matrix (h.0.attn.c_attn.lora_A, …) joined from the
    /// ranks' model parts by hand (TP slices unsliced, pipeline chunks put together), float32.</param>
    sealed record Trained(List<StepRecord> Steps, string Log, long AdapterElementsPerRank, bool BaseUnchanged, int TrainableNotAdapters, bool AdaptersMoved,
        Dictionary<string, Tensor> Adapters);

    /// <summary>A rank's model parts: its pipeline chunks, or the model itself.</summary>
    static IReadOnlyList<CausalLm> Parts(nn.Module<Tensor, Tensor> model) =>
        model is PipelineStageModel stage ? stage.Chunks : new[] { (CausalLm)model };

    /// <summary>Runs the trainer; after the last step checks every rank's base weights against the initial model
    /// (the rank's slice of it under TP, its chunks' layers under PP), bit for bit.</summary>
    static Trained Train(ModelBinding b, TrainOptions o)
    {
        var log = new StringWriter();
        var run = new TrainingRun(o, b.RankFactory, null, Tokens(), log);
        long perRank = 0; bool unchanged = true, moved = false; int stray = 0;
        using var initial = ModelFactory.Create(b.Config, b.Seed, CPU, ScalarType.Float32);
        var init = initial.WeightFileOrder().ToDictionary(p => p.Name, p => p.Tensor);
        init[TensorParallelGpt2.TiedHeadName] = init["wte"];   // the last stage's copy of the tied embedding
        var pieces = new Dictionary<string, (ShardSpec? Spec, Tensor[] Parts)>();
        run.AfterStep = (step, models) =>
        {
            if (step != o.NumIterations) return;
            foreach (var model in models)
            {
                var parts = Parts(model);
                var adapters = parts.SelectMany(m => m.LoraAdapters).ToList();
                perRank = Math.Max(perRank, adapters.Sum(a => a.lora_A.numel() + a.lora_B.numel()));
                moved |= adapters.Any(a => a.lora_B.abs().max().item<float>() > 0);
                var adapterHandles = adapters.SelectMany(a => new[] { a.lora_A.Handle, a.lora_B.Handle }).ToHashSet();
                stray += model.parameters().Count(p => p.requires_grad && !adapterHandles.Contains(p.Handle));
                foreach (var m in parts)
                {
                    var shards = m is TensorParallelLm t ? t.Shards().Select(s => (s.Name, s.Tensor, Expect: s.Spec is null ? init[s.Name] : s.Spec.Slice(init[s.Name], t.Tp.Rank, t.Tp.Size)))
                        : m.WeightFileOrder().Select(s => (s.Name, s.Tensor, Expect: init[s.Name]));
                    foreach (var (_, tensor, expect) in shards) unchanged &= tensor.shape.SequenceEqual(expect.shape) && tensor.eq(expect).all().item<bool>();
                    var (tpRank, tpSize) = m is TensorParallelLm tpm ? (tpm.Tp.Rank, tpm.Tp.Size) : (0, 1);
                    foreach (var (name, tensor, spec) in m.LoraAdapters.SelectMany(a => a.Shards()))
                    {
                        if (!pieces.TryGetValue(name, out var e)) pieces[name] = e = (spec, new Tensor[tpSize]);
                        e.Parts[tpRank] = tensor.detach().to(ScalarType.Float32).clone();
                    }
                }
            }
        };
        var steps = run.Run();
        var joined = pieces.ToDictionary(kv => kv.Key, kv => kv.Value.Spec is null ? kv.Value.Parts[0] : kv.Value.Spec.Unslice(kv.Value.Parts));
        return new Trained(steps, log.ToString(), perRank, unchanged, stray, moved, joined);
    }

    static long StateBytes(string log)
    {
        var line = log.Split('\n').Last(l => l.StartsWith("optimizer state: "));
        return long.Parse(line.Split(' ')[2]);
    }

    static Test Trainer() => Spec.List("trainer",
        Spec.Case("every layout equals the single-device LoRA run (GPT-2 and LLaMA-3: loss ≤ 1e-5, LR bit-identical); base bit-identical; only adapter state", () =>
        {
            foreach (var cfg in new[] { Gpt2L, LlamaL })
            {
                var b = Binding(cfg, Cfg(cfg));
                var single = Train(b, Options(b));
                Must.True(single.AdaptersMoved, $"{cfg.Kind}: the adapters did not move (B is still zero)");
                var layouts = new (string Name, TrainOptions O)[]
                {
                    ("single", Options(b)), ("DP=4", Options(b, world: 4)), ("TP=2", Options(b, world: 2, tp: 2)), ("TP=4+SP", Options(b, world: 4, tp: 4, sp: true)),
                    ("TP=2 DP=2 ZeRO-1", Options(b, world: 4, tp: 2, zero: 1)), ("DP=2 ZeRO-2", Options(b, world: 2, zero: 2)),
                    ("PP=2", Options(b, world: 2, pp: 2)), ("TP=2+SP PP=2", Options(b, world: 4, tp: 2, sp: true, pp: 2)),
                    ("PP=2 DP=2 ZeRO-1", Options(b, world: 4, pp: 2, zero: 1)),
                };
                foreach (var (name, o) in layouts)
                {
                    var r = name == "single" ? single : Train(b, o);
                    for (int i = 0; i < r.Steps.Count; i++)
                    {
                        double d = Math.Abs(r.Steps[i].Loss - single.Steps[i].Loss);
                        Must.True(d <= 1e-5, $"{cfg.Kind} {name}: step {i + 1} loss {r.Steps[i].Loss:R} vs single {single.Steps[i].Loss:R}");
                        Must.True(r.Steps[i].Lrs.SequenceEqual(single.Steps[i].Lrs), $"{cfg.Kind} {name}: step {i + 1} LR differs");
                    }
                    Must.True(r.Steps.Select(s => s.Lrs[0]).Distinct().Count() == r.Steps.Count, $"{cfg.Kind} {name}: the schedule did not drive the adapters' LR");
                    Must.Equal(string.Join(" ", r.Adapters.Keys.Order()), string.Join(" ", single.Adapters.Keys.Order()), $"{cfg.Kind} {name}: the adapters the ranks hold together");
                    Must.True(r.BaseUnchanged, $"{cfg.Kind} {name}: a base weight moved during LoRA training");
                    Must.Equal(r.TrainableNotAdapters, 0, $"{cfg.Kind} {name}: trainable parameters that are not adapters");
                    long bytes = StateBytes(r.Log), full = 2L * 4 * r.AdapterElementsPerRank;   // AdamW: exp_avg + exp_avg_sq, float32
                    if (o.ZeroStage == 0) Must.Equal(bytes, full, $"{cfg.Kind} {name}: optimizer state bytes per rank (AdamW over the adapters only)");
                    else Must.True(bytes > 0 && bytes < full, $"{cfg.Kind} {name}: ZeRO-{o.ZeroStage} state {bytes} should be a shard of the adapters' {full}");
                }
            }
        }),
        Spec.Case("resume from a checkpoint is exact (TP=2, losses and LRs bit for bit; adapter files equal)", () =>
        {
            var root = Path.Combine(Path.GetTempPath(), "trainer-tests", "lora-resume-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(root);
            try
            {
                var b = Binding(Gpt2L, Cfg(Gpt2L));
                var o = Options(b, world: 2, tp: 2, steps: 4) with { SaveDir = Path.Combine(root, "ck"), SaveInterval = 2, KeepLast = 0, LoraSavePath = Path.Combine(root, "full.lora") };
                var full = Train(b, o);
                var resumed = Train(b, o with { SaveDir = null, SaveInterval = 0, LoadDir = Path.Combine(root, "ck", CheckpointStore.DirectoryName(2)), LoraSavePath = Path.Combine(root, "resumed.lora") });
                Must.Equal(resumed.Steps.Count, 2, "resumed steps");
                for (int i = 0; i < 2; i++)
                {
                    Must.Equal(BitConverter.SingleToInt32Bits(resumed.Steps[i].Loss), BitConverter.SingleToInt32Bits(full.Steps[i + 2].Loss), $"step {i + 3} loss bits");
                    Must.True(resumed.Steps[i].Lrs.SequenceEqual(full.Steps[i + 2].Lrs), $"step {i + 3} LR");
                }
                Must.True(File.ReadAllBytes(Path.Combine(root, "full.lora")).SequenceEqual(File.ReadAllBytes(Path.Combine(root, "resumed.lora"))), "the adapter files of the two runs differ");
            }
            finally { Directory.Delete(root, true); }
        }),
        Spec.Case("pipeline (TP=2+SP x PP=2 x VPP=2, 4 blocks): the adapter file is the stages' adapters in the single-device format; it loads back into PP and single-device runs alike; resume is exact, and on one device within tolerance; lora-merge takes it", () =>
        {
            var root = Path.Combine(Path.GetTempPath(), "trainer-tests", "lora-pp-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(root);
            try
            {
                var cfg4 = ModelConfig.Gpt2("gpt2-lora-pp-test", nLayer: 4, nHead: 4, nEmbd: 32, blockSize: 16, vocabSize: 250, paddedVocabSize: 256);
                var lora = Cfg(cfg4);
                var b = Binding(cfg4, lora);
                string singleFile = Path.Combine(root, "single.lora"), ppFile = Path.Combine(root, "pp.lora"), resumedFile = Path.Combine(root, "resumed.lora");
                var single = Train(b, Options(b, steps: 4) with { LoraSavePath = singleFile });
                var o = Options(b, world: 4, tp: 2, sp: true, pp: 2, vpp: 2, steps: 4) with { SaveDir = Path.Combine(root, "ck"), SaveInterval = 2, KeepLast = 0, LoraSavePath = ppFile };
                var pp = Train(b, o);
                Must.True(pp.BaseUnchanged && pp.TrainableNotAdapters == 0 && pp.AdaptersMoved, "PP: base frozen, only the adapters trained, and they moved");
                for (int i = 0; i < 4; i++)
                    Must.True(Math.Abs(pp.Steps[i].Loss - single.Steps[i].Loss) <= 1e-5 && pp.Steps[i].Lrs.SequenceEqual(single.Steps[i].Lrs),
                        $"PP step {i + 1}: loss {pp.Steps[i].Loss:R} vs single {single.Steps[i].Loss:R}, LR {pp.Steps[i].Lrs[0]:R} vs {single.Steps[i].Lrs[0]:R}");

                // The file: the single-device header and layer list, and exactly the values the stages hold (joined by hand).
                var (ppCfg, ppModel) = LoraWeights.ReadConfig(ppFile);
                var (singleCfg, singleModel) = LoraWeights.ReadConfig(singleFile);
                Must.Equal(ppCfg.Describe() + " " + ppModel, singleCfg.Describe() + " " + singleModel, "the PP file's settings and model are the single-device file's");
                Must.Equal(new FileInfo(ppFile).Length, new FileInfo(singleFile).Length, "file size");
                using (var fromPp = LoraWeights.Load(ppFile, cfg4, lora))
                using (var fromSingle = LoraWeights.Load(singleFile, cfg4, lora))
                {
                    Must.Equal(fromPp.Layers.Count, 4 * 4, "c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj of 4 blocks");
                    for (int i = 0; i < fromPp.Layers.Count; i++)
                    {
                        var (layer, a, bm) = fromPp.Layers[i];
                        Must.Equal(layer, fromSingle.Layers[i].Layer, "layer order");
                        Must.True(MaxDiff(a, pp.Adapters[layer.Name + ".lora_A"]) == 0 && MaxDiff(bm, pp.Adapters[layer.Name + ".lora_B"]) == 0,
                            $"{layer.Name}: the file's adapter is not the one the stages hold");
                        double d = Math.Max(MaxDiff(a, fromSingle.Layers[i].A), MaxDiff(bm, fromSingle.Layers[i].B));
                        Must.True(d <= 1e-4, $"{layer.Name}: PP adapter differs from the single-device run's by {d:E2}");
                    }
                }

                // Resume from step 2 under the same layout: losses, LRs and the adapter file bit for bit.
                var resumed = Train(b, o with { SaveDir = null, SaveInterval = 0, LoadDir = Path.Combine(root, "ck", CheckpointStore.DirectoryName(2)), LoraSavePath = resumedFile });
                Must.Equal(resumed.Steps.Count, 2, "resumed steps");
                for (int i = 0; i < 2; i++)
                    Must.True(BitConverter.SingleToInt32Bits(resumed.Steps[i].Loss) == BitConverter.SingleToInt32Bits(pp.Steps[i + 2].Loss) && resumed.Steps[i].Lrs.SequenceEqual(pp.Steps[i + 2].Lrs),
                        $"resumed step {i + 3}: loss {resumed.Steps[i].Loss:R} vs {pp.Steps[i + 2].Loss:R}");
                Must.True(File.ReadAllBytes(ppFile).SequenceEqual(File.ReadAllBytes(resumedFile)), "the resumed run's adapter file differs from the uninterrupted one's");
                // ... and on one device (the checkpoint consolidated and cut again): the single-device run's losses, LRs bit for bit.
                var moved = Train(b, Options(b, steps: 4) with { LoadDir = Path.Combine(root, "ck", CheckpointStore.DirectoryName(2)) });
                Must.True(moved.BaseUnchanged && moved.TrainableNotAdapters == 0, "PP checkpoint on one device: base frozen and unchanged");
                for (int i = 0; i < 2; i++)
                    Must.True(Math.Abs(moved.Steps[i].Loss - single.Steps[i + 2].Loss) <= 1e-5 && moved.Steps[i].Lrs.SequenceEqual(single.Steps[i + 2].Lrs),
                        $"PP checkpoint resumed on one device, step {i + 3}: loss {moved.Steps[i].Loss:R} vs single {single.Steps[i + 2].Loss:R}");

                // --lora_load_path scatters a file over the stages: a PP run and a single-device run started from it agree.
                var fromFile = Binding(cfg4, lora, load: singleFile);
                var l1 = Train(fromFile, Options(fromFile, steps: 1));
                var lp = Train(fromFile, Options(fromFile, world: 2, pp: 2, vpp: 2, steps: 1));
                Must.True(Math.Abs(lp.Steps[0].Loss - l1.Steps[0].Loss) <= 1e-5, $"from the file: PP loss {lp.Steps[0].Loss:R} vs single {l1.Steps[0].Loss:R}");
                Must.True(Math.Abs(l1.Steps[0].Loss - single.Steps[0].Loss) > 1e-4, "the file's trained adapters made no difference to the first loss");

                // lora-merge on the PP file: the merged llm.c model computes the base model with the PP adapters.
                string baseFile = Path.Combine(root, "base.bin"), merged = Path.Combine(root, "merged.bin");
                using (var baseModel = ModelFactory.Create(cfg4, b.Seed, CPU, ScalarType.Float32)) LlmcWeights.Save(baseModel, baseFile);
                var stderr = new StringWriter();
                Must.Equal(LoraMergeCommand.Run(new[] { $"--llmc_filepath={baseFile}", $"--lora_load_path={ppFile}", $"--output={merged}" }, new StringWriter(), stderr), 0, $"lora-merge exit code ({stderr})");
                using var adapted = ModelFactory.Create(cfg4, b.Seed, CPU, ScalarType.Float32);
                using (var w = LoraWeights.Load(ppFile, cfg4, lora)) LoraModel.Attach(adapted, w);
                using var plain = LlmcWeights.Load(merged, CPU, ScalarType.Float32);
                var (x, _) = Batch(cfg4.VocabSize, 1, 8);
                using var _g = no_grad();
                double dm = MaxDiff(plain.forward(x), adapted.forward(x));
                Must.True(dm < 1e-5, $"lora-merge of the PP file: logits differ from the adapted model by {dm:E2}");
            }
            finally { Directory.Delete(root, true); }
        }),
        Spec.Case("adapter files: small, round trip, --lora_load_path starts a run from them; a wrong file is refused by name", () =>
        {
            var dir = Path.Combine(Path.GetTempPath(), "trainer-tests", "lora-file-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(dir);
            try
            {
                var cfg = Cfg(LlamaL);
                using var w = Adapters(LlamaL, cfg);
                string path = Path.Combine(dir, "a.lora");
                w.Save(path, LlamaL.Name);
                long modelBytes = LlmcWeights.ParamCount(LlamaL) * 4;
                Must.True(new FileInfo(path).Length < modelBytes / 5 && new FileInfo(path).Length >= w.ElementCount * 4, $"adapter file {new FileInfo(path).Length} bytes vs model {modelBytes}");
                using var back = LoraWeights.Load(path, LlamaL, cfg);
                for (int i = 0; i < w.Layers.Count; i++)
                    Must.True(MaxDiff(back.Layers[i].A, w.Layers[i].A) == 0 && MaxDiff(back.Layers[i].B, w.Layers[i].B) == 0, $"{w.Layers[i].Layer.Name} round trip");
                var e1 = Must.Throws<LoraConfigException>(() => LoraWeights.Load(path, LlamaL, cfg with { Rank = 2 }), "wrong rank");
                Must.Contains(e1.Message, "--lora_load_path", "names the flag");
                Must.Contains(e1.Message, "rank-4", "names the file's rank");
                var e2 = Must.Throws<LoraConfigException>(() => LoraWeights.Load(path, LlamaL, cfg with { Targets = new[] { "c_attn" } }), "other targets");
                Must.Contains(e2.Message, "selects [h.0.attn.c_attn, h.1.attn.c_attn]", "names the layers");
                // a run started from the file computes with the file's adapters: its first loss is that of the adapted model
                var b = Binding(LlamaL, cfg, load: path);
                var r = Train(b, Options(b, steps: 1));
                using var m = ModelFactory.Create(LlamaL, b.Seed, CPU, ScalarType.Float32);
                LoraModel.Attach(m, w);
                var ds = new DistributedBatches(Tokens(), 2, 8, 1);
                double sum = 0;
                using (no_grad())
                    for (int k = 0; k < 4; k++)
                    {
                        var (xs, ys) = ds.Batch(k, 0);
                        sum += m.Loss(m.forward(tensor(xs, new long[] { 2, 8 }, ScalarType.Int64)), tensor(ys, new long[] { 2, 8 }, ScalarType.Int64)).item<float>() / 4;
                    }
                Must.True(Math.Abs(r.Steps[0].Loss - sum) < 1e-5, $"first loss {r.Steps[0].Loss} vs adapted model {sum}");
            }
            finally { Directory.Delete(dir, true); }
        }),
        Spec.Case("merge: the merged weights compute the adapted model; lora-merge writes them as a plain llm.c file", () =>
        {
            var dir = Path.Combine(Path.GetTempPath(), "trainer-tests", "lora-merge-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(dir);
            try
            {
                var tiny = ModelCatalog.Get("gpt2-tiny");
                var cfg = new LoraConfig(4, 16, LoraConfig.ParseTargets("c_attn,c_proj,c_fc"));
                using var w = Adapters(tiny, cfg);
                using var adapted = ModelFactory.Create(tiny, 3, CPU, ScalarType.Float32);
                LoraModel.Attach(adapted, w);
                var (x, _) = Batch(tiny.VocabSize, 1, 8);
                using var _g = no_grad();
                var expect = adapted.forward(x);
                using var merged = ModelFactory.Create(tiny, 3, CPU, ScalarType.Float32);
                LoraModel.Attach(merged, w);
                LoraModel.MergeInto(merged);
                Must.True(merged.LoraAdapters.All(a => a.lora_B.abs().max().item<float>() == 0), "merged adapters are zeroed");
                double d = MaxDiff(merged.forward(x), expect);
                Must.True(d < 1e-5, $"merged model logits differ by {d:E2}");
                string adapters = Path.Combine(dir, "a.lora"), file = Path.Combine(dir, "merged.bin");
                w.Save(adapters, tiny.Name);
                var stdout = new StringWriter(); var stderr = new StringWriter();
                int rc = LoraMergeCommand.Run(new[] { "--model=gpt2-tiny", "--seed=3", $"--lora_load_path={adapters}", $"--output={file}" }, stdout, stderr);
                Must.Equal(rc, 0, $"lora-merge exit code ({stderr})");
                using var plain = LlmcWeights.Load(file, CPU, ScalarType.Float32);
                Must.True(plain.LoraAdapters.Count == 0, "the llm.c model has no adapters");
                double d2 = MaxDiff(plain.forward(x), expect);
                Must.True(d2 < 1e-5, $"llm.c file from lora-merge: logits differ from the adapted model by {d2:E2}");
                Must.Equal(LoraMergeCommand.Run(new[] { "--model=llama3-tiny", $"--lora_load_path={adapters}", $"--output={file}" }, stdout, stderr), 1, "adapters of another model");
            }
            finally { Directory.Delete(dir, true); }
        }));

    // ------------------------------------------------------------------------------------------------ flags

    static string UsageError(params string[] args)
    {
        var v = TrainCommand.Flags().Parse(args);
        return Must.Throws<UsageException>(() => TrainCommand.BuildPlan(v), string.Join(" ", args)).Message;
    }

    static Test Flags() => Spec.List("flags",
        Spec.Case("InfiniTrain's defaults: rank 0 = off, alpha 16, targets per model family", () =>
        {
            var off = TrainCommand.BuildPlan(TrainCommand.Flags().Parse(new[] { "--model=gpt2-tiny" }));
            Must.True(off.Options.Lora is null && off.Model.Lora is null, "--lora_rank defaults to 0 (off)");
            var g = TrainCommand.BuildPlan(TrainCommand.Flags().Parse(new[] { "--model=gpt2-tiny", "--lora_rank=8" })).Options.Lora!;
            Must.Equal(string.Join(",", g.Targets), "c_attn,c_proj", "GPT-2 default targets");
            Must.Equal(g.Alpha, 16.0, "default alpha");
            var l = TrainCommand.BuildPlan(TrainCommand.Flags().Parse(new[] { "--model=llama3-tiny", "--lora_rank=8" }));
            Must.Equal(string.Join(",", l.Options.Lora!.Targets), "c_attn,c_proj,c_fc,c_fc2", "LLaMA-3 default targets");
            Must.Contains(l.Options.ModelDescription, "LoRA(rank=8", "the LoRA settings are part of the resume identity");
        }),
        Spec.Case("usage errors name the flag: unknown target, target the model lacks, rank too large, dropout on several ranks, LoRA flags without a rank", () =>
        {
            Must.Contains(UsageError("--model=gpt2-tiny", "--lora_rank=4", "--lora_target_modules=c_attn,q_proj"), "--lora_target_modules: unknown module 'q_proj'", "unknown");
            Must.Contains(UsageError("--model=gpt2-tiny", "--lora_rank=4", "--lora_target_modules=c_fc2"), "model 'gpt2-tiny' (GPT2) has no 'c_fc2' layer", "lacking");
            Must.Contains(UsageError("--model=gpt2-tiny", "--lora_rank=65"), "--lora_rank=65 is larger than layer h.0.attn.c_attn allows (min(in, out) = min(64, 192) = 64)", "rank");
            Must.Contains(UsageError("--model=gpt2-tiny", "--lora_rank=4", "--lora_dropout=0.1", "--nthread_per_process=2"), "--lora_dropout=0.1 needs --nthread_per_process=1", "dropout");
            Must.Contains(UsageError("--model=gpt2-tiny", "--lora_rank=4", "--lora_dropout=1"), "--lora_dropout", "dropout range");
            Must.Contains(UsageError("--model=gpt2-tiny", "--lora_save_path=/tmp/x.lora"), "--lora_save_path needs --lora_rank > 0", "save without rank");
        }));

    [Tests]
    public static Test All => Spec.Sequenced(Spec.List("lora", Layers(), TensorParallel(), Trainer(), Flags()));
}
