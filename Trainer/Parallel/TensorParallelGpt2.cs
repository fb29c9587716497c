using TorchSharp;
using TorchSharp.Modules;
using Trainer.Models;
using static TorchSharp.torch;

namespace Trainer.Parallel;

/// <summary>
/// A TP rank's shard of <see cref="Gpt2"/>: wte vocab-parallel (rows of the padded vocabulary) and the output head
/// tied to that same shard, giving this rank's (B,T,Vp/tp) logits (columns ≥ V masked by the loss); per block
/// c_attn column-parallel with rows [q_r | k_r | v_r] (H/tp local heads), attn.c_proj and mlp.c_proj row-parallel,
/// c_fc column-parallel; wpe, LayerNorms and the row-parallel biases replicated. Under SP, embeddings are
/// reduce-scattered along T, wpe adds the local positions, and LayerNorms/residuals run on (B,T/tp,C).
/// </summary>
public sealed class TensorParallelGpt2 : TensorParallelLm
{
    // wte: the embedding on the first part; on the last part of a pipeline (without the embeddings) the tied head's copy.
    readonly VocabParallelEmbedding? wte;
    readonly Parameter? wpe;
    readonly ModuleList<TpGpt2Block> h;
    readonly LayerNorm? ln_f;

    internal TensorParallelGpt2(ModelConfig cfg, IReadOnlyDictionary<string, Tensor> full, ICommunicator tp, bool sequenceParallel, ModelPart? part = null)
        : base("GPT2TP", cfg, tp, sequenceParallel, part)
    {
        if (cfg.Kind != ModelKind.GPT2) throw new ArgumentException($"'{cfg.Name}' is not a GPT-2 config");
        using (no_grad())
        {
            if (Part.Embedding || Part.Head) wte = VocabParallelEmbedding.FromFull(full["wte"], tp, sequenceParallel);
            if (Part.Embedding) wpe = new Parameter(full["wpe"].detach().clone());
            h = new ModuleList<TpGpt2Block>(Enumerable.Range(Part.Start, Part.Count).Select(i => new TpGpt2Block(cfg, full, $"h.{i}.", tp, sequenceParallel)).ToArray());
            if (Part.Head) ln_f = ReplicatedLayerNorm(cfg, full, "ln_f.");
        }
        RegisterComponents();
    }

    public override Tensor? TiedHeadCopy => Part.Head && !Part.Embedding ? wte!.weight : null;

    public override Tensor? TiedEmbedding => Part.Embedding == Part.Head ? null : wte!.weight;

    internal static LayerNorm ReplicatedLayerNorm(ModelConfig cfg, IReadOnlyDictionary<string, Tensor> full, string prefix)
    {
        var ln = nn.LayerNorm(cfg.NEmbd, cfg.NormEps, dtype: full[prefix + "weight"].dtype);
        CopyInto(ln.weight!, full[prefix + "weight"]);
        CopyInto(ln.bias!, full[prefix + "bias"]);
        return ln;
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = CheckPartInput(input);
        if (Part.Embedding)
        {
            var (start, length) = LocalPositions(x.shape[1]);
            var pos = arange(start, start + length, dtype: ScalarType.Int64, device: x.device);
            x = wte!.forward(x) + wpe!.index_select(0, pos);
        }
        foreach (var block in h) x = block.forward(x);
        if (!Part.Head) return x.MoveToOuterDisposeScope();
        x = ln_f!.forward(x);
        // Tied head: the same vocab-parallel shard, column-parallel over the vocabulary.
        var logits = ColumnParallelLinear.Apply(x, wte!.weight, null, Tp, SequenceParallel, gatherOutput: false);
        return logits.MoveToOuterDisposeScope();
    }

    public override IReadOnlyList<(string Name, Tensor Tensor, ShardSpec? Spec)> Shards()
    {
        long c = Config.NEmbd;
        var list = new List<(string, Tensor, ShardSpec?)>();
        if (Part.Embedding) { list.Add(("wte", wte!.weight, wte.Spec)); list.Add(("wpe", wpe!, null)); }
        void Each(string n, Func<TpGpt2Block, Tensor> f, ShardSpec? spec) { for (int i = 0; i < h.Count; i++) list.Add(($"h.{Part.Start + i}.{n}", f(h[i]), spec)); }
        var qkv = ShardSpec.Fused(0, c, c, c);
        var rowIn = ShardSpec.Fused(1, c);
        var fcOut = ShardSpec.Fused(0, Config.FfnHidden);
        var projIn = ShardSpec.Fused(1, Config.FfnHidden);
        Each("ln_1.weight", b => b.ln_1.weight!, null);
        Each("ln_1.bias", b => b.ln_1.bias!, null);
        Each("attn.c_attn.weight", b => b.c_attn.weight, qkv);
        Each("attn.c_attn.bias", b => b.c_attn.bias!, qkv);
        Each("attn.c_proj.weight", b => b.attn_c_proj.weight, rowIn);
        Each("attn.c_proj.bias", b => b.attn_c_proj.bias!, null);
        Each("ln_2.weight", b => b.ln_2.weight!, null);
        Each("ln_2.bias", b => b.ln_2.bias!, null);
        Each("mlp.c_fc.weight", b => b.c_fc.weight, fcOut);
        Each("mlp.c_fc.bias", b => b.c_fc.bias!, fcOut);
        Each("mlp.c_proj.weight", b => b.mlp_c_proj.weight, projIn);
        Each("mlp.c_proj.bias", b => b.mlp_c_proj.bias!, null);
        if (Part.Head)
        {
            list.Add(("ln_f.weight", ln_f!.weight!, null));
            list.Add(("ln_f.bias", ln_f.bias!, null));
            // The tied head's copy of wte (a pipeline's last chunk) is listed under its own name.
            if (!Part.Embedding) list.Add((TiedHeadName, wte!.weight, wte.Spec));
        }
        return list;
    }

    /// <summary>The name of the last pipeline chunk's copy of wte in <see cref="Shards"/> (not a weight-file tensor).</summary>
    public const string TiedHeadName = "lm_head(tied wte)";
}

internal sealed class TpGpt2Block : nn.Module<Tensor, Tensor>
{
    internal readonly LayerNorm ln_1, ln_2;
    internal readonly ColumnParallelLinear c_attn, c_fc;
    internal readonly RowParallelLinear attn_c_proj, mlp_c_proj;
    readonly int localHeads, headDim;

    public TpGpt2Block(ModelConfig cfg, IReadOnlyDictionary<string, Tensor> full, string prefix, ICommunicator tp, bool sp) : base("Block")
    {
        long c = cfg.NEmbd;
        localHeads = cfg.NHead / tp.Size; headDim = cfg.HeadDim;
        ln_1 = TensorParallelGpt2.ReplicatedLayerNorm(cfg, full, prefix + "ln_1.");
        ln_2 = TensorParallelGpt2.ReplicatedLayerNorm(cfg, full, prefix + "ln_2.");
        c_attn = ColumnParallelLinear.FromFull(full[prefix + "attn.c_attn.weight"], full[prefix + "attn.c_attn.bias"], tp,
            sequenceParallel: sp, rows: ShardSpec.Fused(0, c, c, c));
        attn_c_proj = RowParallelLinear.FromFull(full[prefix + "attn.c_proj.weight"], full[prefix + "attn.c_proj.bias"], tp, sequenceParallel: sp);
        c_fc = ColumnParallelLinear.FromFull(full[prefix + "mlp.c_fc.weight"], full[prefix + "mlp.c_fc.bias"], tp, sequenceParallel: sp);
        mlp_c_proj = RowParallelLinear.FromFull(full[prefix + "mlp.c_proj.weight"], full[prefix + "mlp.c_proj.bias"], tp, sequenceParallel: sp);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        x = x + Gpt2Attention.Apply(ln_1.forward(x), c_attn, attn_c_proj, localHeads, headDim);
        x = x + Gpt2Mlp.Apply(ln_2.forward(x), c_fc, mlp_c_proj);
        return x.MoveToOuterDisposeScope();
    }
}
