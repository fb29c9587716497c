using Expecto;
using Tests.Harness;
using TorchSharp;
using Trainer.Models;
using Trainer.Parallel;
using static TorchSharp.torch;

namespace Tests.Parallel;

/// <summary>
/// Tensor and sequence parallelism against the single-device computation with the same weights (Megatron mpu test
/// pattern): every layer forward and backward (input grads, the rank's slice of the weight grads), the vocab-parallel
/// loss, and whole tiny GPT-2 / LLaMA-3 models. Ranks are threads with the deterministic <see cref="ThreadCommunicator"/>.
/// </summary>
public static class TensorParallelTests
{
    // ---------------------------------------------------------------- helpers

    static double Tol(ScalarType dt) => dt == ScalarType.Float64 ? 1e-12 : 1e-6;
    static string Tag(ScalarType dt) => dt == ScalarType.Float64 ? "float64" : "float32";

    /// <summary>max |a - b| computed in float64 (shapes must match).</summary>
    static double MaxDiff(Tensor a, Tensor b)
    {
        Must.True(a.shape.SequenceEqual(b.shape), $"shape [{string.Join(",", a.shape)}] vs [{string.Join(",", b.shape)}]");
        using var _ = no_grad();
        return a.numel() == 0 ? 0 : (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();
    }

    static void Near(Tensor actual, Tensor expected, double tol, string what)
    {
        double d = MaxDiff(actual, expected);
        Must.True(d <= tol, $"{what}: max |Δ| = {d:E3} > {tol:E1}");
    }

    /// <summary>A seeded normal tensor scaled by <paramref name="std"/> (values drawn in float64, then cast).</summary>
    static Tensor Randn(Generator g, ScalarType dt, double std, params long[] shape) =>
        (randn(shape, dtype: ScalarType.Float64, generator: g) * std).to(dt);

    static Tensor Leaf(Tensor t) => t.detach().clone().requires_grad_(true);

    /// <summary>Rank r's positions of a (B,T,…) tensor along T.</summary>
    static Tensor SeqShard(Tensor t, int rank, int size) => ShardSpec.Fused(1, t.shape[1]).Slice(t.detach(), rank, size);

    static T[] OnRanks<T>(int tp, Func<ICommunicator, T> body) => ThreadCommunicator.Run(tp, body, TimeSpan.FromMinutes(2));

    static IEnumerable<(int Tp, ScalarType Dt)> Layouts() =>
        from tp in new[] { 2, 4 } from dt in new[] { ScalarType.Float64, ScalarType.Float32 } select (tp, dt);

    // ---------------------------------------------------------------- layers

    const long B = 2, T = 8;

    /// <summary>Column-parallel linear vs the full linear: output (the rank's columns, or all of them gathered),
    /// input grad, weight and bias grads (the rank's rows). Optionally fused row blocks and SP input.</summary>
    static Test ColumnCase(int tp, ScalarType dt, bool gather, bool sp, bool fused) =>
        Spec.Case($"ColumnParallelLinear tp={tp} {Tag(dt)}{(gather ? " gather_output" : "")}{(fused ? " fused [q|k|v] rows" : "")}{(sp ? " SP" : "")}", () =>
        {
            const long inF = 16, outF = 24;
            using var g = new Generator(11);
            var w = Randn(g, dt, 0.1, outF, inF); var b = Randn(g, dt, 0.1, outF);
            var x = Leaf(Randn(g, dt, 1.0, B, T, inF)); var up = Randn(g, dt, 0.25, B, T, outF);
            var y = nn.functional.linear(x, w, b);
            (y * up).sum().backward();
            var (dw, db) = GradOf(x, w, b, up);
            var spec = fused ? ShardSpec.Fused(0, 8, 8, 8) : ShardSpec.Fused(0, outF);
            var outSpec = spec with { Dim = 2 };
            double tol = Tol(dt);
            OnRanks(tp, comm =>
            {
                int r = comm.Rank;
                using var layer = ColumnParallelLinear.FromFull(w, b, comm, gatherOutput: gather, sequenceParallel: sp, rows: spec);
                var xr = Leaf(sp ? SeqShard(x, r, tp) : x);
                var yr = layer.forward(xr);
                var expectY = gather ? y : outSpec.Slice(y.detach(), r, tp);
                Near(yr, expectY, tol, $"rank {r} output");
                (yr * (gather ? up : outSpec.Slice(up, r, tp))).sum().backward();
                Near(xr.grad!, sp ? SeqShard(x.grad!, r, tp) : x.grad!, tol, $"rank {r} input grad");
                Near(layer.weight.grad!, spec.Slice(dw, r, tp), tol, $"rank {r} weight grad");
                Near(layer.bias!.grad!, spec.Slice(db, r, tp), tol, $"rank {r} bias grad");
                return 0;
            });
        });

    /// <summary>dL/dW and dL/db of L = Σ (x Wᵀ + b) ⊙ up, from autograd on fresh leaves.</summary>
    static (Tensor W, Tensor B) GradOf(Tensor x, Tensor w, Tensor b, Tensor up)
    {
        var wl = Leaf(w); var bl = Leaf(b);
        (nn.functional.linear(x.detach(), wl, bl) * up).sum().backward();
        return (wl.grad!, bl.grad!);
    }

    /// <summary>Row-parallel linear vs the full linear; under SP also the bias grad before and after the TP all-reduce.</summary>
    static Test RowCase(int tp, ScalarType dt, bool inputIsParallel, bool sp) =>
        Spec.Case($"RowParallelLinear tp={tp} {Tag(dt)}{(inputIsParallel ? "" : " split input")}{(sp ? " SP (+ replicated bias grad all-reduce)" : "")}", () =>
        {
            const long inF = 24, outF = 16;
            using var g = new Generator(12);
            var w = Randn(g, dt, 0.1, outF, inF); var b = Randn(g, dt, 0.1, outF);
            var x = Leaf(Randn(g, dt, 1.0, B, T, inF)); var up = Randn(g, dt, 0.25, B, T, outF);
            var y = nn.functional.linear(x, w, b);
            (y * up).sum().backward();
            var (dw, db) = GradOf(x, w, b, up);
            var inSpec = ShardSpec.Fused(2, inF);
            double tol = Tol(dt);
            OnRanks(tp, comm =>
            {
                int r = comm.Rank;
                using var layer = RowParallelLinear.FromFull(w, b, comm, inputIsParallel: inputIsParallel, sequenceParallel: sp);
                var xr = Leaf(inputIsParallel ? inSpec.Slice(x.detach(), r, tp) : x);
                var yr = layer.forward(xr);
                Near(yr, sp ? SeqShard(y, r, tp) : y, tol, $"rank {r} output");
                // Under SP each rank's loss covers its own positions; the sum over ranks is the full loss.
                (yr * (sp ? SeqShard(up, r, tp) : up)).sum().backward();
                Near(xr.grad!, inputIsParallel ? inSpec.Slice(x.grad!, r, tp) : x.grad!, tol, $"rank {r} input grad");
                Near(layer.weight.grad!, layer.Spec.Slice(dw, r, tp), tol, $"rank {r} weight grad");
                if (sp)
                {
                    Must.True(MaxDiff(layer.bias!.grad!, db) > 1e-3, $"rank {r}: SP bias grad should be partial before the all-reduce");
                    TensorParallelOps.AllReduceGrads(new Tensor[] { layer.bias! }, comm);
                }
                Near(layer.bias!.grad!, db, tol, $"rank {r} bias grad");
                return 0;
            });
        });

    /// <summary>Vocab-parallel embedding vs a full lookup, V = 30 (padded to a multiple of TP when it does not divide).</summary>
    static Test EmbeddingCase(int tp, ScalarType dt, bool sp) =>
        Spec.Case($"VocabParallelEmbedding tp={tp} {Tag(dt)} V=30{(sp ? " SP (reduce-scatter)" : "")}", () =>
        {
            const long v = 30, c = 12;
            using var g = new Generator(13);
            var w = Leaf(Randn(g, dt, 1.0, v, c));
            var idx = randint(0, v, new[] { B, T }, dtype: ScalarType.Int64, generator: g);
            idx[0, 0] = tensor(v - 1L); idx[1, 3] = tensor(0L);     // both ends of the vocabulary
            var up = Randn(g, dt, 0.25, B, T, c);
            var y = w.index_select(0, idx.reshape(-1)).view(B, T, c);
            (y * up).sum().backward();
            double tol = Tol(dt);
            OnRanks(tp, comm =>
            {
                int r = comm.Rank;
                using var emb = VocabParallelEmbedding.FromFull(w.detach(), comm, sequenceParallel: sp);
                Must.Equal(emb.LocalVocab, (v + tp - 1) / tp, "local vocabulary rows");
                var yr = emb.forward(idx);
                Near(yr, sp ? SeqShard(y, r, tp) : y, tol, $"rank {r} output");
                (yr * (sp ? SeqShard(up, r, tp) : up)).sum().backward();
                Near(emb.weight.grad!, emb.Spec.Slice(w.grad!, r, tp), tol, $"rank {r} weight grad (its rows; padded rows zero)");
                return 0;
            });
        });

    /// <summary>Reference mean cross entropy (float64 stays float64, anything else in float32), ignore -1.</summary>
    static Tensor RefLoss(Tensor logits, Tensor targets)
    {
        var ct = logits.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]).to(ct), targets.reshape(-1), ignore_index: -1);
    }

    /// <summary>Vocab-parallel cross entropy vs cross_entropy on the full logits: loss and logit grads; V = 30 so that
    /// TP=4 pads (the last rank holds 2 padded columns, which must neither win nor get a gradient).</summary>
    static Test CrossEntropyCase(int tp, ScalarType dt) =>
        Spec.Case($"VocabParallelCrossEntropy tp={tp} {Tag(dt)} V=30, ignore_index -1", () =>
        {
            const long v = 30;
            using var g = new Generator(14);
            var logits = Leaf(Randn(g, dt, 3.0, B, T, v));
            var targets = randint(0, v, new[] { B, T }, dtype: ScalarType.Int64, generator: g);
            targets[0, 2] = tensor(-1L); targets[1, 7] = tensor(-1L); targets[1, 0] = tensor(v - 1L);
            var loss = RefLoss(logits, targets);
            loss.backward();
            var spec = ShardSpec.Even(2, v, tp);
            double tol = Tol(dt);
            OnRanks(tp, comm =>
            {
                int r = comm.Rank;
                // Padded columns hold a large logit: the mask, not the value, must keep them out.
                var local = spec.Slice(logits.detach(), r, tp);
                long vl = local.shape[2];
                if ((r + 1) * vl > v) local.narrow(2, v - r * vl, (r + 1) * vl - v).fill_(50.0);
                local = Leaf(local);
                var lr = VocabParallelCrossEntropy.Loss(local, targets, comm, v);
                Must.True(lr.dtype == (dt == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32), $"loss dtype {lr.dtype}");
                Near(lr, loss, tol, $"rank {r} loss");
                lr.backward();
                Near(local.grad!, spec.Slice(logits.grad!, r, tp), tol, $"rank {r} logit grads");
                return 0;
            });
        });

    static Test LayerTests() => Spec.List("layers",
        Layouts().SelectMany(l => new[]
        {
            ColumnCase(l.Tp, l.Dt, gather: false, sp: false, fused: false),
            ColumnCase(l.Tp, l.Dt, gather: true, sp: false, fused: true),
            ColumnCase(l.Tp, l.Dt, gather: false, sp: true, fused: true),
            RowCase(l.Tp, l.Dt, inputIsParallel: true, sp: false),
            RowCase(l.Tp, l.Dt, inputIsParallel: false, sp: false),
            RowCase(l.Tp, l.Dt, inputIsParallel: true, sp: true),
            EmbeddingCase(l.Tp, l.Dt, sp: false),
            EmbeddingCase(l.Tp, l.Dt, sp: true),
            CrossEntropyCase(l.Tp, l.Dt),
        }));

    // ---------------------------------------------------------------- whole models

    /// <summary>GPT-2 with a small padded vocabulary (250 → 256), 4 heads: splits over 2 and 4.</summary>
    static readonly ModelConfig Gpt2Test = ModelConfig.Gpt2("gpt2-tp-test", nLayer: 2, nHead: 4, nEmbd: 32, blockSize: 16, vocabSize: 250, paddedVocabSize: 256);
    /// <summary>LLaMA-3 with GQA (8 query heads, 4 KV heads) and V = 250 (padded to 252 inside TP=4).</summary>
    static readonly ModelConfig Llama3Test = ModelConfig.Llama3("llama3-tp-test", nLayer: 2, nHead: 8, nKvHead: 4, nEmbd: 32, blockSize: 16, vocabSize: 250, ffnDimMultiplier: 1.5f, multipleOf: 16);

    sealed record RankResult(double Loss, Tensor Logits, IReadOnlyList<(string Name, Tensor Tensor)> Grads,
        IReadOnlyList<(string Name, Tensor Tensor)> Weights, double GradSq, IReadOnlyList<(string Name, Tensor Tensor)> PartialGrads);

    /// <summary>The full model vs its TP shards on one batch: loss, logits (gathered), every gathered gradient, the
    /// global grad norm and the gathered weights (bit-identical round trip).</summary>
    static Test ModelCase(ModelConfig cfg, int tp, bool sp, ScalarType dt) =>
        Spec.Case($"{cfg.Kind} tp={tp}{(sp ? " SP" : "")} {Tag(dt)}: loss, logits, all gathered grads, grad norm vs the single-device model", () =>
        {
            double tol = dt == ScalarType.Float64 ? 1e-10 : 1e-5;
            using var full = ModelFactory.Create(cfg, 5, CPU, dt);
            using var g = new Generator(15);
            var idx = randint(0, cfg.VocabSize, new[] { B, T }, dtype: ScalarType.Int64, generator: g);
            var targets = randint(0, cfg.VocabSize, new[] { B, T }, dtype: ScalarType.Int64, generator: g);
            targets[1, 5] = tensor(-1L);
            var logits = full.forward(idx);
            var loss = RefLoss(logits, targets);
            loss.backward();
            var fullGrads = full.WeightFileOrder().Select(w => (w.Name, Grad: w.Tensor.grad!.detach().clone())).ToList();
            double fullGradSq = fullGrads.Sum(x => x.Grad.to(ScalarType.Float64).pow(2).sum().item<double>());
            var fullWeights = full.WeightFileOrder();

            var results = OnRanks(tp, comm =>
            {
                using var shard = TensorParallelModels.FromFull(full, CPU, dt, comm, sp);
                var lr = shard.forward(idx);
                Must.Equal(lr.shape[2], shard.LocalVocab, "local logit columns");
                var l = shard.Loss(lr, targets);
                l.backward();
                var partial = shard.GatherFullGrads();
                shard.AllReduceSequenceParallelGrads();
                var all = TensorParallelOps.AllGatherAlong(lr.detach(), comm, -1).narrow(2, 0, cfg.VocabSize);
                return new RankResult(l.to(ScalarType.Float64).item<double>(), all, shard.GatherFullGrads(), shard.GatherFullWeights(), shard.GradSquaredNorm(), partial);
            });

            foreach (var (res, r) in results.Select((x, i) => (x, i)))
            {
                Must.True(Math.Abs(res.Loss - loss.to(ScalarType.Float64).item<double>()) <= tol, $"rank {r} loss {res.Loss:R} vs {loss.to(ScalarType.Float64).item<double>():R}");
                Near(res.Logits, logits, tol, $"rank {r} logits");
                Must.Equal(res.Grads.Count, fullGrads.Count, "gathered tensors");
                for (int i = 0; i < fullGrads.Count; i++)
                {
                    Must.Equal(res.Grads[i].Name, fullGrads[i].Name, $"weight-file order at {i}");
                    Near(res.Grads[i].Tensor, fullGrads[i].Grad, tol, $"rank {r} grad {fullGrads[i].Name}");
                    Must.True(MaxDiff(res.Weights[i].Tensor, fullWeights[i].Tensor) == 0, $"rank {r} gathered weight {fullWeights[i].Name} differs from the full model's");
                }
                Must.True(Math.Abs(res.GradSq - fullGradSq) <= tol * Math.Max(1, fullGradSq), $"rank {r} Σgrad² {res.GradSq:R} vs {fullGradSq:R}");
                if (sp)
                {
                    // Without the replicated-grad all-reduce the norm weights' grads are partial (InfiniTrain's gap).
                    int lnf = fullGrads.FindIndex(x => x.Name == "ln_f.weight");
                    Must.True(MaxDiff(res.PartialGrads[lnf].Tensor, fullGrads[lnf].Grad) > 1e-4, $"rank {r}: ln_f grad was already complete before AllReduceSequenceParallelGrads");
                }
            }
        });

    /// <summary>bfloat16 shards (loss in float32): the loss within 1e-2 of the single-device bf16 model (compare_loss's
    /// bf16 threshold) and every gathered gradient within 2 % of the largest.</summary>
    static Test Bf16Case(ModelConfig cfg) =>
        Spec.Case($"{cfg.Kind} tp=2 SP bfloat16: loss within 1e-2 and gradients close to the single-device bf16 model", () =>
        {
            using var full = ModelFactory.Create(cfg, 6, CPU, ScalarType.BFloat16);
            using var g = new Generator(16);
            var idx = randint(0, cfg.VocabSize, new[] { B, T }, dtype: ScalarType.Int64, generator: g);
            var targets = randint(0, cfg.VocabSize, new[] { B, T }, dtype: ScalarType.Int64, generator: g);
            var loss = full.Loss(full.forward(idx), targets);
            loss.backward();
            var fullGrads = full.WeightFileOrder().Select(w => w.Tensor.grad!.detach().clone()).ToList();
            var results = OnRanks(2, comm =>
            {
                using var shard = TensorParallelModels.FromFull(full, CPU, ScalarType.BFloat16, comm, sequenceParallel: true);
                Must.True(shard.parameters().All(p => p.dtype == ScalarType.BFloat16), "every shard parameter is bf16");
                var l = shard.Loss(shard.forward(idx), targets);
                Must.True(l.dtype == ScalarType.Float32, $"loss dtype {l.dtype}");
                l.backward();
                shard.AllReduceSequenceParallelGrads();
                return (Loss: l.item<float>(), Grads: shard.GatherFullGrads());
            });
            foreach (var (loss_r, grads) in results)
            {
                Must.True(Math.Abs(loss_r - loss.item<float>()) <= 1e-2, $"loss {loss_r} vs {loss.item<float>()}");
                for (int i = 0; i < fullGrads.Count; i++)
                {
                    double scale = fullGrads[i].to(ScalarType.Float64).abs().max().item<double>();
                    Near(grads[i].Tensor, fullGrads[i], 0.02 * scale + 1e-6, $"grad {grads[i].Name}");
                }
            }
        });

    /// <summary>Scales every gradient by min(1, maxNorm/norm) for the given global norm (the clip step, done by hand so
    /// that the single-device and TP runs clip with the same formula).</summary>
    static void Clip(IEnumerable<Tensor> ps, double norm, double maxNorm)
    {
        using var _ = no_grad();
        double coef = Math.Min(1.0, maxNorm / (norm + 1e-6));
        foreach (var p in ps) if (p.grad is { } g) g.mul_(coef);
    }

    /// <summary>A training loop as the trainer will run it: forward, loss, backward, SP grad finalize, clip on the
    /// global norm, AdamW step — five steps, the TP=2+SP run against the single-device run (loss every step within 1e-5,
    /// grad norm within 1e-5 relative, the gathered final weights within 1e-4).</summary>
    static Test TrainingCase(ModelConfig cfg) =>
        Spec.Case($"{cfg.Kind} tp=2 SP float32: 5 AdamW steps with global-norm clipping track the single-device run", () =>
        {
            const int steps = 5; const double maxNorm = 0.5;   // small enough that clipping is active
            using var g = new Generator(17);
            var batches = Enumerable.Range(0, steps).Select(_ => (
                X: randint(0, cfg.VocabSize, new[] { B, T }, dtype: ScalarType.Int64, generator: g),
                Y: randint(0, cfg.VocabSize, new[] { B, T }, dtype: ScalarType.Int64, generator: g))).ToArray();
            using var full = ModelFactory.Create(cfg, 7, CPU, ScalarType.Float32);
            var start = full.WeightFileOrder().Select(w => w.Tensor.detach().clone()).ToList();
            var singleLoss = new double[steps]; var singleNorm = new double[steps];
            using (var opt = optim.AdamW(full.parameters(), 1e-2, weight_decay: 0.1))
                for (int s = 0; s < steps; s++)
                {
                    opt.zero_grad();
                    var l = full.Loss(full.forward(batches[s].X), batches[s].Y);
                    l.backward();
                    singleLoss[s] = l.item<float>();
                    singleNorm[s] = Math.Sqrt(full.parameters().Sum(p => p.grad!.to(ScalarType.Float64).pow(2).sum().item<double>()));
                    Clip(full.parameters(), singleNorm[s], maxNorm);
                    opt.step();
                }
            Must.True(singleNorm.All(n => n > maxNorm), "the test should clip every step");

            // The shards start from the same weights as the single-device run did.
            using var initial = ModelFactory.Create(cfg, 7, CPU, ScalarType.Float32);
            var results = OnRanks(2, comm =>
            {
                using var shard = TensorParallelModels.FromFull(initial, CPU, ScalarType.Float32, comm, sequenceParallel: true);
                using var opt = optim.AdamW(shard.parameters(), 1e-2, weight_decay: 0.1);
                var losses = new double[steps];
                for (int s = 0; s < steps; s++)
                {
                    opt.zero_grad();
                    var l = shard.Loss(shard.forward(batches[s].X), batches[s].Y);
                    l.backward();
                    shard.AllReduceSequenceParallelGrads();
                    double norm = Math.Sqrt(shard.GradSquaredNorm());
                    Must.True(Math.Abs(norm - singleNorm[s]) <= 1e-5 * singleNorm[s], $"step {s + 1}: global grad norm {norm:R} vs {singleNorm[s]:R}");
                    Clip(shard.parameters(), norm, maxNorm);
                    opt.step();
                    losses[s] = l.item<float>();
                }
                return (Losses: losses, Weights: shard.GatherFullWeights());
            });
            foreach (var (losses, weights) in results)
            {
                for (int s = 0; s < steps; s++)
                    Must.True(Math.Abs(losses[s] - singleLoss[s]) <= 1e-5, $"step {s + 1}: loss {losses[s]:R} vs {singleLoss[s]:R}");
                var final = full.WeightFileOrder();
                for (int i = 0; i < final.Count; i++)
                {
                    // 1e-4, not 1e-5: Adam divides by √v, so gradients near its eps (e.g. GPT-2's key bias, whose exact
                    // gradient is zero) turn rounding-level differences into visible parameter differences.
                    Near(weights[i].Tensor, final[i].Tensor, 1e-4, $"final {final[i].Name}");
                    Must.True(MaxDiff(final[i].Tensor, start[i]) > 0, $"{final[i].Name} never moved");
                }
            }
        });

    /// <summary>The catalog's tiny models split as the trainer will split them (llama3-tiny: V = 50257 is odd, so the
    /// vocabulary is padded to 50258 inside TP=2); loss and the wte/lm_head grads vs the single-device model.</summary>
    static Test CatalogCase(string name) =>
        Spec.Case($"{name} tp=2 SP float32 (real vocabulary): loss and embedding grads vs the single-device model", () =>
        {
            var cfg = ModelCatalog.Get(name);
            using var full = ModelFactory.Create(cfg, 8, CPU, ScalarType.Float32);
            using var g = new Generator(18);
            var idx = randint(0, cfg.VocabSize, new[] { 1L, T }, dtype: ScalarType.Int64, generator: g);
            idx[0, 1] = tensor(cfg.VocabSize - 1L);
            var targets = randint(0, cfg.VocabSize, new[] { 1L, T }, dtype: ScalarType.Int64, generator: g);
            targets[0, 3] = tensor(cfg.VocabSize - 1L);
            var loss = full.Loss(full.forward(idx), targets);
            loss.backward();
            var fullGrads = full.WeightFileOrder().ToDictionary(w => w.Name, w => w.Tensor.grad!.detach().clone());
            var results = OnRanks(2, comm =>
            {
                using var shard = TensorParallelModels.FromFull(full, CPU, ScalarType.Float32, comm, sequenceParallel: true);
                Must.Equal(shard.LocalVocab, (cfg.PaddedVocabSize + 1L) / 2, "local vocabulary rows");
                var l = shard.Loss(shard.forward(idx), targets);
                l.backward();
                shard.AllReduceSequenceParallelGrads();
                return (Loss: l.item<float>(), Grads: shard.GatherFullGrads().ToDictionary(x => x.Name, x => x.Tensor));
            });
            foreach (var (l, grads) in results)
            {
                Must.True(Math.Abs(l - loss.item<float>()) <= 1e-5, $"loss {l:R} vs {loss.item<float>():R}");
                foreach (var n in new[] { "wte", "lm_head.weight", "ln_f.weight" }.Where(fullGrads.ContainsKey))
                    Near(grads[n], fullGrads[n], 1e-5, $"grad {n}");
            }
        });

    static Test ModelTests() => Spec.List("models",
        (from cfg in new[] { Gpt2Test, Llama3Test }
         from tp in new[] { 2, 4 }
         from sp in new[] { false, true }
         from dt in new[] { ScalarType.Float32, ScalarType.Float64 }
         where tp == 2 || dt == ScalarType.Float32
         select ModelCase(cfg, tp, sp, dt))
        .Append(Bf16Case(Gpt2Test)).Append(Bf16Case(Llama3Test))
        .Append(TrainingCase(Gpt2Test)).Append(TrainingCase(Llama3Test))
        .Append(CatalogCase("gpt2-tiny")).Append(CatalogCase("llama3-tiny")));

    static Test Construction() => Spec.List("construction",
        Spec.Case("heads / KV heads / MLP width not divisible by TP are refused with the numbers", () =>
        {
            var e = Must.Throws<ArgumentException>(() => TensorParallelModels.Validate(Llama3Test, 8), "kv heads");
            Must.Contains(e.Message, "n_kv_head 4 is not divisible by 8", "message");
            e = Must.Throws<ArgumentException>(() => TensorParallelModels.Validate(Gpt2Test, 3), "heads");
            Must.Contains(e.Message, "n_head 4 is not divisible by 3", "message");
        }),
        Spec.Case("Create(cfg, seed) on each rank = slices of ModelFactory.Create(cfg, seed), bit for bit (both models, TP=4)", () =>
        {
            foreach (var cfg in new[] { Gpt2Test, Llama3Test })
            {
                using var full = ModelFactory.Create(cfg, 9, CPU, ScalarType.Float32);
                var gathered = OnRanks(4, comm =>
                {
                    using var shard = TensorParallelModels.Create(cfg, 9, CPU, ScalarType.Float32, comm, sequenceParallel: false);
                    Must.True(shard.ReplicatedParameters().Count + shard.ShardedParameters().Count == shard.parameters().Count(), "every parameter is either replicated or sharded");
                    return shard.GatherFullWeights();
                });
                var expect = full.WeightFileOrder();
                foreach (var g in gathered)
                    for (int i = 0; i < expect.Count; i++)
                        Must.True(MaxDiff(g[i].Tensor, expect[i].Tensor) == 0, $"{cfg.Kind} {expect[i].Name} differs");
            }
        }),
        Spec.Case("SP refuses a sequence length not divisible by TP", () =>
        {
            using var full = ModelFactory.Create(Gpt2Test, 1, CPU, ScalarType.Float32);
            OnRanks(2, comm =>
            {
                using var shard = TensorParallelModels.FromFull(full, CPU, ScalarType.Float32, comm, sequenceParallel: true);
                var e = Must.Throws<ArgumentException>(() => shard.forward(zeros(1, 7, dtype: ScalarType.Int64)), "T=7");
                Must.Contains(e.Message, "sequence length 7 is not divisible by the tensor-parallel size 2", "message");
                return 0;
            });
        }),
        Spec.Case("ShardSpec: slice then unslice is the identity (fused blocks, padded vocabulary)", () =>
        {
            using var g = new Generator(3);
            var full = randn(new long[] { 30, 6 }, generator: g);
            foreach (var (spec, n) in new[] { (ShardSpec.Even(0, 30, 4), 4), (ShardSpec.Fused(0, 10, 10, 10), 2), (ShardSpec.Fused(1, 6), 3) })
            {
                var shards = Enumerable.Range(0, n).Select(r => spec.Slice(full, r, n)).ToArray();
                Must.True(MaxDiff(spec.Unslice(shards), full) == 0, $"round trip {string.Join(",", spec.Blocks)} dim {spec.Dim}");
            }
            var qkv = ShardSpec.Fused(0, 10, 10, 10).Slice(full, 1, 2);   // rank 1 of 2: rows 5-9, 15-19, 25-29
            Must.True(MaxDiff(qkv, cat(new[] { full.narrow(0, 5, 5), full.narrow(0, 15, 5), full.narrow(0, 25, 5) }, 0)) == 0, "[q_r|k_r|v_r] rows");
        }));

    [Tests]
    public static Test All => Spec.Sequenced(Spec.List("parallel.tensor", LayerTests(), ModelTests(), Construction()));
}
