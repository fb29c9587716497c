using Expecto;
using Tests.Harness;
using TorchSharp;
using Trainer.Models;
using static TorchSharp.torch;

namespace Tests.Models;

public static class ModelTests
{
    static void Check(bool ok, string msg) { if (!ok) throw new Exception(msg); }

    static Tensor RandomIdx(ModelConfig cfg, long b, long t, long seed)
    {
        using var g = new Generator((ulong)seed);
        return randint(0, cfg.VocabSize, new long[] { b, t }, dtype: ScalarType.Int64, generator: g);
    }

    static bool SameParameters(CausalLm a, CausalLm b)
    {
        var pa = a.WeightFileOrder(); var pb = b.WeightFileOrder();
        if (pa.Count != pb.Count) return false;
        for (int i = 0; i < pa.Count; i++)
            if (!pa[i].Tensor.shape.SequenceEqual(pb[i].Tensor.shape) || !pa[i].Tensor.eq(pb[i].Tensor).all().item<bool>()) return false;
        return true;
    }

    static Test PerModel(string name) => Spec.List(name,
        Spec.Case("forward gives (B,T,V) logits", () =>
        {
            using var m = ModelFactory.Create(name, 1);
            using var idx = RandomIdx(m.Config, 2, 16, 7);
            using var logits = m.forward(idx);
            Check(logits.shape.SequenceEqual(new long[] { 2, 16, m.Config.VocabSize }), $"shape [{string.Join(",", logits.shape)}]");
            Check(logits.dtype == ScalarType.Float32, $"dtype {logits.dtype}");
        }),
        Spec.Case("causal: changing a future token leaves earlier logits unchanged", () =>
        {
            using var m = ModelFactory.Create(name, 2);
            using var idx = RandomIdx(m.Config, 1, 20, 8);
            using var idx2 = idx.clone();
            idx2[0, 12] = tensor((idx[0, 12].item<long>() + 1) % m.Config.VocabSize);
            using var _ = no_grad();
            using var a = m.forward(idx); using var b = m.forward(idx2);
            var early = (a.narrow(1, 0, 12) - b.narrow(1, 0, 12)).abs().max().item<float>();
            var late = (a.narrow(1, 12, 8) - b.narrow(1, 12, 8)).abs().max().item<float>();
            Check(early == 0f, $"positions < 12 changed by {early}");
            Check(late > 0f, "position 12 did not change at all");
        }),
        Spec.Case("loss of a fresh model ≈ ln(vocab)", () =>
        {
            using var m = ModelFactory.Create(name, 3);
            using var idx = RandomIdx(m.Config, 2, 32, 9);
            using var tgt = RandomIdx(m.Config, 2, 32, 10);
            using var _ = no_grad();
            using var loss = m.Loss(m.forward(idx), tgt);
            var l = loss.item<float>(); var expect = Math.Log(m.Config.VocabSize);
            Check(Math.Abs(l - expect) < 0.1, $"loss {l}, ln(V) = {expect}");
        }),
        Spec.Case("same seed → bit-identical parameters; other seed differs", () =>
        {
            var cfg = ModelCatalog.Get(name);
            using var a = ModelFactory.Create(cfg, 123, CPU, ScalarType.Float32);
            using var b = ModelFactory.Create(cfg, 123, CPU, ScalarType.Float32);
            using var c = ModelFactory.Create(cfg, 124, CPU, ScalarType.Float32);
            Check(SameParameters(a, b), "same seed gave different parameters");
            Check(!SameParameters(a, c), "different seeds gave the same parameters");
            c.CopyParametersFrom(a);
            Check(SameParameters(a, c), "CopyParametersFrom did not copy");
        }),
        Spec.Case("backward reaches every parameter", () =>
        {
            using var m = ModelFactory.Create(name, 4);
            using var idx = RandomIdx(m.Config, 2, 8, 11);
            using var tgt = RandomIdx(m.Config, 2, 8, 12);
            using var loss = m.Loss(m.forward(idx), tgt);
            loss.backward();
            foreach (var (n, p) in m.named_parameters()) Check(p.grad is not null, $"no grad for {n}");
        }),
        Spec.Case("bfloat16 model runs and its loss is float32", () =>
        {
            using var m = ModelFactory.Create(ModelCatalog.Get(name), 5, CPU, ScalarType.BFloat16);
            using var idx = RandomIdx(m.Config, 1, 8, 13);
            using var _ = no_grad();
            using var logits = m.forward(idx);
            Check(logits.dtype == ScalarType.BFloat16, $"logits dtype {logits.dtype}");
            using var loss = m.Loss(logits, idx);
            Check(loss.dtype == ScalarType.Float32 && float.IsFinite(loss.item<float>()), "bad bf16 loss");
            // The weight-file view must be the live parameters after the dtype cast (loaders write through it).
            var order = m.WeightFileOrder();
            Check(order.All(p => p.Tensor.dtype == ScalarType.BFloat16), "WeightFileOrder holds stale float32 tensors");
            Check(order.Count == m.parameters().Count() && order.Sum(p => p.Tensor.numel()) == m.ParameterCount(), "WeightFileOrder != parameters");
            foreach (var (_, t) in order) t.zero_();
            Check(m.parameters().All(p => p.abs().max().item<BFloat16>() == (BFloat16)0f), "WeightFileOrder tensor is not a live parameter");
        }));

    [Tests]
    public static Test All => Spec.List("models",
        PerModel("gpt2-tiny"),
        PerModel("llama3-tiny"),
        Spec.Case("catalog: names case-insensitive, unknown lists valid names", () =>
        {
            Check(ModelCatalog.Get("GPT2").NLayer == 12 && ModelCatalog.Get("d12").NEmbd == 768, "gpt2/d12");
            Check(ModelCatalog.Get("D24").NEmbd == 1024 && ModelCatalog.Get("d36").NEmbd == 1280 && ModelCatalog.Get("d48").NEmbd == 1600, "d24/d36/d48");
            var l = ModelCatalog.Get("LLaMA3.2-1B");
            Check(l.NLayer == 16 && l.NHead == 32 && l.NKvHead == 8 && l.NEmbd == 2048 && l.FfnHidden == 8192 && l.VocabSize == 128256, $"llama3.2-1b {l}");
            Check(ModelCatalog.Get("llama3") == l, "llama3 alias");
            try { ModelCatalog.Get("gpt5"); throw new Exception("no exception"); }
            catch (ArgumentException e) { Check(e.Message.Contains("gpt2-tiny") && e.Message.Contains("llama3.2-1b"), e.Message); }
        }),
        Spec.Case("parameter counts match the published sizes", () =>
        {
            // GPT-2 124M as llm.c counts it (padded wte): 124,475,904. LLaMA-3.2 1B untied: 1,498,482,688.
            Check(Count(ModelCatalog.Get("gpt2")) == 124_475_904, $"gpt2 {Count(ModelCatalog.Get("gpt2"))}");
            Check(Count(ModelCatalog.Get("llama3.2-1b")) == 1_498_482_688L, $"llama {Count(ModelCatalog.Get("llama3.2-1b"))}");
        }),
        Spec.Case("GPT-2: padded vocab rows are zero and get no gradient", () =>
        {
            using var m = ModelFactory.Create("gpt2-tiny", 6);
            var wte = m.WeightFileOrder()[0].Tensor;
            var cfg = m.Config;
            Check(wte.shape[0] == cfg.PaddedVocabSize, "wte rows");
            Check(wte.narrow(0, cfg.VocabSize, cfg.PaddedVocabSize - cfg.VocabSize).abs().max().item<float>() == 0f, "padded rows not zero");
            using var idx = RandomIdx(cfg, 2, 8, 14);
            using var loss = m.Loss(m.forward(idx), idx);
            loss.backward();
            Check(wte.grad!.narrow(0, cfg.VocabSize, cfg.PaddedVocabSize - cfg.VocabSize).abs().max().item<float>() == 0f, "padded rows got gradient");
        }),
        Spec.Case("LLaMA-3: GQA equals full attention with repeated kv weights", () =>
        {
            // A GQA model and an MHA model whose k/v projections repeat each kv head r times must agree.
            var gqaCfg = ModelCatalog.Get("llama3-tiny");                       // 4 heads, 2 kv heads
            var mhaCfg = gqaCfg with { NKvHead = gqaCfg.NHead };
            using var gqa = ModelFactory.Create(gqaCfg, 21, CPU, ScalarType.Float32);
            using var mha = ModelFactory.Create(mhaCfg, 22, CPU, ScalarType.Float32);
            int d = gqaCfg.HeadDim, h = gqaCfg.NHead, kv = gqaCfg.NKvHead, c = gqaCfg.NEmbd, r = h / kv;
            using (no_grad())
                foreach (var ((name, src), (_, dst)) in gqa.WeightFileOrder().Zip(mha.WeightFileOrder()))
                {
                    if (!name.EndsWith("c_attn.weight")) { dst.copy_(src); continue; }
                    var q = src.narrow(0, 0, h * d);
                    var k = src.narrow(0, h * d, kv * d).view(kv, d, c).repeat_interleave(r, 0).reshape(h * d, c);
                    var v = src.narrow(0, (h + kv) * d, kv * d).view(kv, d, c).repeat_interleave(r, 0).reshape(h * d, c);
                    dst.copy_(cat(new[] { q, k, v }, 0));
                }
            using var idx = RandomIdx(gqaCfg, 2, 12, 15);
            using var _ = no_grad();
            var diff = (gqa.forward(idx) - mha.forward(idx)).abs().max().item<float>();
            Check(diff < 1e-4f, $"max diff {diff}");
        }),
        Spec.Case("RoPE scaling keeps high frequencies, divides low ones by the factor", () =>
        {
            var cfg = ModelCatalog.Get("llama3.2-1b");
            var scaled = Rope.InverseFrequencies(cfg);
            var plain = Rope.InverseFrequencies(cfg with { UseScaledRope = false });
            Check(scaled[0] == plain[0], "highest frequency changed");
            Check(Math.Abs(scaled[^1] - plain[^1] / 32) < 1e-18, "lowest frequency not divided by 32");
        }));

    /// <summary>Parameter count from the config alone (no allocation), same formula as the modules.</summary>
    public static long Count(ModelConfig c)
    {
        long C = c.NEmbd, L = c.NLayer, H = c.FfnHidden;
        if (c.Kind == ModelKind.GPT2)
            return c.PaddedVocabSize * C + c.BlockSize * C + L * (2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + H * C + H + C * H + C) + 2 * C;
        long kv = (long)c.NKvHead * c.HeadDim;
        return c.VocabSize * C + L * (C + (C + 2 * kv) * C + C * C + C + 2 * H * C + C * H) + C + c.VocabSize * C;
    }
}
