using System.Diagnostics;
using Schedules.Core;
using Schedules.Torch;
using Trainer.Checkpoint;
using Trainer.Cli;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Trainer.Training;

/// <summary>Builds one replica of the model on a device; every call must give bit-identical parameters.</summary>
public delegate nn.Module<Tensor, Tensor> ReplicaFactory(Device device);

/// <summary>Validation tokens, evaluated every <paramref name="Every"/> steps over <paramref name="MaxBatches"/> batches per rank.</summary>
public sealed record ValidationSet(int[] Tokens, int Every, int MaxBatches);

/// <summary>Mean cross entropy of logits (B,T,V) against targets (B,T).</summary>
public delegate Tensor LossFunction(Tensor logits, Tensor targets);

/// <summary>
/// The training loop: DP replicas (one thread each), gradient accumulation, all-reduce mean of gradients in a fixed
/// rank order, clipping, optimizer step on every replica, then <c>scheduler.Step()</c> (PyTorch order);
/// checkpoints and resume. The caller has validated the options and checked the inputs exist.
/// </summary>
public sealed class TrainingRun
{
    readonly TrainOptions _o;
    readonly ReplicaFactory _factory;
    readonly LossFunction _loss;
    readonly DistributedBatches _data;
    readonly TextWriter _out;
    readonly string _dataSha256;

    public TrainingRun(TrainOptions options, ReplicaFactory factory, LossFunction loss, int[] trainTokens, TextWriter output)
    {
        _o = options; _factory = factory; _loss = loss; _out = output;
        if (options.TotalBatchSize % options.TokensPerMicroStep != 0)
            throw new UsageException($"--total_batch_size={options.TotalBatchSize} is not divisible by batch_size x sequence_length x DP = {options.BatchSize} x {options.SequenceLength} x {options.DataParallel} = {options.TokensPerMicroStep}");
        _data = new DistributedBatches(trainTokens, options.BatchSize, options.SequenceLength, options.DataParallel);
        _dataSha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(trainTokens.AsSpan())));
    }

    /// <summary>Test hook: called after every step with each rank's replica.</summary>
    public Action<int, IReadOnlyList<nn.Module<Tensor, Tensor>>>? AfterStep { get; set; }

    /// <summary>Optional validation loss (--input_val_bin, --val_loss_every).</summary>
    public ValidationSet? Validation { get; set; }

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
        DataSha256 = _dataSha256, DataName = DataName,
    };

    string DataName => _o.DataName ?? "the training tokens";

    /// <summary>Settings that may change on resume (they split the same global batch differently), said aloud.</summary>
    IEnumerable<string> ResumeNotes(CheckpointInfo c)
    {
        foreach (var n in c.Notes) yield return n;
        if (c.Meta.BatchSize is int b && b != _o.BatchSize)
            yield return $"resume: --batch_size changed {b} -> {_o.BatchSize} (same global batch of {_o.TotalBatchSize} tokens and data order; losses may differ in the last bits)";
        if (c.Meta.DataParallel != _o.DataParallel)
            yield return $"resume: --nthread_per_process changed {c.Meta.DataParallel} -> {_o.DataParallel} (same global batch of {_o.TotalBatchSize} tokens and data order; losses may differ in the last bits)";
        if (c.Meta.Device is { } dev && dev != _o.Device)
            yield return $"resume: --device changed {dev} -> {_o.Device} (same computation on other hardware; losses may differ in the last bits)";
        if (c.Meta.DataName is { } d && d != DataName)
            yield return $"resume: training data now read from {DataName} (the same tokens as the checkpoint's {d})";
    }

    /// <summary>Resolves and verifies the checkpoint named by --load (no side effects). Call before writing anything.</summary>
    public CheckpointInfo? VerifyLoad() => _o.LoadDir is null ? null : CheckpointStore.Verify(_o.LoadDir, Identity);

    sealed class Replica
    {
        public required nn.Module<Tensor, Tensor> Model;
        public required Parameter[] Params;
        public required OptimizerHelper Optimizer;
        public required Device Device;
    }

    OptimizerHelper MakeOptimizer(IEnumerable<Parameter> ps) => _o.Optimizer switch
    {
        OptimizerKind.Sgd => optim.SGD(ps, _o.LearningRate, _o.Momentum, 0, _o.WeightDecay, _o.Nesterov),
        OptimizerKind.Adam => optim.Adam(ps, _o.LearningRate, _o.Beta1, _o.Beta2, _o.Eps, _o.WeightDecay),
        _ => optim.AdamW(ps, _o.LearningRate, _o.Beta1, _o.Beta2, _o.Eps, _o.WeightDecay),
    };

    Device RankDevice(int rank)
    {
        if (_o.Device.StartsWith("cuda"))
            return _o.DataParallel > 1 ? torch.device(DeviceType.CUDA, rank) : torch.device(_o.Device);
        return torch.CPU;
    }

    /// <summary>Runs the remaining steps; returns the records of the steps run here.</summary>
    public List<StepRecord> Run(CheckpointInfo? resume = null)
    {
        int W = _o.DataParallel, A = _o.GradAccumulationSteps;
        resume ??= VerifyLoad();
        // The run's lineage: a fresh run draws an id, a resumed one carries the checkpoint's ("" for checkpoints without one).
        string runId = resume is null ? Guid.NewGuid().ToString("N") : resume.Meta.RunId ?? "";
        if (_o.SaveDir is not null && CheckpointStore.SaveConflict(_o.SaveDir, runId, resume?.Meta.Step ?? 0) is { } conflict)
            throw new UsageException($"--save: {conflict}; save into another folder, or --load that run to continue it");
        // Auto: leave a core for the runtime; on 2 cores libtorch's 2-thread pool spin-waits and ran 2x slower than 1 thread.
        int threads = _o.NumThreads > 0 ? _o.NumThreads : Math.Max(1, (Environment.ProcessorCount - 1) / W);
        torch.set_num_threads(threads);
        torch.manual_seed(_o.Seed);

        using var ranks = new RankThreads(W);
        // Replicas are built one after another on this thread: a factory may seed torch's global generator.
        var replicas = new Replica[W];
        for (int r = 0; r < W; r++)
        {
            var dev = RankDevice(r);
            var model = _factory(dev);
            model.train();
            var ps = model.parameters().ToArray();
            replicas[r] = new Replica { Model = model, Params = ps, Optimizer = MakeOptimizer(ps), Device = dev };
        }
        torch.manual_seed(_o.Seed);
        var groups = new ReplicatedParamGroups(replicas.Select(r => (IParamGroups)new TorchSharpParamGroups(r.Optimizer)).ToArray());
        ILRScheduler? scheduler = _o.Schedule is null ? null : LRSchedulers.Create(_o.Schedule, groups);

        int startStep = 0;
        long globalBatch = 0;
        if (resume is not null)
        {
            var c = resume;
            foreach (var rep in replicas)
            {
                LoadFile(c, CheckpointStore.ModelFile, () => rep.Model.load(c.ModelPath));
                LoadFile(c, CheckpointStore.OptimizerFile, () => rep.Optimizer.load_state_dict(c.OptimizerPath));
            }
            if (scheduler is not null)
            {
                // LoadStateDict replays the schedule to the saved step and writes LR (and cycled momentum) into every rank's groups.
                try { scheduler.LoadStateDict(SchedulerState.FromJson(File.ReadAllText(c.SchedulerPath))); }
                catch (SchedulerStateException e) { throw new RuntimeFailure($"checkpoint {c.Directory}: scheduler state: {e.Message}"); }
            }
            else
            {
                for (int g = 0; g < groups.Count; g++) groups.SetLr(g, _o.LearningRate);
            }
            long perGlobal = (long)_o.BatchSize * W;
            if (c.Meta.ConsumedSamples % perGlobal != 0)
                throw new RuntimeFailure($"checkpoint {c.Directory}: it consumed {c.Meta.ConsumedSamples} samples, not a whole number of global batches of {_o.BatchSize} x DP {W}; resume with a batch_size x DP that divides it");
            globalBatch = c.Meta.ConsumedSamples / perGlobal;
            startStep = c.Meta.Step;
            if (c.Meta.RngState is { Length: > 0 } rng)
            {
                var bytes = Convert.FromBase64String(rng);
                using var t = torch.tensor(bytes, dtype: ScalarType.Byte);
                torch.random.set_rng_state(t);
            }
            if (startStep >= _o.NumIterations)
                throw new UsageException($"--load: checkpoint {c.Directory} is at step {startStep}, not before --num_iteration={_o.NumIterations}; nothing to do");
        }

        var records = new List<StepRecord>();
        bool progress = _o.Progress && !Console.IsOutputRedirected && ReferenceEquals(_out, Console.Out);
        using var log = new StepLog(_out, _o.LogJson, progress, appendJson: resume is not null); // a resumed run continues its log
        log.Info($"total desired batch size: {_o.TotalBatchSize} => calculated gradient accumulation steps: {A} (DP={W}, torch threads={threads})");
        log.Info($"optimizer: {OptimizerDescription}; lr schedule: {ScheduleDescription}");
        if (resume is not null)
        {
            foreach (var note in ResumeNotes(resume)) log.Info(note);
            log.Info($"resumed from {resume.Directory} at step {startStep}");
        }

        for (int step = startStep; step < _o.NumIterations; step++)
        {
            var sw = Stopwatch.StartNew();
            double[] lrs = Enumerable.Range(0, groups.Count).Select(groups.GetLr).ToArray();
            long gb = globalBatch;
            float[] rankLoss = ranks.Run(r =>
            {
                var rep = replicas[r];
                rep.Optimizer.zero_grad();
                float lossf = 0f;
                for (int micro = 0; micro < A; micro++)
                {
                    using var scope = torch.NewDisposeScope();
                    var (xs, ys) = _data.Batch(gb + micro, r);
                    var x = torch.tensor(xs, new long[] { _o.BatchSize, _o.SequenceLength }, ScalarType.Int64).to(rep.Device);
                    var y = torch.tensor(ys, new long[] { _o.BatchSize, _o.SequenceLength }, ScalarType.Int64).to(rep.Device);
                    var logits = rep.Model.forward(x);
                    var loss = _loss(logits, y) / A;
                    lossf += loss.to(ScalarType.Float32).cpu().item<float>();
                    loss.backward();
                }
                return lossf;
            });
            globalBatch += A;

            float stepLoss = rankLoss[0];
            if (W > 1)
            {
                float sum = 0f;
                for (int r = 0; r < W; r++) sum += rankLoss[r];
                stepLoss = sum / W;
            }
            if (!float.IsFinite(stepLoss))
            {
                // Stop before the optimizer and the scheduler see it: its gradients would make every parameter NaN,
                // and a checkpoint of them would resume nothing. The step is logged (JSON loss null), then the run ends.
                sw.Stop();
                log.Step(new StepRecord(step + 1, _o.NumIterations, stepLoss, lrs, sw.Elapsed.TotalMilliseconds, _o.TotalBatchSize / sw.Elapsed.TotalSeconds, W), _o.TotalBatchSize);
                throw new RuntimeFailure($"step {step + 1}: the training loss is {StepLog.NonFiniteName(stepLoss)}; stopped before the optimizer step " +
                    "(no parameter updated, no checkpoint of this step). Lower --learning_rate or check the data; resume from a checkpoint saved before it");
            }

            AllReduceMeanAndClip(replicas);
            ranks.Run(r => { replicas[r].Optimizer.step(); });

            if (scheduler is not null)
            {
                if (_o.ScheduleWantsMetric) scheduler.Step(stepLoss); else scheduler.Step();
            }
            sw.Stop();
            double ms = sw.Elapsed.TotalMilliseconds;
            var rec = new StepRecord(step + 1, _o.NumIterations, stepLoss, lrs, ms, _o.TotalBatchSize / (ms / 1000.0), W);
            records.Add(rec);
            log.Step(rec, _o.TotalBatchSize);
            AfterStep?.Invoke(step + 1, replicas.Select(x => x.Model).ToArray());

            if (Validation is { } val && val.Every > 0 && ((step + 1) % val.Every == 0 || step + 1 == _o.NumIterations))
            {
                float vl = ValidationLoss(ranks, replicas, val);
                log.Info(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"step {step + 1,4}/{_o.NumIterations} | val loss {vl:F6}"));
                log.Json($"{{\"step\":{step + 1},\"val_loss\":{StepLog.JsonNumber(vl)}}}");
            }

            if (_o.SaveDir is not null && _o.SaveInterval > 0 && ((step + 1) % _o.SaveInterval == 0 || step + 1 == _o.NumIterations))
            {
                var meta = new CheckpointMeta
                {
                    Step = step + 1,
                    ConsumedSamples = globalBatch * _o.BatchSize * W,
                    Model = Identity.Model,
                    Schedule = Identity.Schedule,
                    Optimizer = Identity.Optimizer,
                    Dtype = Identity.Dtype,
                    SequenceLength = _o.SequenceLength,
                    Seed = _o.Seed,
                    DataParallel = W,
                    RngState = RngState(),
                    RunId = runId,
                    LearningRate = _o.LearningRate,
                    TotalBatchSize = _o.TotalBatchSize,
                    BatchSize = _o.BatchSize,
                    GradClip = _o.GradClip,
                    Device = _o.Device,
                    DataName = DataName,
                    DataSha256 = _dataSha256,
                };
                var rep0 = replicas[0];
                string dir = CheckpointStore.Save(_o.SaveDir, meta, _o.KeepLast, new Dictionary<string, Action<string>>
                {
                    [CheckpointStore.ModelFile] = p => rep0.Model.save(p),
                    [CheckpointStore.OptimizerFile] = p => rep0.Optimizer.save_state_dict(p),
                    [CheckpointStore.SchedulerFile] = p => File.WriteAllText(p, scheduler is null ? "null" : scheduler.StateDict().ToJson()),
                });
                log.Info($"saved checkpoint {dir}");
            }
        }

        foreach (var rep in replicas) { rep.Optimizer.Dispose(); rep.Model.Dispose(); }
        return records;
    }

    /// <summary>A file that passed its checksum but does not load (a hand-edited, re-hashed checkpoint) is named.</summary>
    static void LoadFile(CheckpointInfo c, string file, Action load)
    {
        try { load(); }
        catch (Exception e) when (e is not RuntimeFailure and not OutOfMemoryException)
        {
            throw new RuntimeFailure($"checkpoint {c.Directory}: {file} cannot be loaded ({e.GetType().Name}: {e.Message})");
        }
    }

    DistributedBatches? _val;

    float ValidationLoss(RankThreads ranks, Replica[] replicas, ValidationSet val)
    {
        _val ??= new DistributedBatches(val.Tokens, _o.BatchSize, _o.SequenceLength, _o.DataParallel, "--input_val_bin");
        int n = (int)Math.Min(val.MaxBatches, _val.NumGlobalBatches);
        var perRank = ranks.Run(r =>
        {
            var rep = replicas[r];
            rep.Model.eval();
            using var noGrad = torch.no_grad();
            float sum = 0f;
            for (int b = 0; b < n; b++)
            {
                using var scope = torch.NewDisposeScope();
                var (xs, ys) = _val.Batch(b, r);
                var x = torch.tensor(xs, new long[] { _o.BatchSize, _o.SequenceLength }, ScalarType.Int64).to(rep.Device);
                var y = torch.tensor(ys, new long[] { _o.BatchSize, _o.SequenceLength }, ScalarType.Int64).to(rep.Device);
                sum += _loss(rep.Model.forward(x), y).to(ScalarType.Float32).cpu().item<float>();
            }
            rep.Model.train();
            return sum / n;
        });
        float total = 0f;
        foreach (var l in perRank) total += l;
        return total / perRank.Length;
    }

    static string RngState()
    {
        using var t = torch.random.get_rng_state();
        return Convert.ToBase64String(t.data<byte>().ToArray());
    }

    /// <summary>Sum the gradients of ranks 0..W-1 in that order, divide by W, clip, copy to every rank.</summary>
    void AllReduceMeanAndClip(Replica[] replicas)
    {
        int W = replicas.Length;
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var p0 = replicas[0].Params;
        if (W > 1)
        {
            for (int i = 0; i < p0.Length; i++)
            {
                var g0 = p0[i].grad;
                if (g0 is null) continue;
                for (int r = 1; r < W; r++)
                {
                    var gr = replicas[r].Params[i].grad;
                    if (gr is not null) g0.add_(gr.to(g0.device));
                }
                g0.div_(W);
            }
        }
        if (_o.GradClip > 0)
            nn.utils.clip_grad_norm_(p0, _o.GradClip);
        if (W > 1)
        {
            for (int i = 0; i < p0.Length; i++)
            {
                var g0 = p0[i].grad;
                if (g0 is null) continue;
                for (int r = 1; r < W; r++)
                    replicas[r].Params[i].grad?.copy_(g0);
            }
        }
    }
}
