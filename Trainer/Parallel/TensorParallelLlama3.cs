using TorchSharp;
using TorchSharp.Modules;
using Trainer.Models;
using static TorchSharp.torch;

namespace Trainer.Parallel;

/// <summary>
/// A TP rank's shard of <see cref="Llama3"/>: wte vocab-parallel; per block c_attn column-parallel with rows
/// [q heads r·H/tp… | k heads r·KV/tp… | v heads r·KV/tp…] (GQA stays local: the rank's query heads use the rank's KV
/// heads), RoPE on the local heads, attn.c_proj row-parallel; c_fc/c_fc2 column-parallel, mlp.c_proj row-parallel;
/// RMSNorms replicated; lm_head column-parallel over the vocabulary (padded with zero rows to a multiple of TP),
/// giving this rank's (B,T,V/tp) logits. Under SP: embeddings reduce-scattered along T, RMSNorms/residuals on
/// (B,T/tp,C).
/// </summary>
public sealed class TensorParallelLlama3 : TensorParallelLm
{
    readonly VocabParallelEmbedding? wte;
    readonly ModuleList<TpLlama3Block> h;
    readonly RmsNorm? ln_f;
    readonly ColumnParallelLinear? lm_head;
    readonly RopeTables rope;

    internal TensorParallelLlama3(ModelConfig cfg, IReadOnlyDictionary<string, Tensor> full, ICommunicator tp, bool sequenceParallel, ModelPart? part = null)
        : base("LLaMA3TP", cfg, tp, sequenceParallel, part)
    {
        if (cfg.Kind != ModelKind.LLaMA3) throw new ArgumentException($"'{cfg.Name}' is not a LLaMA-3 config");
        using (no_grad())
        {
            if (Part.Embedding) wte = VocabParallelEmbedding.FromFull(full["wte"], tp, sequenceParallel);
            h = new ModuleList<TpLlama3Block>(Enumerable.Range(Part.Start, Part.Count).Select(i => new TpLlama3Block(cfg, full, $"h.{i}.", tp, sequenceParallel)).ToArray());
            if (Part.Head)
            {
                ln_f = ReplicatedRmsNorm(cfg, full["ln_f.weight"]);
                lm_head = ColumnParallelLinear.FromFull(full["lm_head.weight"], null, tp, sequenceParallel: sequenceParallel, rows: VocabSpec);
            }
        }
        RegisterComponents();
        rope = new RopeTables(cfg);
    }

    internal static RmsNorm ReplicatedRmsNorm(ModelConfig cfg, Tensor full)
    {
        var n = new RmsNorm(cfg.NEmbd, cfg.NormEps);
        n.to(full.dtype);
        CopyInto(n.weight, full);
        return n;
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = CheckPartInput(input);
        // Attention always sees the whole sequence (column-parallel inputs are gathered under SP).
        var (cos, sin) = rope.For(FullLength(x), x.device);
        if (Part.Embedding) x = wte!.forward(x);
        foreach (var block in h) x = block.forward(x, cos, sin);
        if (!Part.Head) return x.MoveToOuterDisposeScope();
        x = ln_f!.forward(x);
        return lm_head!.forward(x).MoveToOuterDisposeScope();
    }

    public override IReadOnlyList<(string Name, Tensor Tensor, ShardSpec? Spec)> Shards()
    {
        long d = Config.HeadDim;
        var list = new List<(string, Tensor, ShardSpec?)>();
        if (Part.Embedding) list.Add(("wte", wte!.weight, wte.Spec));
        void Each(string n, Func<TpLlama3Block, Tensor> f, ShardSpec? spec) { for (int i = 0; i < h.Count; i++) list.Add(($"h.{Part.Start + i}.{n}", f(h[i]), spec)); }
        Each("ln_1.weight", b => b.ln_1.weight, null);
        Each("attn.c_attn.weight", b => b.c_attn.weight, QkvSpec(Config));
        Each("attn.c_proj.weight", b => b.attn_c_proj.weight, ShardSpec.Fused(1, Config.NEmbd));
        Each("ln_2.weight", b => b.ln_2.weight, null);
        Each("mlp.c_fc.weight", b => b.c_fc.weight, ShardSpec.Fused(0, Config.FfnHidden));
        Each("mlp.c_fc2.weight", b => b.c_fc2.weight, ShardSpec.Fused(0, Config.FfnHidden));
        Each("mlp.c_proj.weight", b => b.mlp_c_proj.weight, ShardSpec.Fused(1, Config.FfnHidden));
        if (Part.Head)
        {
            list.Add(("ln_f.weight", ln_f!.weight, null));
            list.Add(("lm_head.weight", lm_head!.weight, lm_head.Spec));
        }
        return list;
    }

    internal static ShardSpec QkvSpec(ModelConfig cfg) =>
        ShardSpec.Fused(0, (long)cfg.NHead * cfg.HeadDim, (long)cfg.NKvHead * cfg.HeadDim, (long)cfg.NKvHead * cfg.HeadDim);

    protected override void Dispose(bool disposing)
    {
        if (disposing) rope.Dispose();
        base.Dispose(disposing);
    }
}

internal sealed class TpLlama3Block : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    internal readonly RmsNorm ln_1, ln_2;
    internal readonly ColumnParallelLinear c_attn, c_fc, c_fc2;
    internal readonly RowParallelLinear attn_c_proj, mlp_c_proj;
    readonly int localHeads, localKvHeads, headDim;

    public TpLlama3Block(ModelConfig cfg, IReadOnlyDictionary<string, Tensor> full, string prefix, ICommunicator tp, bool sp) : base("Block")
    {
        localHeads = cfg.NHead / tp.Size; localKvHeads = cfg.NKvHead / tp.Size; headDim = cfg.HeadDim;
        ln_1 = TensorParallelLlama3.ReplicatedRmsNorm(cfg, full[prefix + "ln_1.weight"]);
        ln_2 = TensorParallelLlama3.ReplicatedRmsNorm(cfg, full[prefix + "ln_2.weight"]);
        c_attn = ColumnParallelLinear.FromFull(full[prefix + "attn.c_attn.weight"], null, tp, sequenceParallel: sp, rows: TensorParallelLlama3.QkvSpec(cfg));
        attn_c_proj = RowParallelLinear.FromFull(full[prefix + "attn.c_proj.weight"], null, tp, sequenceParallel: sp);
        c_fc = ColumnParallelLinear.FromFull(full[prefix + "mlp.c_fc.weight"], null, tp, sequenceParallel: sp);
        c_fc2 = ColumnParallelLinear.FromFull(full[prefix + "mlp.c_fc2.weight"], null, tp, sequenceParallel: sp);
        mlp_c_proj = RowParallelLinear.FromFull(full[prefix + "mlp.c_proj.weight"], null, tp, sequenceParallel: sp);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        x = x + Llama3Attention.Apply(ln_1.forward(x), cos, sin, c_attn, attn_c_proj, localHeads, localKvHeads, headDim);
        x = x + Llama3Mlp.Apply(ln_2.forward(x), c_fc, c_fc2, mlp_c_proj);
        return x.MoveToOuterDisposeScope();
    }
}
