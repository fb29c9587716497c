using TorchSharp;
using TorchSharp.Modules;
using Trainer.Models;
using static TorchSharp.torch;

namespace Trainer.Parallel;

/// <summary>
/// One pipeline stage rank's part of a <see cref="CausalLm"/>: its chunks (global ids g = l·PP + stage, see
/// <see cref="PipelineChunks"/>), each a <see cref="TensorParallelLm"/> over the chunk's layers (TP 1 is a TP group of
/// one), cut from the full model so a pipeline run starts from exactly the single-device parameters. The first chunk
/// holds the embeddings, the last the final norm, the head and the loss; under GPT-2 the last chunk also holds a copy
/// of wte for the tied head (see <see cref="AllReduceTiedEmbeddingGrads"/>).
/// A stage is driven by <see cref="PipelineRunner"/>; its own forward is not defined.
/// </summary>
public sealed class PipelineStageModel : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<TensorParallelLm> chunks;

    public int Stage { get; }
    public int Stages { get; }
    public int VirtualStages { get; }
    public ModelConfig Config { get; }

    PipelineStageModel(ModelConfig cfg, int stage, int stages, int virtualStages, TensorParallelLm[] parts) : base("PipelineStage")
    {
        (Config, Stage, Stages, VirtualStages) = (cfg, stage, stages, virtualStages);
        chunks = new ModuleList<TensorParallelLm>(parts);
        RegisterComponents();
    }

    /// <summary>Stage <paramref name="stage"/> of <paramref name="stages"/> with <paramref name="virtualStages"/> chunks,
    /// TP rank <c>tp.Rank</c>'s slices; <paramref name="full"/> is only read.</summary>
    public static PipelineStageModel FromFull(CausalLm full, Device device, ScalarType dtype, ICommunicator tp, bool sequenceParallel,
        int stage, int stages, int virtualStages)
    {
        int n = stages * virtualStages;
        var parts = Enumerable.Range(0, virtualStages)
            .Select(l => TensorParallelModels.FromFull(full, device, dtype, tp, sequenceParallel,
                ModelPart.Chunk(full.Config, PipelineChunks.GlobalChunk(stage, l, stages), n)))
            .ToArray();
        return new PipelineStageModel(full.Config, stage, stages, virtualStages, parts);
    }

    /// <summary>This stage's chunks, local order (global ids Stage, Stage+PP, …).</summary>
    public IReadOnlyList<TensorParallelLm> Chunks => chunks.ToArray();

    /// <summary>The chunk with global id <paramref name="chunk"/> (which must be on this stage).</summary>
    public TensorParallelLm Chunk(int chunk) =>
        PipelineChunks.StageOf(chunk, Stages) == Stage ? chunks[chunk / Stages] : throw new ArgumentException($"chunk {chunk} is not on stage {Stage}");

    public bool IsLast => Stage == Stages - 1;

    /// <summary>The last chunk's loss (vocab-parallel cross entropy); only the last stage computes it.</summary>
    public Tensor Loss(Tensor logits, Tensor targets) =>
        IsLast ? chunks[^1].Loss(logits, targets) : throw new InvalidOperationException($"stage {Stage} has no head; the loss is the last stage's");

    public override Tensor forward(Tensor input) =>
        throw new InvalidOperationException("a pipeline stage runs through PipelineRunner, chunk by chunk");

    /// <summary>LoRA: the adapters of every chunk (each chunk holds its own blocks' adapters), local chunk order.</summary>
    public IReadOnlyList<Trainer.Lora.LoraAdapter> LoraAdapters => chunks.SelectMany(c => c.LoraAdapters).ToList();

    /// <summary>Parameters every TP rank holds whole (counted once in the global norm; summed over TP under SP).</summary>
    public IReadOnlyList<Tensor> ReplicatedParameters() => chunks.SelectMany(c => c.ReplicatedParameters()).ToList();

    /// <summary>GPT-2: the last chunk's copy of wte (not counted in the global norm: the first stage's wte is).</summary>
    public Tensor? TiedHeadCopy => chunks.Select(c => c.TiedHeadCopy).FirstOrDefault(t => t is not null);

    /// <summary>Under SP, sums the TP-replicated parameters' gradients over TP (see <see cref="TensorParallelLm.AllReduceSequenceParallelGrads"/>).</summary>
    public void AllReduceSequenceParallelGrads()
    {
        foreach (var c in chunks) c.AllReduceSequenceParallelGrads();
    }

    /// <summary>
    /// GPT-2's tied embedding across the pipeline (Megatron's _allreduce_word_embedding_grads): the first stage's wte
    /// and the last stage's head copy start equal; their gradients are summed here (both stages end with g_first +
    /// g_last, the same bits: addition commutes), so both copies take the same optimizer steps and stay equal — as the
    /// single-device model's one tensor. Collective over <paramref name="pp"/>: every stage calls it (LLaMA-3 and
    /// middle stages return at once, and so does every stage under LoRA: the embedding is frozen on both ends).
    /// Call after the schedule, before the DP reduction.
    /// </summary>
    public void AllReduceTiedEmbeddingGrads(ICommunicator pp)
    {
        var tied = chunks.Select(c => c.TiedEmbedding).FirstOrDefault(t => t is not null);
        if (tied is null || Stages == 1 || !tied.requires_grad) return;
        int peer = Stage == 0 ? Stages - 1 : 0;
        using var _ = no_grad();
        var g = tied.grad ?? throw new InvalidOperationException($"stage {Stage}: the tied embedding has no gradient");
        pp.Send(g, peer);
        using var other = empty_like(g);
        pp.Recv(other, peer);
        g.add_(other);
    }
}

/// <summary>
/// Runs one stage's part of a <see cref="PipelineSchedule"/>: forwards and backwards of its chunks over the step's
/// micro-batches, activations and their gradients passing to the neighbouring stages with the PP group's Send/Recv
/// in the activation dtype (outside autograd, as PyTorch's pipelining: a received activation is a fresh leaf that
/// requires grad; its .grad after backward is what goes back). Sends are assumed buffered (the thread communicator's
/// are); each message is received in the sender's order, and one that arrives before it is needed waits in a mailbox.
/// </summary>
public sealed class PipelineRunner(PipelineStageModel model, ICommunicator pp)
{
    public PipelineStageModel Model { get; } = model;

    /// <summary>
    /// Forward and backward of every task of <paramref name="schedule"/> for this stage. Micro-batch m's tokens and
    /// targets come from <paramref name="microBatch"/>; the last stage's loss of each is divided by the number of
    /// micro-batches (as gradient accumulation) and backpropagated. Returns the sum of those divided losses on the
    /// last stage, 0 elsewhere. Gradients accumulate into the chunks' parameters.
    /// </summary>
    public float ForwardBackward(PipelineSchedule schedule, Func<int, (Tensor X, Tensor Y)> microBatch)
    {
        using var scope = torch.NewDisposeScope();
        var mail = new Mailbox(schedule, Model.Stage, pp);
        var live = new Dictionary<(int, int), (Tensor Input, Tensor Output)>();
        float lossSum = 0f;
        int last = schedule.Chunks - 1;
        foreach (var task in schedule.Tasks(Model.Stage))
        {
            var (m, g) = (task.MicroBatch, task.Chunk);
            if (task.Forward)
            {
                var (x, y) = microBatch(m);
                var input = g == 0 ? x : mail.Receive(new(m, g - 1, false), ActivationLike(x)).requires_grad_(true);
                var output = Model.Chunk(g).forward(input);
                if (g == last)
                {
                    output = Model.Loss(output, y) / schedule.MicroBatches;
                    lossSum += output.to(ScalarType.Float32).cpu().item<float>();
                }
                else pp.Send(output.detach(), PipelineChunks.StageOf(g + 1, schedule.Stages));
                live[(m, g)] = (input, output);
            }
            else
            {
                var (input, output) = live[(m, g)];
                live.Remove((m, g));
                if (g == last) output.backward();
                else output.backward(new[] { mail.Receive(new(m, g + 1, true), output) });
                if (g > 0) pp.Send(input.grad!, PipelineChunks.StageOf(g - 1, schedule.Stages));
            }
        }
        return lossSum;
    }

    /// <summary>Forwards only (no autograd) over <paramref name="microBatches"/> micro-batches; returns the sum of
    /// their losses on the last stage, 0 elsewhere.</summary>
    public float ForwardOnly(int microBatches, Func<int, (Tensor X, Tensor Y)> microBatch)
    {
        using var scope = torch.NewDisposeScope();
        var batches = new Dictionary<int, (Tensor X, Tensor Y)>();
        (Tensor X, Tensor Y) Batch(int m) => batches.TryGetValue(m, out var b) ? b : batches[m] = microBatch(m);
        float lossSum = 0f;
        Forward(microBatches, m => Batch(m).X, (m, logits) => lossSum += Model.Loss(logits, Batch(m).Y).to(ScalarType.Float32).cpu().item<float>());
        return lossSum;
    }

    /// <summary>The last chunk's output for token ids <paramref name="x"/> (this rank's logits: its TP shard of the
    /// vocabulary), forward only, on the stage holding the last chunk; null on the others. Every stage calls it.</summary>
    public Tensor? ForwardLogits(Tensor x)
    {
        Tensor? logits = null;
        Forward(1, _ => x, (_, output) => logits = output);
        return logits;
    }

    /// <summary>The forward-only schedule: the first chunk reads <paramref name="input"/>(m), the last chunk's output of
    /// micro-batch m goes to <paramref name="last"/> (on the stage holding it).</summary>
    void Forward(int microBatches, Func<int, Tensor> input, Action<int, Tensor> last)
    {
        using var _ = no_grad();
        var schedule = PipelineSchedule.ForwardOnly(Model.Stages, Model.VirtualStages, microBatches);
        var mail = new Mailbox(schedule, Model.Stage, pp);
        foreach (var task in schedule.Tasks(Model.Stage))
        {
            var (m, g) = (task.MicroBatch, task.Chunk);
            var x = input(m);
            var output = Model.Chunk(g).forward(g == 0 ? x : mail.Receive(new(m, g - 1, false), ActivationLike(x)));
            if (g == schedule.Chunks - 1) last(m, output);
            else pp.Send(output, PipelineChunks.StageOf(g + 1, schedule.Stages));
        }
    }

    /// <summary>An empty hidden-state buffer for token ids <paramref name="x"/> (B,T): (B,T,C), (B,T/tp,C) under SP, in the model's dtype.</summary>
    Tensor ActivationLike(Tensor x)
    {
        var first = Model.Chunks[0];
        long t = x.shape[1] / (first.SequenceParallel ? first.Tp.Size : 1);
        var p = first.parameters().First();
        return empty(new[] { x.shape[0], t, Model.Config.NEmbd }, dtype: p.dtype, device: p.device);
    }

    /// <summary>A stage's incoming messages: each peer's arrive in the order its task table sends them; one read
    /// ahead of its turn waits here until its task asks for it.</summary>
    sealed class Mailbox
    {
        readonly ICommunicator _pp;
        readonly Dictionary<int, Queue<PipelineMessage>> _expected = new();
        readonly Dictionary<PipelineMessage, (int From, Tensor Tensor)> _early = new();

        public Mailbox(PipelineSchedule schedule, int stage, ICommunicator pp)
        {
            _pp = pp;
            for (int s = 0; s < schedule.Stages; s++)
                _expected[s] = new Queue<PipelineMessage>(schedule.Sends(s).Where(x => x.To == stage).Select(x => x.Message));
        }

        /// <summary>The tensor of <paramref name="message"/>, received into a buffer shaped like <paramref name="like"/>.</summary>
        public Tensor Receive(PipelineMessage message, Tensor like)
        {
            if (_early.Remove(message, out var early)) return early.Tensor;
            int from = _expected.First(e => e.Value.Contains(message)).Key;
            while (true)
            {
                var next = _expected[from].Dequeue();
                var buffer = empty_like(like);
                _pp.Recv(buffer, from);
                if (next == message) return buffer;
                _early[next] = (from, buffer);
            }
        }
    }
}
