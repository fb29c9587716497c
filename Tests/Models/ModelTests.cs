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
