using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Trainer.Models;

/// <summary>GPT-2 as in llm.c: wte (Vp,C) padded, wpe, pre-LN blocks, GELU(tanh), head tied to wte[:V].</summary>
public sealed class Gpt2 : CausalLm
{
    readonly Embedding wte;
    readonly Embedding wpe;
    readonly ModuleList<Gpt2Block> h;
    readonly LayerNorm ln_f;

    public Gpt2(ModelConfig cfg) : base("GPT2", cfg)
    {
        if (cfg.Kind != ModelKind.GPT2) throw new ArgumentException($"'{cfg.Name}' is not a GPT-2 config");
        wte = nn.Embedding(cfg.PaddedVocabSize, cfg.NEmbd);
        wpe = nn.Embedding(cfg.BlockSize, cfg.NEmbd);
        h = new ModuleList<Gpt2Block>(Enumerable.Range(0, cfg.NLayer).Select(i => new Gpt2Block(cfg)).ToArray());
        ln_f = nn.LayerNorm(cfg.NEmbd, cfg.NormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor idx)
    {
        using var scope = NewDisposeScope();
        idx = CheckIdx(idx);
        long t = idx.shape[1];
        var pos = arange(t, dtype: ScalarType.Int64, device: idx.device);
        var x = wte.forward(idx) + wpe.forward(pos);
        foreach (var block in h) x = block.forward(x);
        x = ln_f.forward(x);
        // Tied head over the real vocabulary only: the padded rows V..Vp of wte never reach the logits.
        var logits = nn.functional.linear(x, wte.weight!.narrow(0, 0, Config.VocabSize));
        return logits.MoveToOuterDisposeScope();
    }

    public override IReadOnlyList<(string Name, Tensor Tensor)> WeightFileOrder()
    {
        var list = new List<(string, Tensor)> { ("wte", wte.weight!), ("wpe", wpe.weight!) };
        void Each(string n, Func<Gpt2Block, Tensor> f) { for (int i = 0; i < h.Count; i++) list.Add(($"h.{i}.{n}", f(h[i]))); }
        Each("ln_1.weight", b => b.ln_1.weight!);
        Each("ln_1.bias", b => b.ln_1.bias!);
        Each("attn.c_attn.weight", b => b.attn.c_attn.weight!);
        Each("attn.c_attn.bias", b => b.attn.c_attn.bias!);
        Each("attn.c_proj.weight", b => b.attn.c_proj.weight!);
        Each("attn.c_proj.bias", b => b.attn.c_proj.bias!);
        Each("ln_2.weight", b => b.ln_2.weight!);
        Each("ln_2.bias", b => b.ln_2.bias!);
        Each("mlp.c_fc.weight", b => b.mlp.c_fc.weight!);
        Each("mlp.c_fc.bias", b => b.mlp.c_fc.bias!);
        Each("mlp.c_proj.weight", b => b.mlp.c_proj.weight!);
        Each("mlp.c_proj.bias", b => b.mlp.c_proj.bias!);
        list.Add(("ln_f.weight", ln_f.weight!));
        list.Add(("ln_f.bias", ln_f.bias!));
        return list;
    }

    internal override void InitializeWeights(Generator g)
    {
        double std = 0.02, resid = 0.02 / Math.Sqrt(2.0 * Config.NLayer);
        foreach (var (name, t) in WeightFileOrder())
        {
            if (name is "wte" or "wpe") Normal(t, std, g);
            else if (name.EndsWith("c_attn.weight") || name.EndsWith("c_fc.weight")) Normal(t, std, g);
            else if (name.EndsWith("c_proj.weight")) Normal(t, resid, g);
            else if (name.Contains("ln_") && name.EndsWith(".weight")) t.fill_(1.0);
            else t.zero_();   // biases
        }
        // llm.c pads the vocabulary with zero rows: they are never read by the head, and stay zero in weight files.
        if (Config.PaddedVocabSize > Config.VocabSize)
            wte.weight!.narrow(0, Config.VocabSize, Config.PaddedVocabSize - Config.VocabSize).zero_();
    }
}

internal sealed class Gpt2Block : nn.Module<Tensor, Tensor>
{
    internal readonly LayerNorm ln_1;
    internal readonly Gpt2Attention attn;
    internal readonly LayerNorm ln_2;
    internal readonly Gpt2Mlp mlp;

    public Gpt2Block(ModelConfig cfg) : base("Block")
    {
        ln_1 = nn.LayerNorm(cfg.NEmbd, cfg.NormEps);
        attn = new Gpt2Attention(cfg);
        ln_2 = nn.LayerNorm(cfg.NEmbd, cfg.NormEps);
        mlp = new Gpt2Mlp(cfg);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        x = x + attn.forward(ln_1.forward(x));
        x = x + mlp.forward(ln_2.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

internal sealed class Gpt2Attention : nn.Module<Tensor, Tensor>
{
    internal readonly Linear c_attn;
    internal readonly Linear c_proj;
    readonly int nHead, headDim;

    public Gpt2Attention(ModelConfig cfg) : base("CausalSelfAttention")
    {
        nHead = cfg.NHead; headDim = cfg.HeadDim;
        c_attn = nn.Linear(cfg.NEmbd, 3 * cfg.NEmbd, hasBias: true);
        c_proj = nn.Linear(cfg.NEmbd, cfg.NEmbd, hasBias: true);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Apply(x, c_attn, c_proj, nHead, headDim);

    /// <summary>Causal self-attention over the <paramref name="nHead"/> heads that <paramref name="c_attn"/> produces
    /// as [q | k | v] (each nHead·headDim wide), projected by <paramref name="c_proj"/>. Shared with the TP shard
    /// (<see cref="Trainer.Parallel.TpGpt2Block"/>), which passes its parallel layers and its H/tp local heads.</summary>
    internal static Tensor Apply(Tensor x, nn.Module<Tensor, Tensor> c_attn, nn.Module<Tensor, Tensor> c_proj, int nHead, int headDim)
    {
        using var scope = NewDisposeScope();
        var qkv = c_attn.call(x);                           // (B,T,3·nHead·hd): [q | k | v]; full T under SP
        long b = qkv.shape[0], t = qkv.shape[1], width = (long)nHead * headDim;
        var parts = qkv.split(width, 2);
        var q = parts[0].view(b, t, nHead, headDim).transpose(1, 2);
        var k = parts[1].view(b, t, nHead, headDim).transpose(1, 2);
        var v = parts[2].view(b, t, nHead, headDim).transpose(1, 2);
        var y = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        y = y.transpose(1, 2).contiguous().view(b, t, width);
        return c_proj.call(y).MoveToOuterDisposeScope();
    }
}

internal sealed class Gpt2Mlp : nn.Module<Tensor, Tensor>
{
    internal readonly Linear c_fc;
    internal readonly Linear c_proj;

    public Gpt2Mlp(ModelConfig cfg) : base("MLP")
    {
        c_fc = nn.Linear(cfg.NEmbd, cfg.FfnHidden, hasBias: true);
        c_proj = nn.Linear(cfg.FfnHidden, cfg.NEmbd, hasBias: true);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Apply(x, c_fc, c_proj);

    /// <summary>c_proj(GELU_tanh(c_fc(x))); shared with the TP shard (column-parallel c_fc, row-parallel c_proj).</summary>
    internal static Tensor Apply(Tensor x, nn.Module<Tensor, Tensor> c_fc, nn.Module<Tensor, Tensor> c_proj)
    {
        using var scope = NewDisposeScope();
        var hdn = nn.functional.gelu(c_fc.call(x), GELU.Approximate.tanh);
        return c_proj.call(hdn).MoveToOuterDisposeScope();
    }
}
