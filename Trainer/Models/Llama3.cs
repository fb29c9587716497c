using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Trainer.Models;

/// <summary>
/// LLaMA-3 as in InfiniTrain / llm.c's train_llama3.py: RMSNorm, RoPE with interleaved pairs (Meta layout) and
/// optional LLaMA-3.1 frequency scaling, GQA (kv head j serves query heads j*rep .. j*rep+rep-1), SwiGLU
/// c_proj(c_fc(x) * silu(c_fc2(x))), no biases, untied lm_head.
/// </summary>
public sealed class Llama3 : CausalLm
{
    readonly Embedding wte;
    readonly ModuleList<Llama3Block> h;
    readonly RmsNorm ln_f;
    readonly Linear lm_head;
    readonly RopeTables rope;

    public Llama3(ModelConfig cfg) : base("LLaMA3", cfg)
    {
        if (cfg.Kind != ModelKind.LLaMA3) throw new ArgumentException($"'{cfg.Name}' is not a LLaMA-3 config");
        wte = nn.Embedding(cfg.VocabSize, cfg.NEmbd);
        h = new ModuleList<Llama3Block>(Enumerable.Range(0, cfg.NLayer).Select(i => new Llama3Block(cfg)).ToArray());
        ln_f = new RmsNorm(cfg.NEmbd, cfg.NormEps);
        lm_head = nn.Linear(cfg.NEmbd, cfg.VocabSize, hasBias: false);
        RegisterComponents();
        rope = new RopeTables(cfg);
    }

    public override Tensor forward(Tensor idx)
    {
        using var scope = NewDisposeScope();
        idx = CheckIdx(idx);
        var (cos, sin) = rope.For(idx.shape[1], idx.device);
        var x = wte.forward(idx);
        foreach (var block in h) x = block.forward(x, cos, sin);
        x = ln_f.forward(x);
        return lm_head.forward(x).MoveToOuterDisposeScope();
    }

    public override IReadOnlyList<(string Name, Tensor Tensor)> WeightFileOrder()
    {
        var list = new List<(string, Tensor)> { ("wte", wte.weight!) };
        void Each(string n, Func<Llama3Block, Tensor> f) { for (int i = 0; i < h.Count; i++) list.Add(($"h.{i}.{n}", f(h[i]))); }
        Each("ln_1.weight", b => b.ln_1.weight);
        Each("attn.c_attn.weight", b => b.attn.c_attn.weight!);
        Each("attn.c_proj.weight", b => b.attn.c_proj.weight!);
        Each("ln_2.weight", b => b.ln_2.weight);
        Each("mlp.c_fc.weight", b => b.mlp.c_fc.weight!);
        Each("mlp.c_fc2.weight", b => b.mlp.c_fc2.weight!);
        Each("mlp.c_proj.weight", b => b.mlp.c_proj.weight!);
        list.Add(("ln_f.weight", ln_f.weight));
        list.Add(("lm_head.weight", lm_head.weight!));
        return list;
    }

    internal override void InitializeWeights(Generator g)
    {
        double std = 0.02, resid = 0.02 / Math.Sqrt(2.0 * Config.NLayer);
        foreach (var (name, t) in WeightFileOrder())
        {
            if (name.Contains("ln_")) t.fill_(1.0);
            else if (name.EndsWith("c_proj.weight")) Normal(t, resid, g);
            else Normal(t, std, g);   // wte, c_attn, c_fc, c_fc2, lm_head
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) rope.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>RoPE helpers (public for tests and the reference scripts' documentation).</summary>
public static class Rope
{
    /// <summary>Inverse frequencies 1/theta^(2i/D), i &lt; D/2, with LLaMA-3.1 scaling when the config asks for it. Computed in double.</summary>
    public static double[] InverseFrequencies(ModelConfig cfg)
    {
        int d = cfg.HeadDim;
        var freqs = new double[d / 2];
        for (int i = 0; i < freqs.Length; i++)
        {
            double f = 1.0 / Math.Pow(cfg.RopeTheta, (2.0 * i) / d);
            if (cfg.UseScaledRope) f = Scale(f, cfg);
            freqs[i] = f;
        }
        return freqs;
    }

    /// <summary>LLaMA-3.1 frequency scaling (as Meta's / llm.c's apply_scaling).</summary>
    public static double Scale(double freq, ModelConfig cfg)
    {
        double oldCtx = cfg.RopeOriginalContext;
        double lowWavelen = oldCtx / cfg.RopeLowFreqFactor;
        double highWavelen = oldCtx / cfg.RopeHighFreqFactor;
        double wavelen = 2 * Math.PI / freq;
        if (wavelen < highWavelen) return freq;
        if (wavelen > lowWavelen) return freq / cfg.RopeScaleFactor;
        double smooth = (oldCtx / wavelen - cfg.RopeLowFreqFactor) / (cfg.RopeHighFreqFactor - cfg.RopeLowFreqFactor);
        return (1 - smooth) * freq / cfg.RopeScaleFactor + smooth * freq;
    }

    /// <summary>cos and sin of t*freq, each (BlockSize, HeadDim/2) float32 on the CPU (angles formed in float32, as the PyTorch reference does).</summary>
    public static (Tensor Cos, Tensor Sin) Tables(ModelConfig cfg)
    {
        using var scope = NewDisposeScope();
        var inv = tensor(InverseFrequencies(cfg).Select(f => (float)f).ToArray());
        var t = arange(cfg.BlockSize, dtype: ScalarType.Float32);
        var ang = outer(t, inv);
        var cos = ang.cos(); var sin = ang.sin();
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>x: (B,T,H,D); rotates interleaved pairs (x[2i], x[2i+1]) by angle t*freq_i, in float32; returns x's dtype.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], nh = x.shape[2], d = x.shape[3];
        var xf = x.to(ScalarType.Float32).reshape(b, t, nh, d / 2, 2);
        var x0 = xf.select(-1, 0);
        var x1 = xf.select(-1, 1);
        var c = cos.view(1, t, 1, d / 2);
        var s = sin.view(1, t, 1, d / 2);
        var r0 = x0 * c - x1 * s;
        var r1 = x0 * s + x1 * c;
        var y = stack(new[] { r0, r1 }, -1).reshape(b, t, nh, d).to(x.dtype);
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A model's RoPE tables: (BlockSize, HeadDim/2) float32 on the CPU, copied to the device the model runs on at its
/// first forward there. Deliberately not module state (not registered, never cast to bf16); shared by
/// <see cref="Llama3"/> and its TP shard.
/// </summary>
internal sealed class RopeTables : IDisposable
{
    readonly Tensor cosCpu, sinCpu;
    Tensor? cosDev, sinDev;

    public RopeTables(ModelConfig cfg) => (cosCpu, sinCpu) = Rope.Tables(cfg);

    /// <summary>cos and sin of positions 0..<paramref name="t"/>-1 on <paramref name="device"/> (views of the cached tables).</summary>
    public (Tensor Cos, Tensor Sin) For(long t, Device device)
    {
        if (cosDev is null || cosDev.device != device)
        {
            cosDev?.Dispose(); sinDev?.Dispose();
            cosDev = cosCpu.to(device).DetachFromDisposeScope();
            sinDev = sinCpu.to(device).DetachFromDisposeScope();
        }
        return (cosDev.narrow(0, 0, t), sinDev!.narrow(0, 0, t));
    }

    public void Dispose() { cosCpu.Dispose(); sinCpu.Dispose(); cosDev?.Dispose(); sinDev?.Dispose(); }
}

/// <summary>RMSNorm: x * rsqrt(mean(x²) + eps) computed in float32, cast back, times weight.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    readonly double eps;

    public RmsNorm(long dim, double eps) : base("RMSNorm")
    {
        this.eps = eps;
        weight = new Parameter(ones(dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var n = xf * rsqrt(xf.pow(2).mean(new long[] { -1 }, keepdim: true) + eps);
        return (n.to(x.dtype) * weight).MoveToOuterDisposeScope();
    }
}

internal sealed class Llama3Block : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    internal readonly RmsNorm ln_1;
    internal readonly Llama3Attention attn;
    internal readonly RmsNorm ln_2;
    internal readonly Llama3Mlp mlp;

    public Llama3Block(ModelConfig cfg) : base("Block")
    {
        ln_1 = new RmsNorm(cfg.NEmbd, cfg.NormEps);
        attn = new Llama3Attention(cfg);
        ln_2 = new RmsNorm(cfg.NEmbd, cfg.NormEps);
        mlp = new Llama3Mlp(cfg);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        x = x + attn.forward(ln_1.forward(x), cos, sin);
        x = x + mlp.forward(ln_2.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

internal sealed class Llama3Attention : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    internal readonly Linear c_attn;
    internal readonly Linear c_proj;
    readonly int nHead, nKvHead, headDim;

    public Llama3Attention(ModelConfig cfg) : base("CausalSelfAttention")
    {
        nHead = cfg.NHead; nKvHead = cfg.NKvHead; headDim = cfg.HeadDim;
        c_attn = nn.Linear(cfg.NEmbd, (cfg.NHead + 2L * cfg.NKvHead) * headDim, hasBias: false);
        c_proj = nn.Linear(cfg.NEmbd, cfg.NEmbd, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor cos, Tensor sin) => Apply(x, cos, sin, c_attn, c_proj, nHead, nKvHead, headDim);

    /// <summary>Causal self-attention with RoPE and GQA over the <paramref name="nHead"/> query and
    /// <paramref name="nKvHead"/> KV heads that <paramref name="c_attn"/> produces as [q | k | v], projected by
    /// <paramref name="c_proj"/>. Shared with the TP shard (<see cref="Trainer.Parallel.TpLlama3Block"/>), which passes
    /// its parallel layers and its H/tp, KV/tp local heads.</summary>
    internal static Tensor Apply(Tensor x, Tensor cos, Tensor sin, nn.Module<Tensor, Tensor> c_attn, nn.Module<Tensor, Tensor> c_proj,
        int nHead, int nKvHead, int headDim)
    {
        using var scope = NewDisposeScope();
        var qkv = c_attn.call(x);                           // (B,T,(H+2KV)*D): [q | k | v]; full T under SP
        long b = qkv.shape[0], t = qkv.shape[1];
        long qSize = (long)nHead * headDim, kvSize = (long)nKvHead * headDim;
        var q = qkv.narrow(2, 0, qSize).view(b, t, nHead, headDim);
        var k = qkv.narrow(2, qSize, kvSize).view(b, t, nKvHead, headDim);
        var v = qkv.narrow(2, qSize + kvSize, kvSize).view(b, t, nKvHead, headDim);
        q = Rope.Apply(q, cos, sin);
        k = Rope.Apply(k, cos, sin);
        int rep = nHead / nKvHead;
        if (rep > 1) { k = k.repeat_interleave(rep, dim: 2); v = v.repeat_interleave(rep, dim: 2); }
        var y = nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_casual: true);
        y = y.transpose(1, 2).contiguous().view(b, t, qSize);
        return c_proj.call(y).MoveToOuterDisposeScope();
    }
}

internal sealed class Llama3Mlp : nn.Module<Tensor, Tensor>
{
    internal readonly Linear c_fc;    // "up" (w3)
    internal readonly Linear c_fc2;   // "gate" (w1), goes through SiLU
    internal readonly Linear c_proj;  // "down" (w2)

    public Llama3Mlp(ModelConfig cfg) : base("MLP")
    {
        c_fc = nn.Linear(cfg.NEmbd, cfg.FfnHidden, hasBias: false);
        c_fc2 = nn.Linear(cfg.NEmbd, cfg.FfnHidden, hasBias: false);
        c_proj = nn.Linear(cfg.FfnHidden, cfg.NEmbd, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Apply(x, c_fc, c_fc2, c_proj);

    /// <summary>SwiGLU c_proj(c_fc(x) * silu(c_fc2(x))); shared with the TP shard (column-parallel c_fc/c_fc2, row-parallel c_proj).</summary>
    internal static Tensor Apply(Tensor x, nn.Module<Tensor, Tensor> c_fc, nn.Module<Tensor, Tensor> c_fc2, nn.Module<Tensor, Tensor> c_proj)
    {
        using var scope = NewDisposeScope();
        var hdn = c_fc.call(x) * nn.functional.silu(c_fc2.call(x));
        return c_proj.call(hdn).MoveToOuterDisposeScope();
    }
}
