using System.Diagnostics;
using System.Globalization;
using Schedules.Core;
using Schedules.Torch;
using Trainer.Checkpoint;
using Trainer.Models;
using Trainer.Parallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Trainer.Training;

/// <summary>Builds one replica of the model on a device; every call must give bit-identical parameters.</summary>
public delegate nn.Module<Tensor, Tensor> ReplicaFactory(Device device);

/// <summary>Where one rank of this process runs: its device and its communicators.</summary>
public sealed record RankPlacement(Device Device, ProcessGroups Groups);

/// <summary>
/// Builds the model part of every rank of this process, in rank order: whole replicas (TP 1) or tensor-parallel
/// shards cut from one full model. Ranks with the same TP coordinate must get bit-identical parameters.
/// </summary>
public delegate nn.Module<Tensor, Tensor>[] RankModelFactory(IReadOnlyList<RankPlacement> ranks);

/// <summary>Validation tokens, evaluated every <paramref name="Every"/> steps over <paramref name="MaxBatches"/> batches per rank.</summary>
public sealed record ValidationSet(int[] Tokens, int Every, int MaxBatches);

/// <summary>Text sampled every <paramref name="Every"/> steps, <paramref name="Length"/> tokens with the prompt
/// (<see cref="TextSampler"/>), printed with <paramref name="Tokenizer"/>.</summary>
public sealed record TextGeneration(Trainer.Data.TokenizerFile Tokenizer, int Every, int Length);

/// <summary>Mean cross entropy of logits (B,T,V) against targets (B,T).</summary>
public delegate Tensor LossFunction(Tensor logits, Tensor targets);

/// <summary>
/// The training loop. Ranks are threads of this process (TP × DP × PP, <see cref="ParallelLayout"/>) talking through
/// a <see cref="ThreadCommunicator"/>; each owns its model part and a <see cref="DataParallelOptimizer"/> (ZeRO 0/1/2).
/// One step, as Megatron shows it: every rank runs forward/backward over its micro-batches → the loss is averaged over
/// DP and agreed on → gradients are finalized (SP replicated-parameter all-reduce over TP, DP reduce) → clipped on the
/// global norm → optimizer step; then one scheduler steps the LR of every rank's optimizer, and every rank's LR is
/// compared bit for bit. Then log, evaluate, save. The caller has validated the options and checked the inputs.
/// </summary>
public sealed class TrainingRun
{
    readonly TrainOptions _o;
    readonly RankModelFactory _factory;
    readonly LossFunction? _loss;
    readonly DistributedBatches _data;
    readonly TextWriter _out;
    readonly string _dataSha256;

    /// <param name="loss">The loss of a model that is not a <see cref="CausalLm"/> (a CausalLm brings its own:
    /// the vocab-parallel one for a TP shard).</param>
    public TrainingRun(TrainOptions options, RankModelFactory factory, LossFunction? loss, int[] trainTokens, TextWriter output)
    {
        _o = options; _factory = factory; _loss = loss; _out = output;
        if (options.TotalBatchSize % options.TokensPerMicroStep != 0)
            throw new ArgumentException($"total batch size {options.TotalBatchSize} is not divisible by batch_size x sequence_length x DP = {options.BatchSize} x {options.SequenceLength} x {options.DataParallel} = {options.TokensPerMicroStep}");
        _data = new DistributedBatches(trainTokens, options.BatchSize, options.SequenceLength, options.DataParallel, order: options.DataOrder);
        _dataSha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(trainTokens.AsSpan())));
    }

    /// <summary>Data parallelism only: every rank gets a replica from <paramref name="factory"/>.</summary>
    public TrainingRun(TrainOptions options, ReplicaFactory factory, LossFunction? loss, int[] trainTokens, TextWriter output)
        : this(options, Replicas(factory), loss, trainTokens, output) { }

    static RankModelFactory Replicas(ReplicaFactory factory) => ranks =>
    {
        if (ranks.Any(r => r.Groups.Layout.Tp > 1 || r.Groups.Layout.Pp > 1))
            throw new ArgumentException("this model has no tensor- or pipeline-parallel form; use --tensor_parallel=1 --pipeline_parallel=1");
        return ranks.Select(r => factory(r.Device)).ToArray();
    };

    /// <summary>Test hook: called after every step with each rank's model.</summary>
    public Action<int, IReadOnlyList<nn.Module<Tensor, Tensor>>>? AfterStep { get; set; }

    /// <summary>Optional validation loss (--input_val_bin, --val_loss_every).</summary>
    public ValidationSet? Validation { get; set; }

    /// <summary>Optional text generation (--tokenizer_bin, --freq_generate_txt, --text_length).</summary>
    public TextGeneration? Generation { get; set; }

    public string ScheduleDescription => _o.Schedule is null ? "none" : ScheduleJson.Write(_o.Schedule);

    string OptimizerDescription => _o.Optimizer switch
    {
        OptimizerKind.Sgd => $"SGD(momentum={_o.Momentum:R}, nesterov={_o.Nesterov}, weight_decay={_o.WeightDecay:R})",
        OptimizerKind.Adam => $"Adam(betas=({_o.Beta1:R}, {_o.Beta2:R}), eps={_o.Eps:R}, weight_decay={_o.WeightDecay:R})",
        _ => $"AdamW(betas=({_o.Beta1:R}, {_o.Beta2:R}), eps={_o.Eps:R}, weight_decay={_o.WeightDecay:R})",
    };

    /// <summary>What a checkpoint must share with this run to be resumed (README "Resume": the rest is accepted with a note).</summary>
    CheckpointIdentity Identity => new(_o.ModelDescription, ScheduleDescription, OptimizerDescription, _o.BFloat16 ? "bfloat16" : "float32", _o.SequenceLength)
    {
        Seed = _o.Seed, LearningRate = _o.LearningRate, TotalBatchSize = _o.TotalBatchSize, GradClip = _o.GradClip,
        DataSha256 = _dataSha256, DataName = DataName, DataOrder = DataOrderName,
    };

    /// <summary>--data_order as the flag spells it (recorded in trainer.json, compared on resume).</summary>
    string DataOrderName => _o.DataOrder.ToString().ToLowerInvariant();

    string DataName => _o.DataName ?? "the training tokens";

    /// <summary>Settings that may change on resume (they split the same global batch differently), said aloud.</summary>
    IEnumerable<string> ResumeNotes(CheckpointInfo c)
    {
        foreach (var n in c.Notes) yield return n;
        if (c.Meta.BatchSize is int b && b != _o.BatchSize)
            yield return $"resume: --batch_size changed {b} -> {_o.BatchSize} (same global batch of {_o.TotalBatchSize} tokens and data order; losses may differ in the last bits)";
        if (CheckpointLayout.Moves(SavedLayout(c), CheckpointLayout.Of(_o.Layout)))
            yield return $"resume: layout changed {SavedLayout(c)} -> {CheckpointLayout.Of(_o.Layout)} (model and optimizer state consolidated to the single-device layout and cut again; losses may differ in the last bits)";
        else if (c.Meta.DataParallel != _o.DataParallel)
            // Replicated layouts (whole replicas, replicated optimizer) load as they are: ranks = DP.
            yield return $"resume: --nthread_per_process changed {c.Meta.DataParallel} -> {_o.DataParallel} (same global batch of {_o.TotalBatchSize} tokens and data order; losses may differ in the last bits)";
        if (c.Meta.Device is { } dev && dev != _o.Device)
            yield return $"resume: --device changed {dev} -> {_o.Device} (same computation on other hardware; losses may differ in the last bits)";
        if (c.Meta.DataName is { } d && d != DataName)
            yield return $"resume: training data now read from {DataName} (the same tokens as the checkpoint's {d})";
    }

    /// <summary>Resolves and verifies the checkpoint named by --load (no side effects). Call before writing anything.</summary>
    public CheckpointInfo? VerifyLoad() => _o.LoadDir is null ? null : CheckpointStore.Verify(_o.LoadDir, Identity, CheckpointLayout.Of(_o.Layout));

    /// <summary>One rank: its communicators, its part of the model, its optimizer.</summary>
    sealed class Rank : IDisposable
    {
        public required ProcessGroups Groups;
        public required nn.Module<Tensor, Tensor> Model;
        public required DataParallelOptimizer Optimizer;
        public required LossFunction Loss;
        public required Device Device;
        /// <summary>Under pipeline parallelism: runs this stage's chunks (Model is its <see cref="PipelineStageModel"/>).</summary>
        public PipelineRunner? Pipeline;
        public int DpIndex => Groups.Coord.Dp;
        public void Dispose() { Optimizer.Dispose(); Model.Dispose(); Groups.Dispose(); }
    }

    /// <summary>Runs the remaining steps; returns the records of the steps run here.</summary>
    public List<StepRecord> Run(CheckpointInfo? resume = null)
    {
        var layout = _o.Layout;
        int W = layout.World, A = _o.GradAccumulationSteps;
        // Under PP the step's micro-batches (the gradient-accumulation steps) run on the one schedule every stage follows.
        _schedule = layout.Pp == 1 ? null : PipelineSchedule.Create(
            _o.PipelineSchedule ?? PipelineSchedule.Default(layout.Pp, layout.Vpp, A), layout.Pp, layout.Vpp, A);
        resume ??= VerifyLoad();
        // The run's lineage: a fresh run draws an id, a resumed one carries the checkpoint's ("" for checkpoints without one).
        string runId = resume is null ? Guid.NewGuid().ToString("N") : resume.Meta.RunId ?? "";
        if (_o.SaveDir is not null && CheckpointStore.SaveConflict(_o.SaveDir, runId, resume?.Meta.Step ?? 0) is { } conflict)
            throw new TrainingSetupException($"--save: {conflict}; save into another folder, or --load that run to continue it");
        // Auto: leave a core for the runtime; on 2 cores libtorch's 2-thread pool spin-waits and ran 2x slower than 1 thread.
        int ranksOnNode = _o.Processes > 1 ? Trainer.Parallel.Mpi.MpiRuntime.LocalSize * (W / _o.Processes) : W;
        int threads = _o.NumThreads > 0 ? _o.NumThreads : Math.Max(1, (Environment.ProcessorCount - 1) / ranksOnNode);
        torch.set_num_threads(threads);
        torch.manual_seed(_o.Seed);
        string? heap = NativeHeap.KeepFreedMemory();

        var world = CreateWorld(W);
        using var rankThreads = new RankThreads(world.Count);
        _world = world;
        var ranks = BuildRanks(rankThreads, world, layout);
        try
        {
            torch.manual_seed(_o.Seed);
            var groups = new ReplicatedParamGroups(ranks.Select(r => r.Optimizer.ParamGroups).ToArray());
            ILRScheduler? scheduler = _o.Schedule is null ? null : LRSchedulers.Create(_o.Schedule, groups);

            int startStep = 0;
            long globalBatch = 0;
            if (resume is not null) (startStep, globalBatch) = Restore(resume, ranks, groups, scheduler);

            var records = new List<StepRecord>();
            bool progress = _o.Progress && !Console.IsOutputRedirected && ReferenceEquals(_out, Console.Out);
            // Only world rank 0 logs and writes --log_json (under mpirun every process runs this loop).
            bool logs = world[0].Rank == 0;
            using var log = new StepLog(logs ? _out : TextWriter.Null, logs ? _o.LogJson : null, progress && logs, appendJson: resume is not null); // a resumed run continues its log
            log.Info($"total desired batch size: {_o.TotalBatchSize} => calculated gradient accumulation steps: {A} (DP={layout.Dp}, torch threads={threads})");
            if (heap is not null) log.Info($"native memory: {heap}");
            if (OpenMpSpin.Applied is { } spin) log.Info($"OpenMP: {spin} (libgomp's wait before a thread sleeps; set OMP_WAIT_POLICY or GOMP_SPINCOUNT to choose)");
            if (W > 1) log.Info($"layout: {layout}{(_o.Processes > 1 ? $" over {_o.Processes} MPI processes{(W > _o.Processes ? $" x {W / _o.Processes} threads" : "")}" : "")}");
            if (_schedule is { } ps) log.Info($"pipeline: {PipelineSchedule.Name(ps.Kind)} schedule, {A} micro-batches over {ps.Chunks} chunks, at most {ps.MaxInFlight()} chunk activations in flight per stage");
            log.Info($"optimizer: {OptimizerDescription}; lr schedule: {ScheduleDescription}");
            if (resume is not null)
            {
                foreach (var note in ResumeNotes(resume)) log.Info(note);
                log.Info($"resumed from {resume.Directory} at step {startStep}");
            }

            for (int step = startStep; step < _o.NumIterations; step++)
            {
                long? faults0 = NativeHeap.MinorFaults();
                var sw = Stopwatch.StartNew();
                double[] lrs = Enumerable.Range(0, groups.Count).Select(groups.GetLr).ToArray();
                double[]? momenta = groups.HasMomentum ? Enumerable.Range(0, groups.Count).Select(groups.GetMomentum).ToArray() : null;
                long gb = globalBatch;
                float[] rankLoss = RunRanks(rankThreads, world, r => TrainStep(ranks[r], gb));
                globalBatch += A;
                float loss = rankLoss[0];   // every rank holds these bits (TrainStep broadcasts them)
                if (!float.IsFinite(loss))
                {
                    // Every rank stopped before its optimizer step (the loss is agreed on), and the scheduler does not step:
                    // the gradients would make every parameter NaN, and a checkpoint of them would resume nothing.
                    sw.Stop();
                    log.Step(new StepRecord(step + 1, _o.NumIterations, loss, lrs, sw.Elapsed.TotalMilliseconds, _o.TotalBatchSize / sw.Elapsed.TotalSeconds, layout.Dp, LayoutSuffix(layout), momenta), _o.TotalBatchSize);
                    throw new TrainingStoppedException($"step {step + 1}: the training loss is {StepLog.NonFiniteName(loss)}; stopped before the optimizer step " +
                        "(no parameter updated, no checkpoint of this step). Lower --learning_rate or check the data; resume from a checkpoint saved before it");
                }

                if (scheduler is not null)
                {
                    if (_o.ScheduleWantsMetric) scheduler.Step(loss); else scheduler.Step();
                }
                RunRanks(rankThreads, world, r => LrConsensus.Check(ranks[r].Groups.World, ranks[r].Optimizer.ParamGroups, step + 1));
                ReleaseNativeGarbage();
                sw.Stop();
                double ms = sw.Elapsed.TotalMilliseconds;
                var rec = new StepRecord(step + 1, _o.NumIterations, loss, lrs, ms, _o.TotalBatchSize / (ms / 1000.0), layout.Dp, LayoutSuffix(layout), momenta,
                    NativeHeap.MinorFaults() - faults0);
                records.Add(rec);
                log.Step(rec, _o.TotalBatchSize);
                AfterStep?.Invoke(step + 1, ranks.Select(x => x.Model).ToArray());

                if (Validation is { } val && val.Every > 0 && ((step + 1) % val.Every == 0 || step + 1 == _o.NumIterations))
                {
                    float vl = ValidationLoss(rankThreads, ranks, val);
                    log.Info(string.Create(CultureInfo.InvariantCulture, $"step {step + 1,4}/{_o.NumIterations} | val loss {vl:F6}"));
                    log.Json($"{{\"step\":{step + 1},\"val_loss\":{StepLog.JsonNumber(vl)}}}");
                }

                if (Generation is { } gen && (step + 1) % gen.Every == 0 && SampleText(rankThreads, ranks, gen) is { } text)
                {
                    log.Info($"step {step + 1,4}/{_o.NumIterations} | sample: {text}");
                    log.Json($"{{\"step\":{step + 1},\"sample\":{System.Text.Json.JsonSerializer.Serialize(text)}}}");
                }

                if (_o.SaveDir is not null && _o.SaveInterval > 0 && ((step + 1) % _o.SaveInterval == 0 || step + 1 == _o.NumIterations))
                    log.Info($"saved checkpoint {Save(step + 1, globalBatch, ranks, scheduler, layout, runId)}");
            }
            if (_o.LoraSavePath is { } loraPath) log.Info($"saved LoRA adapters {SaveAdapters(rankThreads, ranks, loraPath)}");
            if (records.Count > 0)
            {
                long stateBytes = MaxOverWorld(rankThreads, world, r => ranks[r].Optimizer.OptimizerStateBytes());
                log.Info($"optimizer state: {stateBytes} bytes per rank (ZeRO-{layout.ZeroStage})");
            }
            return records;
        }
        finally
        {
            foreach (var r in ranks) r.Dispose();
            foreach (var c in world) c.Dispose();
            _processes?.Dispose();
        }
    }

    IReadOnlyList<ICommunicator>? _world;
    PipelineSchedule? _schedule;

    /// <summary>
    /// Every tensor of a step is disposed (TorchSharp's DisposeScopeManager statistics: as many disposed as created), yet
    /// the step leaves native memory that only finalizers free: wrappers of native objects that TorchSharp makes without
    /// a using. A step allocates little managed memory, so no GC came for many steps, and meanwhile those leftovers,
    /// scattered among the large tensor blocks, kept the C heap from reusing them: it grew by ~300 MB a step and the
    /// kernel zeroed every new page (issue #15: ~100,000 minor page faults a step after <see cref="NativeHeap"/>'s
    /// settings; median 14, mean 770 over 41 GPT-2 124M steps with this). A collection of the young generations only.
    /// </summary>
    static void ReleaseNativeGarbage()
    {
        GC.Collect(1, GCCollectionMode.Forced, blocking: true);
        GC.WaitForPendingFinalizers();
    }

    /// <summary>
    /// The communicators of this process's ranks, element i for local rank i (its world rank is <c>world[i].Rank</c>):
    /// every rank of the world as threads (over NCCL when they are several CUDA devices), or under mpirun (<see cref="TrainOptions.Processes"/> &gt; 1) this process's
    /// one rank of the MPI world, or its World / Processes rank threads of a <see cref="Trainer.Parallel.Mpi.HybridCommunicator"/> world.
    /// </summary>
    IReadOnlyList<ICommunicator> CreateWorld(int size)
    {
        // Several CUDA ranks talk over NCCL (Trainer/Parallel/Nccl); everything else over threads in this process.
        if (_o.Processes <= 1 && _o.Device.StartsWith("cuda") && size > 1) return Trainer.Parallel.Nccl.NcclCommunicator.CreateWorld(size);
        if (_o.Processes <= 1) return ThreadCommunicator.CreateWorld(size);
        int threads = size / _o.Processes;
        if (threads == 1)
        {
            var mpi = Trainer.Parallel.Mpi.MpiRuntime.World();
            if (mpi.Size != size)
                throw new TrainingSetupException($"the layout needs {size} ranks, mpirun started {mpi.Size} processes (one rank each)");
            return new ICommunicator[] { mpi };
        }
        // Threads x processes: the rank threads talk over the hybrid communicator; checkpoints agree over a communicator
        // of the processes (one member each, MPI_COMM_WORLD).
        _processes = Trainer.Parallel.Mpi.MpiRuntime.World();
        if (_processes.Size * threads != size)
            throw new TrainingSetupException($"the layout needs {size} ranks, mpirun started {_processes.Size} processes of {threads} threads");
        return Trainer.Parallel.Mpi.HybridCommunicator.CreateWorld(threads, Trainer.Parallel.Mpi.MpiRuntime.Timeout);
    }

    /// <summary>Under mpirun with several threads per process: one member per process (checkpoint agreement); else null.</summary>
    ICommunicator? _processes;

    /// <summary>The largest of every rank's value (a collective over the world when ranks live in several processes).</summary>
    static long MaxOverWorld(RankThreads threads, IReadOnlyList<ICommunicator> world, Func<int, long> value) =>
        RunRanks(threads, world, r =>
        {
            using var t = torch.tensor(new[] { value(r) });
            world[r].AllReduce(t, ReduceOp.Max);
            return t.item<long>();
        })[0];

    /// <summary>
    /// Runs <paramref name="work"/> on every rank's thread. A rank that throws aborts the world, so ranks waiting in a
    /// collective for it fail at once instead of hanging; the rank's own exception (the cause) is rethrown, not the
    /// others' "aborted" ones.
    /// </summary>
    static T[] RunRanks<T>(RankThreads threads, IReadOnlyList<ICommunicator> world, Func<int, T> work)
    {
        var errors = new Exception?[world.Count];
        var results = threads.Run(r =>
        {
            try { return work(r); }
            catch (Exception e)
            {
                errors[r] = e;
                (world[r] as IAbortableCommunicator)?.Abort(e);
                return default!;
            }
        });
        var cause = errors.FirstOrDefault(e => e is not null and not CommunicatorAbortedException) ?? errors.FirstOrDefault(e => e is not null);
        if (cause is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(cause).Throw();
        return results;
    }

    static void RunRanks(RankThreads threads, IReadOnlyList<ICommunicator> world, Action<int> work) =>
        RunRanks(threads, world, r => { work(r); return 0; });

    static string LayoutSuffix(ParallelLayout l) =>
        l.Tp > 1 || l.Pp > 1 ? $", TP={l.Tp}, SP={(l.Sp ? l.Tp : 1)}, PP={l.Pp}" : "";

    Device RankDevice(int rank)
    {
        if (_o.Device.StartsWith("cuda"))
            return _o.World > 1 ? torch.device(DeviceType.CUDA, rank) : torch.device(_o.Device);
        return torch.CPU;
    }

    Rank[] BuildRanks(RankThreads rankThreads, IReadOnlyList<ICommunicator> world, ParallelLayout layout)
    {
        // Splitting the world into DP/TP/PP groups is collective: every rank thread does it at once.
        var groups = RunRanks(rankThreads, world, r => ProcessGroups.Create(world[r], layout));
        // Models are built on this thread, in rank order: a factory may seed torch's global generator.
        var placements = groups.Select(g => new RankPlacement(RankDevice(g.Rank), g)).ToArray();
        var models = _factory(placements);
        var factory = ShardOptimizers.FromOptions(_o);
        var ranks = new Rank[world.Count];
        for (int r = 0; r < ranks.Length; r++)
        {
            var model = models[r];
            model.train();
            var ps = model.parameters().Where(p => p.requires_grad).ToArray();   // LoRA: the adapters only (the base is frozen)
            var g = groups[r];
            ranks[r] = new Rank
            {
                Groups = g, Model = model, Device = placements[r].Device,
                Loss = model switch
                {
                    PipelineStageModel stage => stage.Loss,
                    CausalLm lm => lm.Loss,
                    _ => _loss ?? throw new ArgumentException("a model that is not a CausalLm needs a loss function"),
                },
                Optimizer = new DataParallelOptimizer(g.Dp, new[] { ps }, factory, layout.ZeroStage, NormScope(model, g)),
                Pipeline = model is PipelineStageModel st ? new PipelineRunner(st, g.Pp) : null,
            };
        }
        return ranks;
    }

    /// <summary>Under TP/PP the global gradient norm adds the model-parallel group's (TP × PP) parts; a parameter every
    /// TP rank holds whole counts on TP rank 0 only (Megatron's param_is_not_tensor_parallel_duplicate), and GPT-2's
    /// tied head copy on the last stage not at all (the first stage's wte carries the summed gradient).</summary>
    static GradNormScope? NormScope(nn.Module<Tensor, Tensor> model, ProcessGroups g)
    {
        var (replicatedList, tiedCopy) = model switch
        {
            PipelineStageModel stage => (stage.ReplicatedParameters(), stage.TiedHeadCopy),
            TensorParallelLm tp when g.Layout.Tp > 1 => (tp.ReplicatedParameters(), null),
            _ => ((IReadOnlyList<Tensor>?)null, (Tensor?)null),
        };
        if (replicatedList is null) return null;
        var replicated = replicatedList.Select(p => p.Handle).ToHashSet();
        bool first = g.Tp.Rank == 0;
        return new GradNormScope(g.ModelParallel, p => p.Handle != tiedCopy?.Handle && (first || !replicated.Contains(p.Handle)));
    }

    /// <summary>
    /// One rank's part of a step: forward/backward over the micro-batches, the loss averaged over DP and broadcast
    /// (every rank, and so ReduceLROnPlateau, sees the same bits), gradients finalized and reduced, clipped on the
    /// global norm, optimizer step. Returns the step's loss.
    /// </summary>
    float TrainStep(Rank rank, long globalBatch)
    {
        rank.Optimizer.ZeroGrad();
        float lossSum = rank.Pipeline is { } pipeline
            ? pipeline.ForwardBackward(_schedule!, micro => BatchTensors(_data, globalBatch + micro, rank))
            : ForwardBackward(rank, globalBatch);
        float stepLoss = AgreedMean(rank.Groups, lossSum);
        if (!float.IsFinite(stepLoss)) return stepLoss;   // every rank sees the same bits: all stop here (see Run)

        // Finalize gradients: under SP a TP-replicated parameter saw only this rank's positions (Megatron's
        // finalize_model_grads); GPT-2's tied embedding sums its first- and last-stage gradients; then the DP
        // reduction (all-reduce, or reduce-scatter into the ZeRO shard).
        if (rank.Model is TensorParallelLm tp) tp.AllReduceSequenceParallelGrads();
        if (rank.Model is PipelineStageModel stage)
        {
            stage.AllReduceSequenceParallelGrads();
            stage.AllReduceTiedEmbeddingGrads(rank.Groups.Pp);
        }
        rank.Optimizer.ReduceGradients();
        if (_o.GradClip > 0) rank.Optimizer.ClipGradNorm(_o.GradClip);
        rank.Optimizer.Step();
        return stepLoss;
    }

    /// <summary>Forward/backward over the step's micro-batches without a pipeline (gradient accumulation); returns
    /// the sum of the micro-batch losses, each divided by their number.</summary>
    float ForwardBackward(Rank rank, long globalBatch)
    {
        int A = _o.GradAccumulationSteps;
        float lossSum = 0f;
        for (int micro = 0; micro < A; micro++)
        {
            using var scope = torch.NewDisposeScope();
            var (x, y) = BatchTensors(_data, globalBatch + micro, rank);
            var loss = rank.Loss(rank.Model.forward(x), y) / A;
            lossSum += loss.to(ScalarType.Float32).cpu().item<float>();
            loss.backward();
        }
        return lossSum;
    }

    (Tensor X, Tensor Y) BatchTensors(DistributedBatches data, long globalBatch, Rank rank)
    {
        var (xs, ys) = data.Batch(globalBatch, rank.DpIndex);
        var shape = new long[] { _o.BatchSize, _o.SequenceLength };
        return (torch.tensor(xs, shape, ScalarType.Int64).to(rank.Device), torch.tensor(ys, shape, ScalarType.Int64).to(rank.Device));
    }

    /// <summary>The mean of <paramref name="local"/> over DP (float32, rank order), then the value of the last pipeline
    /// stage's first rank (world rank 0 without PP: the loss is computed on the last stage) on every rank.</summary>
    static float AgreedMean(ProcessGroups g, float local)
    {
        using var t = torch.tensor(new[] { local });
        g.Dp.AllReduce(t, ReduceOp.Avg);
        g.World.Broadcast(t, g.Layout.RankOf(0, 0, g.Layout.Pp - 1));
        return t.item<float>();
    }

    DistributedBatches? _val;

    /// <summary>
    /// Samples text from the model as it is now (<see cref="TextSampler"/>). The ranks of data-parallel index 0 take
    /// part: a TP shard's logits are gathered over its TP group, and under a pipeline the stage holding the last chunk
    /// samples and broadcasts each token over its PP group. Every one of them ends with the same text, returned where
    /// this process holds one (null elsewhere). Nothing of the training state changes: the generator is local.
    /// </summary>
    string? SampleText(RankThreads rankThreads, Rank[] ranks, TextGeneration gen)
    {
        var perRank = RunRanks(rankThreads, _world!, r =>
        {
            var rank = ranks[r];
            if (rank.DpIndex != 0) return null;
            long vocab = (rank.Pipeline?.Model.Config ?? ((CausalLm)rank.Model).Config).VocabSize;
            rank.Model.eval();
            try
            {
                var ids = TextSampler.Generate(gen.Tokenizer.Prompt, gen.Length, _o.SequenceLength, gen.Tokenizer.EndOfText, (window, at, coin) =>
                {
                    using var noGrad = torch.no_grad();
                    using var scope = torch.NewDisposeScope();
                    var x = torch.tensor(window, dtype: ScalarType.Int64).reshape(1, -1).to(rank.Device);
                    var logits = rank.Pipeline is { } pipeline ? pipeline.ForwardLogits(x) : rank.Model.forward(x);
                    int token = -1;
                    if (logits is not null)
                    {
                        if (rank.Groups.Tp.Size > 1) logits = TensorParallelOps.AllGatherAlong(logits, rank.Groups.Tp, -1);
                        var probabilities = logits[0, at].narrow(0, 0, vocab).to(ScalarType.Float32).softmax(0).cpu().data<float>().ToArray();
                        token = TextSampler.SampleMult(probabilities, coin);
                    }
                    if (rank.Pipeline is null) return token;
                    var shared = torch.tensor(new long[] { token });
                    rank.Groups.Pp.Broadcast(shared, rank.Groups.Pp.Size - 1);   // the last stage holds the last chunk
                    return (int)shared.item<long>();
                });
                return gen.Tokenizer.Decode(ids);
            }
            finally { rank.Model.train(); }
        });
        return perRank.FirstOrDefault(t => t is not null);
    }

    float ValidationLoss(RankThreads rankThreads, Rank[] ranks, ValidationSet val)
    {
        _val ??= new DistributedBatches(val.Tokens, _o.BatchSize, _o.SequenceLength, _o.DataParallel, "--input_val_bin");
        int n = (int)Math.Min(val.MaxBatches, _val.NumGlobalBatches);
        var perRank = RunRanks(rankThreads, _world!, r =>
        {
            var rank = ranks[r];
            rank.Model.eval();
            float sum = 0f;
            if (rank.Pipeline is { } pipeline) sum = pipeline.ForwardOnly(n, b => BatchTensors(_val, b, rank));
            else using (torch.no_grad())
            {
                for (int b = 0; b < n; b++)
                {
                    using var scope = torch.NewDisposeScope();
                    var (x, y) = BatchTensors(_val, b, rank);
                    sum += rank.Loss(rank.Model.forward(x), y).to(ScalarType.Float32).cpu().item<float>();
                }
            }
            rank.Model.train();
            return AgreedMean(rank.Groups, sum / n);
        });
        return perRank[0];
    }

    // ---- checkpoints ----------------------------------------------------------------------------------------------

    /// <summary>
    /// Which rank writes which file. World rank 0's files sit at the checkpoint's top level (so a single-device or
    /// pure-DP checkpoint is one model and one optimizer file); rank k's at <c>rank_k/</c>. The model part of ranks
    /// that differ only in their DP coordinate is identical, so only DP rank 0 writes it; under ZeRO-1/2 every rank
    /// writes its own optimizer shard.
    /// </summary>
    static string RankFile(int worldRank, string name) =>
        worldRank == 0 ? name : Path.Combine("rank_" + worldRank.ToString("D6", CultureInfo.InvariantCulture), name);

    static int ModelSource(ParallelLayout l, int rank) { var (tp, _, pp) = l.Coord(rank); return l.RankOf(tp, 0, pp); }
    static int OptimizerSource(ParallelLayout l, int rank) => l.ZeroStage > 0 ? rank : ModelSource(l, rank);

    string Save(int step, long globalBatch, Rank[] ranks, ILRScheduler? scheduler, ParallelLayout layout, string runId)
    {
        var meta = new CheckpointMeta
        {
            Step = step,
            ConsumedSamples = globalBatch * _o.BatchSize * layout.Dp,
            Model = Identity.Model,
            Schedule = Identity.Schedule,
            Optimizer = Identity.Optimizer,
            Dtype = Identity.Dtype,
            SequenceLength = _o.SequenceLength,
            Seed = _o.Seed,
            DataParallel = layout.Dp,
            Layout = CheckpointLayout.Of(layout),
            RngState = RngState(),
            RunId = runId,
            LearningRate = _o.LearningRate,
            TotalBatchSize = _o.TotalBatchSize,
            BatchSize = _o.BatchSize,
            GradClip = _o.GradClip,
            Device = _o.Device,
            DataName = DataName,
            DataSha256 = _dataSha256,
            DataOrder = DataOrderName,
        };
        var writers = new Dictionary<string, Action<string>>
        {
            [CheckpointStore.SchedulerFile] = p => File.WriteAllText(p, scheduler is null ? "null" : scheduler.StateDict().ToJson()),
        };
        foreach (var rank in ranks)
        {
            int r = rank.Groups.Rank;   // world rank
            if (ModelSource(layout, r) == r) writers[RankFile(r, CheckpointStore.ModelFile)] = p => rank.Model.save(p);
            if (OptimizerSource(layout, r) == r) writers[RankFile(r, CheckpointStore.OptimizerFile)] = p => rank.Optimizer.SaveState(p);
        }
        if (_o.Processes <= 1) return CheckpointStore.Save(_o.SaveDir!, meta, _o.KeepLast, writers);
        // Several processes: each writes its ranks' files, world rank 0 the scheduler, meta and manifest.
        if (ranks[0].Groups.Rank != 0) writers.Remove(CheckpointStore.SchedulerFile);
        var all = Enumerable.Range(0, layout.World).SelectMany(r => new[]
        {
            ModelSource(layout, r) == r ? RankFile(r, CheckpointStore.ModelFile) : null,
            OptimizerSource(layout, r) == r ? RankFile(r, CheckpointStore.OptimizerFile) : null,
        }).OfType<string>().Distinct().Append(CheckpointStore.SchedulerFile).ToArray();
        return CheckpointStore.SaveShared(_o.SaveDir!, meta, _o.KeepLast, writers, all, _processes ?? ranks[0].Groups.World);
    }

    (int Step, long GlobalBatch) Restore(CheckpointInfo c, Rank[] ranks, IParamGroups groups, ILRScheduler? scheduler)
    {
        var layout = _o.Layout;
        var saved = SavedLayout(c);
        if (CheckpointLayout.Moves(saved, CheckpointLayout.Of(layout)))
        {
            if (_o.Processes > 1)
                throw new CheckpointException($"checkpoint {c.Directory}: it was written under layout {saved}; a resume into another layout ({CheckpointLayout.Of(layout)}) runs with threads only (--nthread_per_process), not under mpirun");
            LoadFromOtherLayout(c, saved, ranks);
        }
        else LoadRankFiles(c, layout, ranks);
        if (scheduler is not null)
        {
            // LoadStateDict replays the schedule to the saved step and writes LR (and cycled momentum) into every rank's groups.
            try { scheduler.LoadStateDict(SchedulerState.FromJson(File.ReadAllText(c.SchedulerPath))); }
            catch (SchedulerStateException e) { throw new CheckpointException($"checkpoint {c.Directory}: scheduler state: {e.Message}"); }
        }
        else
        {
            for (int g = 0; g < groups.Count; g++) groups.SetLr(g, _o.LearningRate);
        }
        long perGlobal = (long)_o.BatchSize * layout.Dp;
        if (c.Meta.ConsumedSamples % perGlobal != 0)
            throw new CheckpointException($"checkpoint {c.Directory}: it consumed {c.Meta.ConsumedSamples} samples, not a whole number of global batches of {_o.BatchSize} x DP {layout.Dp}; resume with a batch_size x DP that divides it");
        if (c.Meta.RngState is { Length: > 0 } rng)
        {
            using var t = torch.tensor(Convert.FromBase64String(rng), dtype: ScalarType.Byte);
            torch.random.set_rng_state(t);
        }
        if (c.Meta.Step >= _o.NumIterations)
            throw new ArgumentException($"checkpoint {c.Directory} is at step {c.Meta.Step}, not before the last step {_o.NumIterations}; nothing to do");
        return (c.Meta.Step, c.Meta.ConsumedSamples / perGlobal);
    }

    /// <summary>--lora_save_path: the adapters alone, gathered over TP and the pipeline stages (collective) into the
    /// file a single-device run writes, written by world rank 0.</summary>
    string SaveAdapters(RankThreads rankThreads, Rank[] ranks, string path)
    {
        var cfg = _o.Lora ?? throw new InvalidOperationException("--lora_save_path: the run has no LoRA settings");
        var perRank = RunRanks(rankThreads, _world!, r => ranks[r].Model switch
        {
            PipelineStageModel stage when stage.LoraAdapters.Count > 0 => Trainer.Lora.LoraModel.Gather(stage, cfg, ranks[r].Groups.Pp),
            CausalLm lm when lm.LoraAdapters.Count > 0 => Trainer.Lora.LoraModel.Gather(lm, cfg),
            _ => null,
        });
        var full = perRank[0] ?? throw new InvalidOperationException("--lora_save_path: the model has no LoRA adapters");
        if (ranks[0].Groups.Rank == 0) full.Save(path, _o.ModelDescription);   // under mpirun every process gathered the same set
        string saved = $"{path} ({full.Layers.Count} layers, {full.ElementCount} parameters)";
        foreach (var w in perRank) w?.Dispose();
        return saved;
    }

    static CheckpointLayout SavedLayout(CheckpointInfo c) => c.Meta.Layout ?? new CheckpointLayout { Dp = c.Meta.DataParallel };

    /// <summary>Every rank's model part and optimizer state from the files its layout's ranks wrote.</summary>
    static void LoadRankFiles(CheckpointInfo c, ParallelLayout layout, Rank[] ranks)
    {
        foreach (var rank in ranks)
        {
            int r = rank.Groups.Rank;   // world rank
            string model = Path.Combine(c.Directory, RankFile(ModelSource(layout, r), CheckpointStore.ModelFile));
            string opt = Path.Combine(c.Directory, RankFile(OptimizerSource(layout, r), CheckpointStore.OptimizerFile));
            foreach (var f in new[] { model, opt })
                if (!File.Exists(f)) throw new CheckpointException($"checkpoint {c.Directory}: {Path.GetRelativePath(c.Directory, f)} is missing for rank {r} of layout {layout}");
            LoadFile(c, model, () => rank.Model.load(model));
            LoadFile(c, opt, () => rank.Optimizer.LoadState(opt));
        }
    }

    /// <summary>
    /// A checkpoint of another layout: its ranks are rebuilt here (threads of this process, as the run that wrote it),
    /// loaded from their files, consolidated into the single-device state and cut again for this run's ranks
    /// (<see cref="LayoutConversion"/>).
    /// </summary>
    void LoadFromOtherLayout(CheckpointInfo c, CheckpointLayout saved, Rank[] ranks)
    {
        var from = new ParallelLayout(saved.Tp * saved.Dp * saved.Pp, saved.Tp, saved.Pp, saved.Vpp, saved.Sp, saved.ZeroStage);
        using var threads = new RankThreads(from.World);
        var world = ThreadCommunicator.CreateWorld(from.World);
        var source = BuildRanks(threads, world, from);
        try
        {
            LoadRankFiles(c, from, source);
            static LayoutConversion.RankState State(Rank r) => new(r.Model, r.Optimizer);
            using var full = LayoutConversion.Consolidate(from, source.Select(State).ToArray());
            LayoutConversion.Apply(full, _o.Layout, ranks.Select(State).ToArray());
        }
        finally
        {
            foreach (var r in source) r.Dispose();
            foreach (var w in world) w.Dispose();
        }
    }

    /// <summary>A file that passed its checksum but does not load (a hand-edited, re-hashed checkpoint) is named.</summary>
    static void LoadFile(CheckpointInfo c, string path, Action load)
    {
        try { load(); }
        catch (Exception e) when (e is not CheckpointException and not OutOfMemoryException)
        {
            throw new CheckpointException($"checkpoint {c.Directory}: {Path.GetRelativePath(c.Directory, path)} cannot be loaded ({e.GetType().Name}: {e.Message})");
        }
    }

    static string RngState()
    {
        using var t = torch.random.get_rng_state();
        return Convert.ToBase64String(t.data<byte>().ToArray());
    }
}
