namespace Trainer.Parallel;

/// <summary>The pipeline schedules (--pipeline_schedule).</summary>
public enum PipelineScheduleKind
{
    /// <summary>All forwards, then all backwards (InfiniTrain's): every micro-batch in flight at once.</summary>
    GPipe,
    /// <summary>One forward, one backward (PipeDream-flush / Megatron without virtual stages): stage s holds at most PP − s micro-batches.</summary>
    OneFOneB,
    /// <summary>Megatron's interleaved 1F1B over virtual stages (chunks): needs micro-batches divisible by PP.</summary>
    Interleaved1F1B,
}

/// <summary>One unit of pipeline work: the forward or backward of <paramref name="Chunk"/> (global chunk id) on one micro-batch.</summary>
public readonly record struct PipelineTask(int MicroBatch, int Chunk, bool Forward)
{
    public override string ToString() => $"{(Forward ? "F" : "B")}(m{MicroBatch},c{Chunk})";
}

/// <summary>
/// Which layers and which stage each model chunk has. The model's L layers are cut into PP·VPP chunks in order; chunk g
/// runs on stage g mod PP (Megatron's interleaved assignment), so stage s holds chunks s, s+PP, s+2·PP, …
/// Each chunk has ⌊L/(PP·VPP)⌋ layers and the first L mod (PP·VPP) chunks one more (InfiniTrain's GetStageInfo).
/// The first chunk owns the embeddings, the last the final norm, the head and the loss.
/// </summary>
public static class PipelineChunks
{
    public static int StageOf(int chunk, int stages) => chunk % stages;

    /// <summary>The global id of stage <paramref name="stage"/>'s local chunk <paramref name="local"/>.</summary>
    public static int GlobalChunk(int stage, int local, int stages) => local * stages + stage;

    /// <summary>Layers [Start, Start+Count) of chunk <paramref name="chunk"/> among <paramref name="chunks"/>.</summary>
    public static (int Start, int Count) Layers(int nLayer, int chunks, int chunk)
    {
        if (chunks < 1 || chunk < 0 || chunk >= chunks) throw new ArgumentOutOfRangeException(nameof(chunk), $"chunk {chunk} of {chunks}");
        if (nLayer < chunks) throw new ArgumentException($"{chunks} model chunks need at least {chunks} layers (the model has {nLayer})");
        int q = nLayer / chunks, r = nLayer % chunks;
        return (chunk * q + Math.Min(chunk, r), q + (chunk < r ? 1 : 0));
    }
}

/// <summary>
/// A pipeline schedule as a pure task table: for every stage, the ordered list of forward/backward tasks it runs over
/// the step's micro-batches and its chunks. Dependencies: F(m,g) needs F(m,g−1) (the activation it receives);
/// B(m,g) needs F(m,g) and B(m,g+1) (the gradient it receives). Sends are buffered, receives block, messages between
/// two stages arrive in send order; every table here completes under those rules (tests simulate it).
/// </summary>
public sealed class PipelineSchedule
{
    readonly PipelineTask[][] _tasks;

    public PipelineScheduleKind Kind { get; }
    public int Stages { get; }
    public int VirtualStages { get; }
    public int MicroBatches { get; }
    public int Chunks => Stages * VirtualStages;

    PipelineSchedule(PipelineScheduleKind kind, int stages, int virtualStages, int microBatches, PipelineTask[][] tasks)
    {
        (Kind, Stages, VirtualStages, MicroBatches, _tasks) = (kind, stages, virtualStages, microBatches, tasks);
    }

    /// <summary>Stage <paramref name="stage"/>'s tasks, in the order it runs them.</summary>
    public IReadOnlyList<PipelineTask> Tasks(int stage) => _tasks[stage];

    /// <summary>The flag's spelling of each kind.</summary>
    public static string Name(PipelineScheduleKind kind) => kind switch
    {
        PipelineScheduleKind.GPipe => "gpipe",
        PipelineScheduleKind.OneFOneB => "1f1b",
        _ => "interleaved-1f1b",
    };

    public static PipelineScheduleKind? Parse(string name) =>
        Enum.GetValues<PipelineScheduleKind>().Cast<PipelineScheduleKind?>().FirstOrDefault(k => Name(k!.Value) == name.Trim().ToLowerInvariant());

    /// <summary>Why <paramref name="kind"/> cannot run this pipeline, or null when it can.</summary>
    public static string? Unsupported(PipelineScheduleKind kind, int stages, int virtualStages, int microBatches) => kind switch
    {
        _ when stages < 1 || virtualStages < 1 || microBatches < 1 => $"needs PP, VPP and micro-batches ≥ 1 (got {stages}, {virtualStages}, {microBatches})",
        PipelineScheduleKind.OneFOneB when virtualStages > 1 => $"1f1b runs one chunk per stage; with --virtual_pipeline_parallel={virtualStages} use interleaved-1f1b or gpipe",
        PipelineScheduleKind.Interleaved1F1B when virtualStages == 1 => "interleaved-1f1b needs --virtual_pipeline_parallel > 1; use 1f1b",
        PipelineScheduleKind.Interleaved1F1B when microBatches % stages != 0 =>
            $"interleaved-1f1b needs the micro-batches per step (gradient accumulation steps, {microBatches}) divisible by --pipeline_parallel={stages}",
        _ => null,
    };

    /// <summary>The schedule that holds the fewest activations in flight among those that can run: 1F1B without
    /// virtual stages, interleaved 1F1B with them (when the micro-batches divide by PP), else GPipe.</summary>
    public static PipelineScheduleKind Default(int stages, int virtualStages, int microBatches) =>
        Enum.GetValues<PipelineScheduleKind>()
            .Where(k => Unsupported(k, stages, virtualStages, microBatches) is null)
            .OrderBy(k => Create(k, stages, virtualStages, microBatches).MaxInFlight())
            .ThenByDescending(k => (int)k)
            .First();

    /// <summary>The table of <paramref name="kind"/>; throws <see cref="ArgumentException"/> with <see cref="Unsupported"/>'s reason.</summary>
    public static PipelineSchedule Create(PipelineScheduleKind kind, int stages, int virtualStages, int microBatches)
    {
        if (Unsupported(kind, stages, virtualStages, microBatches) is { } why) throw new ArgumentException($"--pipeline_schedule={Name(kind)}: {why}");
        var tasks = new PipelineTask[stages][];
        for (int s = 0; s < stages; s++)
            tasks[s] = kind switch
            {
                PipelineScheduleKind.GPipe => GPipe(s, stages, virtualStages, microBatches, backward: true).ToArray(),
                PipelineScheduleKind.OneFOneB => OneFOneB(s, stages, microBatches).ToArray(),
                _ => Interleaved(s, stages, virtualStages, microBatches).ToArray(),
            };
        return new PipelineSchedule(kind, stages, virtualStages, microBatches, tasks);
    }

    /// <summary>Forwards only, micro-batch by micro-batch (evaluation).</summary>
    public static PipelineSchedule ForwardOnly(int stages, int virtualStages, int microBatches)
    {
        var tasks = Enumerable.Range(0, stages).Select(s => GPipe(s, stages, virtualStages, microBatches, backward: false).ToArray()).ToArray();
        return new PipelineSchedule(PipelineScheduleKind.GPipe, stages, virtualStages, microBatches, tasks);
    }

    /// <summary>The most chunk activations stage <paramref name="stage"/> (all stages when null) holds at once:
    /// forwards run whose backward has not.</summary>
    public int MaxInFlight(int? stage = null)
    {
        int Max(int s)
        {
            int live = 0, max = 0;
            foreach (var t in _tasks[s]) { live += t.Forward ? 1 : -1; max = Math.Max(max, live); }
            return max;
        }
        return stage is { } one ? Max(one) : Enumerable.Range(0, Stages).Max(Max);
    }

    // GPipe: forwards in (micro-batch, chunk) order, then backwards in (micro-batch, reversed chunk) order.
    static IEnumerable<PipelineTask> GPipe(int s, int pp, int vpp, int m, bool backward)
    {
        for (int mb = 0; mb < m; mb++)
            for (int l = 0; l < vpp; l++) yield return new(mb, PipelineChunks.GlobalChunk(s, l, pp), true);
        if (!backward) yield break;
        for (int mb = 0; mb < m; mb++)
            for (int l = vpp - 1; l >= 0; l--) yield return new(mb, PipelineChunks.GlobalChunk(s, l, pp), false);
    }

    // 1F1B: PP−s−1 warm-up forwards, then one forward / one backward, then the remaining backwards.
    static IEnumerable<PipelineTask> OneFOneB(int s, int pp, int m)
    {
        int warmup = Math.Min(pp - s - 1, m);
        for (int i = 0; i < warmup; i++) yield return new(i, s, true);
        for (int i = 0; i < m - warmup; i++)
        {
            yield return new(warmup + i, s, true);
            yield return new(i, s, false);
        }
        for (int i = m - warmup; i < m; i++) yield return new(i, s, false);
    }

    // Megatron's forward_backward_pipelining_with_interleaving: virtual micro-batch k runs micro-batch
    // (k / (PP·VPP))·PP + k mod PP on local chunk (k mod (PP·VPP)) / PP (reversed for backwards); warm-up
    // (PP−s−1)·2 + (VPP−1)·PP forwards (all of them when M = PP), then 1F1B, then the remaining backwards.
    static IEnumerable<PipelineTask> Interleaved(int s, int pp, int vpp, int m)
    {
        int total = m * vpp;
        int warmup = m == pp ? total : Math.Min((pp - s - 1) * 2 + (vpp - 1) * pp, total);
        PipelineTask At(int k, bool forward)
        {
            int group = pp * vpp;
            int micro = k / group * pp + k % pp;
            int local = k % group / pp;
            if (!forward) local = vpp - 1 - local;
            return new(micro, PipelineChunks.GlobalChunk(s, local, pp), forward);
        }
        for (int k = 0; k < warmup; k++) yield return At(k, true);
        for (int k = 0; k < total - warmup; k++)
        {
            yield return At(warmup + k, true);
            yield return At(k, false);
        }
        for (int k = total - warmup; k < total; k++) yield return At(k, false);
    }

    /// <summary>
    /// The messages a stage sends, in order, as (destination stage, message): the output of F(m,g) goes to chunk g+1's
    /// stage, the input gradient of B(m,g) to chunk g−1's stage. A receiver reads a peer's messages in this order.
    /// </summary>
    public IEnumerable<(int To, PipelineMessage Message)> Sends(int stage)
    {
        foreach (var t in _tasks[stage])
        {
            if (t.Forward && t.Chunk < Chunks - 1) yield return (PipelineChunks.StageOf(t.Chunk + 1, Stages), new(t.MicroBatch, t.Chunk, false));
            if (!t.Forward && t.Chunk > 0) yield return (PipelineChunks.StageOf(t.Chunk - 1, Stages), new(t.MicroBatch, t.Chunk, true));
        }
    }
}

/// <summary>A tensor between stages: the output activation of chunk <paramref name="Chunk"/> on micro-batch
/// <paramref name="MicroBatch"/>, or (<paramref name="Gradient"/>) the gradient of that chunk's input.</summary>
public readonly record struct PipelineMessage(int MicroBatch, int Chunk, bool Gradient);
