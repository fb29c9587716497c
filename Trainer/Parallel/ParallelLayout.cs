using Trainer.Models;

namespace Trainer.Parallel;

/// <summary>The parallel flags as given on the command line (InfiniTrain's names).</summary>
/// <param name="TensorParallel">--tensor_parallel: TP ranks that split every layer.</param>
/// <param name="SequenceParallel">--sequence_parallel: split activations outside attention/MLP along T over TP.</param>
/// <param name="PipelineParallel">--pipeline_parallel: pipeline stages.</param>
/// <param name="VirtualPipelineParallel">--virtual_pipeline_parallel: model chunks per stage (interleaved schedule).</param>
/// <param name="ZeroStage">--zero_stage: 0 (replicated optimizer), 1 (optimizer state sharded over DP), 2 (gradients too).</param>
public sealed record ParallelFlags(int TensorParallel = 1, bool SequenceParallel = false, int PipelineParallel = 1,
    int VirtualPipelineParallel = 1, int ZeroStage = 0);

/// <summary>The numbers of a model that a layout must divide. Plain ints, so any caller can build one.</summary>
/// <param name="Name">For messages.</param>
/// <param name="Heads">n_head (query heads).</param>
/// <param name="KvHeads">n_kv_head (GPT-2: = n_head).</param>
/// <param name="Hidden">n_embd (C).</param>
/// <param name="VocabRows">Rows of the token embedding / output head that TP splits: GPT-2's padded vocabulary
/// (llm.c pads 50257 to 50304 = 393·128, the size InfiniTrain pads to when TP &gt; 1; the padded logits are masked out
/// of the loss), LLaMA-3's vocabulary (not padded).</param>
/// <param name="FfnHidden">MLP hidden width (GPT-2: 4C; LLaMA-3: from ffn_dim_multiplier / multiple_of).</param>
/// <param name="Layers">n_layer.</param>
public sealed record ModelDims(string Name, int Heads, int KvHeads, int Hidden, int VocabRows, int FfnHidden, int Layers)
{
    public static ModelDims Of(ModelConfig c) => new(c.Name, c.NHead, c.NKvHead, c.NEmbd, c.PaddedVocabSize, c.FfnHidden, c.NLayer);
}

/// <summary>Batch flags: --batch_size (B, per rank), --sequence_length (T), --total_batch_size (tokens per step).</summary>
public sealed record BatchDims(int BatchSize, int SequenceLength, int TotalBatchSize);

/// <summary>
/// How the ranks of a world are arranged: <c>world = TP · DP · PP</c>, in Megatron/InfiniTrain order TP-DP-PP (TP
/// fastest): <c>rank = tp + TP·(dp + DP·pp)</c>. So TP groups are runs of consecutive ranks (one node's fast links),
/// DP groups stride by TP, PP groups by TP·DP. Example (world 8, TP 4, DP 2): DP groups [0,4],[1,5],[2,6],[3,7]; TP
/// groups [0..3],[4..7]. Build one through the constructor (it throws on the problems <see cref="Validate"/> finds
/// without a model), or validate flags first with <see cref="Validate"/> and turn its messages into a usage error.
/// </summary>
public sealed record ParallelLayout
{
    public int World { get; }
    public int Tp { get; }
    public int Dp { get; }
    public int Pp { get; }
    public int Vpp { get; }
    public bool Sp { get; }
    public int ZeroStage { get; }

    public ParallelLayout(int world, int tp = 1, int pp = 1, int vpp = 1, bool sp = false, int zeroStage = 0)
    {
        var problems = Validate(world, new ParallelFlags(tp, sp, pp, vpp, zeroStage));
        if (problems.Count > 0) throw new ArgumentException(string.Join("; ", problems));
        (World, Tp, Pp, Vpp, Sp, ZeroStage) = (world, tp, pp, vpp, sp, zeroStage);
        Dp = world / (tp * pp);
    }

    public static ParallelLayout Of(int world, ParallelFlags f) =>
        new(world, f.TensorParallel, f.PipelineParallel, f.VirtualPipelineParallel, f.SequenceParallel, f.ZeroStage);

    /// <summary>The single-rank layout.</summary>
    public static ParallelLayout Single { get; } = new(1);

    /// <summary>The world rank at coordinates (tp, dp, pp).</summary>
    public int RankOf(int tp, int dp, int pp)
    {
        if ((uint)tp >= (uint)Tp || (uint)dp >= (uint)Dp || (uint)pp >= (uint)Pp)
            throw new ArgumentOutOfRangeException(nameof(tp), $"coordinates (tp {tp}, dp {dp}, pp {pp}) outside TP {Tp} x DP {Dp} x PP {Pp}");
        return tp + Tp * (dp + Dp * pp);
    }

    /// <summary>The coordinates of a world rank.</summary>
    public (int Tp, int Dp, int Pp) Coord(int rank)
    {
        if ((uint)rank >= (uint)World) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"not a rank of a world of {World}");
        return (rank % Tp, rank / Tp % Dp, rank / (Tp * Dp));
    }

    /// <summary>Ranks with this rank's TP and PP coordinates, in DP order (they hold replicas / ZeRO shards of the same weights).</summary>
    public IReadOnlyList<int> DpGroup(int rank)
    {
        var (tp, _, pp) = Coord(rank);
        return Enumerable.Range(0, Dp).Select(d => RankOf(tp, d, pp)).ToArray();
    }

    /// <summary>Ranks with this rank's DP and PP coordinates, in TP order (they split each layer of one stage).</summary>
    public IReadOnlyList<int> TpGroup(int rank)
    {
        var (_, dp, pp) = Coord(rank);
        return Enumerable.Range(0, Tp).Select(t => RankOf(t, dp, pp)).ToArray();
    }

    /// <summary>Ranks with this rank's TP and DP coordinates, in stage order.</summary>
    public IReadOnlyList<int> PpGroup(int rank)
    {
        var (tp, dp, _) = Coord(rank);
        return Enumerable.Range(0, Pp).Select(p => RankOf(tp, dp, p)).ToArray();
    }

    /// <summary>Ranks with this rank's DP coordinate (TP × PP: one whole model), in rank order — the group over which
    /// a gradient norm or a "step succeeded" decision is reduced (Megatron's model-parallel group).</summary>
    public IReadOnlyList<int> ModelParallelGroup(int rank)
    {
        var (_, dp, _) = Coord(rank);
        return Enumerable.Range(0, Pp).SelectMany(p => Enumerable.Range(0, Tp).Select(t => RankOf(t, dp, p))).ToArray();
    }

    public override string ToString() =>
        $"world {World} = TP {Tp} x DP {Dp} x PP {Pp}" + (Vpp > 1 ? $" (vPP {Vpp})" : "") + (Sp ? ", SP" : "") + (ZeroStage > 0 ? $", ZeRO-{ZeroStage}" : "");

    /// <summary>
    /// Every reason the flags cannot run on <paramref name="world"/> ranks with this model and batch, each a message
    /// naming the flags and the numbers; empty when they can. Pure: builds nothing. <paramref name="model"/> and
    /// <paramref name="batch"/> are optional (checks that need them are skipped). <paramref name="worldFlag"/> names
    /// where the world size came from, for the messages.
    /// </summary>
    public static IReadOnlyList<string> Validate(int world, ParallelFlags flags, ModelDims? model = null, BatchDims? batch = null,
        string worldFlag = "--nthread_per_process")
    {
        var problems = new List<string>();
        void Require(bool ok, string message) { if (!ok) problems.Add(message); }
        int tp = flags.TensorParallel, pp = flags.PipelineParallel, vpp = flags.VirtualPipelineParallel, zero = flags.ZeroStage;

        Require(world >= 1, $"{worldFlag}={world}: the world needs at least one rank");
        Require(tp >= 1, $"--tensor_parallel={tp} must be at least 1");
        Require(pp >= 1, $"--pipeline_parallel={pp} must be at least 1");
        Require(vpp >= 1, $"--virtual_pipeline_parallel={vpp} must be at least 1");
        bool shapeOk = world >= 1 && tp >= 1 && pp >= 1;
        if (shapeOk)
            Require(world % (tp * pp) == 0,
                $"world size {world} ({worldFlag}) is not divisible by --tensor_parallel={tp} x --pipeline_parallel={pp} = {tp * pp}");
        Require(!flags.SequenceParallel || tp > 1, $"--sequence_parallel needs --tensor_parallel > 1 (got --tensor_parallel={tp})");
        Require(vpp <= 1 || pp > 1, $"--virtual_pipeline_parallel={vpp} needs --pipeline_parallel > 1 (got --pipeline_parallel={pp})");
        if (zero == 3) problems.Add("--zero_stage=3: ZeRO-3 (sharded parameters) is not supported; use --zero_stage 0, 1 or 2");
        else Require(zero is 0 or 1 or 2, $"--zero_stage={zero} must be 0, 1 or 2");

        if (model is { } m && tp >= 1)
        {
            string of = $"of model '{m.Name}'";
            void Divisible(int value, string name) =>
                Require(value % tp == 0, $"{name} {value} {of} is not divisible by --tensor_parallel={tp}");
            Divisible(m.Heads, "n_head");
            Divisible(m.KvHeads, "n_kv_head");
            Divisible(m.Hidden, "n_embd (hidden size)");
            Divisible(m.VocabRows, "the (padded) vocabulary");
            Divisible(m.FfnHidden, "the FFN hidden size");
            if (pp >= 1 && vpp >= 1)
                Require(pp * vpp <= m.Layers,
                    $"--pipeline_parallel={pp} x --virtual_pipeline_parallel={vpp} = {pp * vpp} model chunks exceed n_layer {m.Layers} {of}");
        }

        if (batch is { } b)
        {
            if (flags.SequenceParallel && tp > 1)
                Require(b.SequenceLength % tp == 0,
                    $"--sequence_parallel: --sequence_length={b.SequenceLength} is not divisible by --tensor_parallel={tp}");
            if (shapeOk && world % (tp * pp) == 0 && b.BatchSize >= 1 && b.SequenceLength >= 1)
            {
                int dp = world / (tp * pp);
                long perStep = (long)b.BatchSize * b.SequenceLength * dp;
                Require(b.TotalBatchSize > 0 && b.TotalBatchSize % perStep == 0,
                    $"--total_batch_size={b.TotalBatchSize} is not divisible by --batch_size x --sequence_length x DP = {b.BatchSize} x {b.SequenceLength} x {dp} = {perStep}");
            }
        }
        return problems;
    }
}
