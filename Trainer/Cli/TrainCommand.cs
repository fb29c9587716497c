using System.Globalization;
using Schedules.Core;
using Trainer.Lora;
using Trainer.Training;
using static TorchSharp.torch;

namespace Trainer.Cli;

/// <summary>
/// <c>Trainer train</c>: InfiniTrain's GPT-2 / LLaMA-3 example flags plus optimizer, schedule, DP, log and checkpoint
/// flags. Every input is validated (flags, files, schedule, checkpoint) before anything is written.
/// </summary>
public static class TrainCommand
{
    public static FlagSet Flags()
    {
        var f = new FlagSet("Trainer [train]", "Train GPT-2 or LLaMA-3 (TorchSharp) on llm.c token files, InfiniTrain-style.");
        const string io = "Input / model", tok = "Token layout per step", opt = "Optimization", par = "Parallelism / device", ck = "Checkpoints", lg = "Logging";
        f.String("input_bin", "", "Training tokens (llm.c .bin: GPT-2 uint16 magic 20240520, LLaMA-3 uint32 magic 20240801);\nempty = the embedded default dataset (tokenized for the model's family).", io);
        f.String("data_order", "infinitrain", "Which samples each step reads: infinitrain (consecutive sequences, InfiniTrain's loader) or llmc\n(llm.c train_gpt2's loader: its seeded shuffle of B x T token blocks, reshuffled every epoch; needs one rank).", io);
        f.String("input_val_bin", "", "Validation tokens (llm.c .bin); with --val_loss_every, the mean loss over --val_max_steps batches is logged.", io);
        f.String("llmc_filepath", "", "llm.c weight file to start from (its header gives the model configuration; --model is then ignored).", io);
        f.String("model", "gpt2-tiny", "Model configuration: " + string.Join("|", ModelBinding.ModelNames()) + ".", io);
        f.Int("batch_size", 4, "Batch size per rank, in sequences (B).", tok);
        f.Int("sequence_length", 64, "Sequence length (T).", tok);
        f.Int("total_batch_size", 1024, "Tokens per optimizer step = B x T x DP x gradient accumulation steps (must divide evenly).", tok);
        f.Int("num_iteration", 10, "Optimizer steps to run (in total, counting steps before a --load).", tok);
        f.Double("learning_rate", 1e-2, "Peak (base) learning rate (the default suits the tiny CPU models; GPT-2 124M wants about 6e-4).", opt);
        f.String("optimizer", "adamw", "Optimizer: sgd|adam|adamw.", opt);
        f.Double("weight_decay", 0.0, "Weight decay (AdamW: decoupled; SGD/Adam: L2).", opt);
        f.Double("beta1", 0.9, "Adam/AdamW beta1, in [0, 1).", opt);
        f.Double("beta2", 0.95, "Adam/AdamW beta2, in [0, 1).", opt);
        f.Double("eps", 1e-8, "Adam/AdamW eps.", opt);
        f.Double("momentum", 0.0, "SGD momentum.", opt);
        f.Bool("nesterov", false, "SGD Nesterov momentum (needs --momentum > 0).", opt);
        f.Double("grad_clip", 1.0, "Clip the global gradient L2 norm to this value; 0 = no clipping.", opt);
        SchedulerFlags.Define(f);
        f.String("device", "cpu", "cpu or cuda (with --nthread_per_process N > 1 on cuda, rank i uses cuda:i).", par);
        f.String("dtype", "float32", "Parameter/compute precision: float32|bfloat16.", par);
        f.Int("nthread_per_process", 1, "Ranks in this process, one thread each (CPU, or cuda:0..N-1): TP x DP x PP, in Megatron's TP-DP-PP order\n(TP fastest); DP = N / (TP x PP). Gradients are averaged over DP every step. On the CPU at most max(8, 4 x cores).\nUnder mpirun -np P: the world is P x N ranks, world rank = process x N + thread (README).", par, "dp");
        f.Int("tensor_parallel", 1, "Tensor-parallel ranks: every layer split over TP ranks (column/row-parallel linears, vocab-parallel\nembedding and loss); each shard is a slice of the single-device model.", par);
        f.Bool("sequence_parallel", false, "Sequence parallelism on top of TP: norms and residuals on T/TP positions per rank (needs T % TP == 0).", par);
        f.Int("pipeline_parallel", 1, "Pipeline stages: the layers split into PP x VPP chunks, chunk g on stage g mod PP; the micro-batches\nare the gradient-accumulation steps, so a pipeline run consumes the same samples as a single-device run.", par);
        f.Int("virtual_pipeline_parallel", 1, "Model chunks per pipeline stage (interleaved; needs --pipeline_parallel > 1).", par);
        f.String("pipeline_schedule", "", "Pipeline schedule: gpipe|1f1b|interleaved-1f1b; empty = the one holding the fewest activations\n(1f1b, or interleaved-1f1b with virtual stages when the micro-batches divide by PP, else gpipe).", par);
        f.Int("zero_stage", 0, "0: replicated optimizer; 1: optimizer state sharded over DP (ZeRO-1); 2: gradients too (ZeRO-2).", par);
        f.Int("num_threads", 0, "Torch intra-op threads per process; 0 = auto: (CPU cores - 1) / ranks, at least 1; at most 4 x CPU cores.", par);
        f.Int("seed", 42, "Seed for the model initialisation (every rank gets the same parameters).", par);
        f.String("save", "", "Directory for checkpoints (DIR/checkpoint_step_NNNNNN/); needs --save_interval. Refused if it holds\nanother run's checkpoints (continue that run with --load DIR --save DIR).", ck);
        f.Int("save_interval", 0, "Save every N steps and at the last step; 0 = never.", ck);
        f.Int("keep_last", 3, "Keep only the newest N checkpoints of this run; 0 = keep all.", ck, "max_checkpoint_keep");
        f.String("load", "", "Resume from this checkpoint directory (or the newest checkpoint_step_* in it). Settings that change\nthe run (seed, model, optimizer, schedule, learning rate, total batch, grad clip, data) must match it;\nthe parallel layout may differ (model and optimizer state are consolidated and cut again).", ck);
        const string lo = "LoRA (InfiniTrain's flags)";
        f.Int("lora_rank", 0, "LoRA rank r; 0 = off (full fine-tuning). With r > 0 the base weights are frozen and the optimizer (and\nits schedule) hold only the adapters: y = W x + (alpha / r) B A x, A kaiming-uniform (seeded), B zero.", lo);
        f.Double("lora_alpha", LoraConfig.DefaultAlpha, "LoRA scaling alpha (the update is scaled by alpha / rank).", lo);
        f.String("lora_target_modules", "", "Comma-separated layers to adapt, matched at the end of a layer's name: c_attn, attn.c_proj, c_proj\n(= attn.c_proj and mlp.c_proj), mlp.c_proj, c_fc, c_fc2; empty = InfiniTrain's default for the model:\n" +
            $"GPT-2 {LoraConfig.DefaultGpt2Targets}, LLaMA-3 {LoraConfig.DefaultLlama3Targets}.", lo);
        f.Double("lora_dropout", 0.0, "Dropout on the adapters' input, in [0, 1) (needs --nthread_per_process=1: the rank threads would share\ntorch's generator).", lo);
        f.String("lora_save_path", "", "Write the trained adapters alone (a small file) here after the last step; merge them into the base\nweights with `Trainer lora-merge`.", lo);
        f.String("lora_load_path", "", "Start the adapters from this adapter file (written by --lora_save_path) instead of the seeded init.", lo);
        f.String("log_json", "", "Write every step as a JSON line (loss, every param group's LR at full precision, ms, tok/s);\na non-finite loss is null (it also stops the run).", lg);
        f.Bool("progress", true, "Show a progress bar (steps, tok/s, time left) when stdout is a terminal.", lg);
        f.Int("val_loss_every", 0, "Evaluate the validation loss every N steps (and at the end); 0 = never. Needs --input_val_bin.", lg);
        f.Int("val_max_steps", 4, "Validation batches per evaluation (per rank).", lg);
        const string gen = "Text generation (InfiniTrain's flags)";
        f.String("tokenizer_bin", "", "llm.c tokenizer file (gpt2_tokenizer.bin, magic 20240328; LLaMA-3 20240801), or embedded:gpt2 for the\n" +
            "built-in GPT-2 BPE: every --freq_generate_txt steps, sample --text_length tokens after \"The meaning of life is\"\n" +
            "(llm.c's sampler, seed 1337 each time) and log them (--log_json: \"sample\"); the same text in every layout.", gen);
        f.Int("freq_generate_txt", 10, "Sample text every N steps (needs --tokenizer_bin); 0 = never.", gen);
        f.Int("text_length", 64, "Tokens per sample, the prompt's included; past --sequence_length the model sees the last T tokens.", gen);
        return f;
    }

    /// <summary>Parsed and validated: options for the loop plus how to get model and data.</summary>
    public sealed record Plan(TrainOptions Options, ModelBinding Model, string? InputBin, string? InputValBin, int ValLossEvery, int ValMaxSteps,
        string? TokenizerBin = null, int GenerateEvery = 0, int TextLength = 0)
    {
        /// <summary>Validation on the embedded dataset's val split (no --input_bin, no --input_val_bin, --val_loss_every &gt; 0).</summary>
        public bool EmbeddedVal => InputBin is null && InputValBin is null && ValLossEvery > 0;
    }

    /// <summary>--pipeline_schedule: null (the default) or a schedule that can run this pipeline over
    /// <paramref name="microBatches"/> micro-batches (the gradient-accumulation steps).</summary>
    static Trainer.Parallel.PipelineScheduleKind? PipelineScheduleFlag(string name, Trainer.Parallel.ParallelFlags parallel, int microBatches)
    {
        if (name.Length == 0) return null;
        var kind = Trainer.Parallel.PipelineSchedule.Parse(name)
            ?? throw new UsageException($"--pipeline_schedule: '{name}' is not gpipe, 1f1b or interleaved-1f1b");
        if (parallel.PipelineParallel > 1
            && Trainer.Parallel.PipelineSchedule.Unsupported(kind, parallel.PipelineParallel, parallel.VirtualPipelineParallel, microBatches) is { } why)
            throw new UsageException($"--pipeline_schedule={name}: {why}");
        return kind;
    }

    /// <summary>Flags → plan. Throws <see cref="UsageException"/> (exit 2) or <see cref="RuntimeFailure"/> (exit 1). Writes nothing.</summary>
    public static Plan BuildPlan(FlagValues v)
    {
        if (v.Positional.Count > 0) throw new UsageException($"unexpected argument '{v.Positional[0]}' (flags start with --; see --help)");
        int B = v.GetInt32("batch_size", 1), T = v.GetInt32("sequence_length", 1), total = v.GetInt32("total_batch_size", 1);
        int steps = v.GetInt32("num_iteration", 1);
        int threadsPerProcess = v.GetInt32("nthread_per_process", 1, 1024);   // the ranks of this process
        // Under mpirun the world is processes x threads (InfiniTrain's PROC_WORLD_SIZE); world rank = process * threads + thread.
        int processes = Trainer.Parallel.Mpi.MpiRuntime.LaunchedSize;
        int dp = processes * threadsPerProcess;   // the world
        var parallel = new Trainer.Parallel.ParallelFlags(v.GetInt32("tensor_parallel", 1), v.GetBool("sequence_parallel"),
            v.GetInt32("pipeline_parallel", 1), v.GetInt32("virtual_pipeline_parallel", 1), v.GetInt32("zero_stage", 0));
        if (Trainer.Parallel.ParallelLayout.Validate(dp, parallel) is { Count: > 0 } layoutProblems)
            throw new UsageException(string.Join("; ", layoutProblems));
        string device = v.GetString("device");
        if (device != "cpu" && device != "cuda" && !device.StartsWith("cuda:"))
            throw new UsageException($"--device: '{device}' is not cpu or cuda");
        if (device.StartsWith("cuda"))
        {
            if (!TorchSharp.torch.cuda.is_available())
                throw new RuntimeFailure($"--device={device}: CUDA is not available (this build uses TorchSharp's CPU backend, or no GPU is visible); use --device=cpu");
            int have = TorchSharp.torch.cuda.device_count();
            int need = dp > 1 ? dp : (device.StartsWith("cuda:") && int.TryParse(device[5..], out var i) ? i + 1 : 1);
            if (need > have) throw new RuntimeFailure($"--device={device} with --nthread_per_process={dp} needs {need} CUDA devices, {have} visible");
            if (dp > 1)
            {
                try { Trainer.Parallel.Nccl.NcclNative.EnsureLoaded(); }
                catch (Trainer.Parallel.CommunicatorException e) { throw new RuntimeFailure($"--device={device} --nthread_per_process={dp}: {e.Message}"); }
            }
        }
        if (processes > 1 && device != "cpu")
            throw new UsageException($"--device={device} under mpirun: the MPI backend exchanges CPU tensors; use --device=cpu");
        if (dp > 1 && device.StartsWith("cuda:")) throw new UsageException($"--device={device}: with --nthread_per_process={dp} use --device=cuda (rank i runs on cuda:i)");
        int cores = Environment.ProcessorCount;
        if (device == "cpu" && threadsPerProcess > MaxCpuRanks)
            throw new UsageException($"--nthread_per_process={threadsPerProcess}: at most {MaxCpuRanks} ranks on the CPU (4 per core of this machine's {cores}, at least 8): " +
                "each rank is a busy thread with its own model replica; for a larger global batch on fewer ranks raise --total_batch_size (gradient accumulation)");
        int numThreads = v.GetInt32("num_threads", 0);
        if (numThreads > 4 * cores)
            throw new UsageException($"--num_threads: '{numThreads}' is out of range (must be in [0, {4 * cores}], 4 per core of this machine's {cores}): " +
                "more intra-op threads than cores only slow libtorch down, and thousands may never start where threads are limited");
        string dtype = v.GetChoice("dtype", "float32", "bfloat16");
        string optName = v.GetChoice("optimizer", "sgd", "adam", "adamw");
        double lr = v.GetDouble("learning_rate", 0.0);
        double momentum = v.GetDouble("momentum", 0.0, 1.0);
        double beta1 = Beta(v, "beta1"), beta2 = Beta(v, "beta2");
        double weightDecay = v.GetDouble("weight_decay", 0.0);
        if (weightDecay > float.MaxValue) throw new UsageException($"--weight_decay: '{v.Raw("weight_decay")}' does not fit float32 (at most {float.MaxValue:R}); libtorch applies it to the float32 parameters");
        var lrLimit = new LrLimit(Adam: optName != "sgd");
        if (lrLimit.Problem(lr, beta1, 1) is { } tooLarge) throw new UsageException($"--learning_rate: '{v.Raw("learning_rate")}' is too large: {tooLarge}");
        bool nesterov = v.GetBool("nesterov");
        if (nesterov && (optName != "sgd" || momentum <= 0)) throw new UsageException("--nesterov needs --optimizer=sgd and --momentum > 0");

        string save = v.GetString("save"), load = v.GetString("load");
        int saveInterval = v.GetInt32("save_interval", 0);
        if (save.Length > 0 && saveInterval == 0) throw new UsageException($"--save='{save}' needs --save_interval > 0");
        if (save.Length == 0 && saveInterval > 0) throw new UsageException($"--save_interval={saveInterval} needs --save=DIR");

        var schedFlags = SchedulerFlags.Read(v);
        string schedFlag = schedFlags.ScheduleJson is not null ? "--lr_schedule" : $"--lr_scheduler={schedFlags.Scheduler}";
        Schedule? schedule;
        try { schedule = SchedulerFlags.FromFlags(schedFlags, lr, steps); }
        catch (InvalidScheduleException e) { throw new UsageException($"{schedFlag}: " + e.Message); }
        if (schedule is not null) CheckScheduleRates(schedule, schedFlag, lr, steps, optName == "sgd" ? momentum : beta1, lrLimit);

        string inputBin = v.GetString("input_bin"), valBin = v.GetString("input_val_bin");
        int valEvery = v.GetInt32("val_loss_every", 0);
        if (valEvery > 0 && valBin.Length == 0 && inputBin.Length > 0) throw new UsageException("--val_loss_every needs --input_val_bin (only the embedded dataset has a default validation split)");
        string tokenizerBin = v.GetString("tokenizer_bin");
        foreach (var (flag, path) in new[] { ("input_bin", inputBin), ("input_val_bin", valBin), ("llmc_filepath", v.GetString("llmc_filepath")),
                     ("tokenizer_bin", tokenizerBin == Trainer.Data.TokenizerFile.Embedded ? "" : tokenizerBin) })
        {
            if (path.Length > 0 && Directory.Exists(path)) throw new RuntimeFailure($"--{flag}: '{path}' is a directory, not a file");
            if (path.Length > 0 && !File.Exists(path)) throw new RuntimeFailure($"--{flag}: file '{path}' does not exist");
        }
        if (load.Length > 0 && File.Exists(load)) throw new RuntimeFailure($"--load: '{load}' is a file, not a checkpoint directory (give a checkpoint_step_* directory, or the --save folder holding them)");
        if (load.Length > 0 && !Directory.Exists(load)) throw new RuntimeFailure($"--load: checkpoint directory '{load}' does not exist");
        string logJson = v.GetString("log_json");
        if (logJson.Length > 0) OutputDestination.CheckFile("--log_json", logJson);
        if (save.Length > 0) OutputDestination.CheckDirectory("--save", save);

        var model = ModelBinding.Resolve(v.GetString("model"), v.GetString("llmc_filepath"), dtype == "bfloat16", v.GetInt("seed"));
        if (T > model.BlockSize) throw new UsageException($"--sequence_length={T} exceeds the block size {model.BlockSize} of model '{model.Name}'");
        // The layout against the model's numbers and the batch (every problem named), before anything is built.
        if (Trainer.Parallel.ParallelLayout.Validate(dp, parallel, Trainer.Parallel.ModelDims.Of(model.Config), new Trainer.Parallel.BatchDims(B, T, total)) is { Count: > 0 } problems)
            throw new UsageException(string.Join("; ", problems));
        var dataOrder = v.GetString("data_order") switch
        {
            "infinitrain" => DataOrder.InfiniTrain,
            "llmc" => DataOrder.Llmc,
            var other => throw new UsageException($"--data_order: '{other}' is not one of infinitrain, llmc"),
        };
        int dataParallel = dp / (parallel.TensorParallel * parallel.PipelineParallel);
        if (dataOrder == DataOrder.Llmc && dataParallel != 1)
            throw new UsageException($"--data_order=llmc needs data parallelism 1 (llm.c's shuffled order is defined for one process); this layout has DP={dataParallel}");
        int generateEvery = v.GetInt32("freq_generate_txt", 0), textLength = v.GetInt32("text_length", 1);
        if (tokenizerBin.Length == 0)
            foreach (var flag in new[] { "freq_generate_txt", "text_length" })
                if (v.IsSet(flag)) throw new UsageException($"--{flag} needs --tokenizer_bin (an llm.c tokenizer file, or {Trainer.Data.TokenizerFile.Embedded})");
        var pipelineSchedule = PipelineScheduleFlag(v.GetString("pipeline_schedule"), parallel, total / (B * T * (dp / (parallel.TensorParallel * parallel.PipelineParallel))));

        var lora = ReadLora(v, model.Config, dp);
        if (lora is not null) model = new ModelBinding
        {
            Config = model.Config, Name = model.Name, WeightFile = model.WeightFile, Seed = model.Seed, BFloat16 = model.BFloat16,
            Lora = lora, LoraLoadPath = v.GetString("lora_load_path") is { Length: > 0 } lp ? lp : null,
        };
        string loraSave = v.GetString("lora_save_path");
        if (loraSave.Length > 0) OutputDestination.CheckFile("--lora_save_path", loraSave);

        var o = new TrainOptions
        {
            BatchSize = B, SequenceLength = T, DataOrder = dataOrder, TotalBatchSize = total, NumIterations = steps, World = dp, Processes = processes,
            TensorParallel = parallel.TensorParallel, SequenceParallel = parallel.SequenceParallel, PipelineParallel = parallel.PipelineParallel,
            VirtualPipelineParallel = parallel.VirtualPipelineParallel, PipelineSchedule = pipelineSchedule, ZeroStage = parallel.ZeroStage,
            Device = device, BFloat16 = dtype == "bfloat16", Seed = v.GetInt("seed"),
            Optimizer = optName switch { "sgd" => OptimizerKind.Sgd, "adam" => OptimizerKind.Adam, _ => OptimizerKind.AdamW },
            LearningRate = lr, WeightDecay = weightDecay, Beta1 = beta1,
            Beta2 = beta2, Eps = v.GetDouble("eps", 0.0), Momentum = momentum, Nesterov = nesterov,
            GradClip = v.GetDouble("grad_clip", 0.0),
            Schedule = schedule, ScheduleWantsMetric = schedule?.IsMetricDriven ?? false,
            SaveDir = save.Length > 0 ? save : null, SaveInterval = saveInterval, KeepLast = v.GetInt32("keep_last", 0),
            LoadDir = load.Length > 0 ? load : null, LogJson = logJson.Length > 0 ? logJson : null,
            Progress = v.GetBool("progress") && processes == 1, NumThreads = numThreads,   // mpirun forwards stdout through a pty
            ModelDescription = model.Description,
            Lora = lora, LoraSavePath = lora is not null && loraSave.Length > 0 ? loraSave : null,
            DataName = inputBin.Length > 0 ? inputBin : "embedded:" + Trainer.Data.EmbeddedData.Name,
        };
        return new Plan(o, model, inputBin.Length > 0 ? inputBin : null, valBin.Length > 0 ? valBin : null, valEvery, v.GetInt32("val_max_steps", 1),
            tokenizerBin.Length > 0 && generateEvery > 0 ? tokenizerBin : null, generateEvery, textLength);
    }

    /// <summary>The LoRA flags against the model (every problem a usage error naming the flag); null when --lora_rank=0.
    /// An adapter file given by --lora_load_path is read here, so a wrong one is refused before anything runs.</summary>
    static LoraConfig? ReadLora(FlagValues v, Trainer.Models.ModelConfig model, int ranks)
    {
        int rank = v.GetInt32("lora_rank", 0);
        double alpha = v.GetDouble("lora_alpha", 0.0), dropout = v.GetDouble("lora_dropout", 0.0, 1.0);
        string targets = v.GetString("lora_target_modules"), save = v.GetString("lora_save_path"), load = v.GetString("lora_load_path");
        if (rank == 0)
        {
            foreach (var (flag, given) in new[] { ("lora_save_path", save.Length > 0), ("lora_load_path", load.Length > 0), ("lora_target_modules", targets.Length > 0) })
                if (given) throw new UsageException($"--{flag} needs --lora_rank > 0 (LoRA is off)");
            return null;
        }
        if (dropout >= 1.0) throw new UsageException($"--lora_dropout: '{v.Raw("lora_dropout")}' is out of range (must be in [0, 1))");
        if (dropout > 0 && ranks > 1)
            throw new UsageException($"--lora_dropout={v.Raw("lora_dropout")} needs --nthread_per_process=1: the rank threads would draw their dropout masks from torch's one shared generator, in no fixed order");
        var cfg = new LoraConfig(rank, alpha, LoraConfig.ParseTargets(targets.Length > 0 ? targets : LoraConfig.DefaultTargets(model.Kind)), dropout);
        try { LoraTargets.Resolve(model, cfg); }
        catch (LoraConfigException e) { throw new UsageException(e.Message); }
        if (load.Length > 0)
        {
            if (!File.Exists(load)) throw new RuntimeFailure($"--lora_load_path: file '{load}' does not exist");
            try { LoraWeights.Load(load, model, cfg).Dispose(); }
            catch (LoraConfigException e) { throw new RuntimeFailure(e.Message); }
        }
        return cfg;
    }

    /// <summary>DP ranks on the CPU: 4 per core, at least 8 (InfiniTrain's usual 8-rank layout runs anywhere).</summary>
    static int MaxCpuRanks => Math.Max(8, 4 * Environment.ProcessorCount);

    /// <summary>Adam's betas: PyTorch requires 0 &lt;= beta &lt; 1 (beta = 1 never moves the average off its zero start).</summary>
    static double Beta(FlagValues v, string name)
    {
        double b = v.GetDouble(name, 0.0, 1.0);
        if (b == 1.0) throw new UsageException($"--{name}: '{v.Raw(name)}' is out of range (must be >= 0 and < 1, as PyTorch's Adam requires)");
        return b;
    }

    /// <summary>
    /// The largest LR the optimizer can apply: libtorch takes it as a float32 scalar (the parameters' precision), so it
    /// must stay below float32's largest value, 3.4e38, after Adam/AdamW divide it by the bias correction 1 - beta1^t
    /// (step t). Beyond it the first optimizer step fails with "value cannot be converted to type float without overflow".
    /// (A smaller LR can still blow the weights up; the run then stops at the first non-finite loss.)
    /// </summary>
    sealed record LrLimit(bool Adam)
    {
        /// <summary>Why <paramref name="lr"/> at training step <paramref name="step"/> (beta1 then) cannot be applied, or null.</summary>
        public string? Problem(double lr, double beta1, int step)
        {
            double applied = Adam ? lr / (1 - Math.Pow(beta1, step)) : lr;
            if (applied <= float.MaxValue) return null;
            return !Adam
                ? $"{lr:G4} is beyond float32's largest value {float.MaxValue:G4}; libtorch cannot apply it to the parameters"
                : $"Adam(W)'s step {step} applies lr / (1 - beta1^{step}) = {applied:G4} (beta1 = {beta1:R}), beyond float32's largest value {float.MaxValue:G4}; libtorch cannot apply it to the parameters";
        }
    }

    /// <summary>
    /// Steps the schedule through the whole run now, so that a schedule failing at some step, or giving a rate the
    /// optimizer cannot use, is refused before training starts: a negative LR (refused like --learning_rate &lt; 0,
    /// although PyTorch would train with it), an LR beyond <see cref="LrLimit"/>, a cycled momentum outside the
    /// optimizer's range. ReduceLROnPlateau only lowers the LR, down to its min_lr, which must not be negative.
    /// </summary>
    static void CheckScheduleRates(Schedule schedule, string flag, double lr, int steps, double momentum, LrLimit limit)
    {
        if (schedule is ReduceLROnPlateau p)
        {
            foreach (var m in p.MinLr.Values)
                if (m < 0) throw new UsageException($"{flag}: min_lr {m:R} is negative: ReduceLROnPlateau could lower the learning rate below 0 (refused like --learning_rate < 0)");
            return;
        }
        bool adam = limit.Adam;
        var run = schedule.Start(new[] { lr }, schedule.CyclesMomentum ? new[] { momentum } : null);
        for (int k = 0; k <= steps; k++)
        {
            if (k > 0)
            {
                try { run.Step(); }
                catch (ScheduleStepException e) { throw new UsageException($"lr schedule {schedule.ToJson()} fails: {e.Message}"); }
            }
            if (k == steps) break; // the scheduler steps once more after the last training step; that rate is never used
            int step = k + 1;      // training step `step` runs with the rates after k scheduler steps
            double rate = run.Lrs[0], mom = run.Momenta?[0] ?? momentum;
            if (rate < 0)
                throw new UsageException($"{flag}: the schedule {schedule.ToJson()} gives a negative learning rate {rate:R} at step {step} (refused like --learning_rate < 0; PyTorch would train with it and climb the loss)");
            if (run.Momenta is not null && (mom < 0 || (adam && mom >= 1)))
                throw new UsageException($"{flag}: the schedule cycles {(adam ? "Adam's beta1" : "the momentum")} to {mom:R} at step {step}, outside {(adam ? "[0, 1)" : "[0, inf)")}");
            if (limit.Problem(rate, mom, step) is { } tooLarge)
                throw new UsageException($"{flag}: the schedule's learning rate at step {step}, {rate:R}, is too large: {tooLarge}");
        }
    }

    /// <summary>
    /// The data must hold one global batch (B x DP sequences of T+1 tokens), and one optimizer step (its accumulation
    /// steps' global batches) must fit in one epoch: a larger step would read the same tokens again within itself.
    /// </summary>
    static void CheckDataFits(Plan plan, int[] train, int[]? val)
    {
        var o = plan.Options;
        string trainName = plan.InputBin is { } t ? $"--input_bin '{t}'" : $"the embedded dataset ({Trainer.Data.EmbeddedData.Name})";
        var batches = new DistributedBatches(train, o.BatchSize, o.SequenceLength, o.DataParallel, trainName, o.DataOrder);
        if (o.GradAccumulationSteps > batches.NumGlobalBatches)
            throw new UsageException($"--total_batch_size={o.TotalBatchSize}: one optimizer step reads {o.GradAccumulationSteps} global batches of " +
                $"{o.BatchSize} x {o.SequenceLength} x DP {o.DataParallel} tokens, but {trainName} holds only {batches.NumGlobalBatches} ({train.Length} tokens, one epoch); " +
                $"lower --total_batch_size to at most {batches.NumGlobalBatches * o.TokensPerMicroStep}");
        if (val is not null)
            _ = new DistributedBatches(val, o.BatchSize, o.SequenceLength, o.DataParallel,
                plan.InputValBin is { } vb ? $"--input_val_bin '{vb}'" : $"the embedded validation split ({Trainer.Data.EmbeddedData.Name})");
    }

    /// <summary>Runs <c>train</c>; returns the exit code (0 ok, 1 runtime failure, 2 usage).</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        if (Flags().ParseOrReport(args, output, error, out var v) is { } exit) return exit;
        try
        {
            var plan = BuildPlan(v);
            var tokens = plan.Model.LoadTokens(plan.InputBin, "--input_bin");
            var valTokens = plan.InputValBin is not null || plan.EmbeddedVal ? plan.Model.LoadTokens(plan.InputValBin, "--input_val_bin", embeddedVal: true) : null;
            CheckDataFits(plan, tokens, plan.ValLossEvery > 0 ? valTokens : null);
            var run = new TrainingRun(plan.Options, plan.Model.RankFactory, null, tokens, output);
            if (valTokens is not null) run.Validation = new ValidationSet(valTokens, plan.ValLossEvery, plan.ValMaxSteps);
            if (plan.TokenizerBin is { } tb)
            {
                var tokenizer = Trainer.Data.TokenizerFile.Open(tb);
                if (tokenizer.VocabSize > plan.Model.Config.VocabSize)
                    throw new RuntimeFailure($"--tokenizer_bin: '{tb}' has {tokenizer.VocabSize:N0} tokens, more than the {plan.Model.Config.VocabSize:N0} of model " +
                        $"'{plan.Model.Name}': its ids are not this model's (a LLaMA-3 tokenizer with a GPT-2 vocabulary?)");
                int outside = tokenizer.Prompt.Append(tokenizer.EndOfText).Max();
                if (outside >= plan.Model.Config.VocabSize)
                    throw new RuntimeFailure($"--tokenizer_bin: '{tb}' starts generation from id {outside} (its prompt or end-of-text), outside the " +
                        $"{plan.Model.Config.VocabSize:N0}-token vocabulary of model '{plan.Model.Name}'");
                run.Generation = new TextGeneration(tokenizer, plan.GenerateEvery, plan.TextLength);
            }
            var resume = run.VerifyLoad();
            if (resume is not null && resume.Meta.Step >= plan.Options.NumIterations)
                throw new UsageException($"--load: checkpoint {resume.Directory} is at step {resume.Meta.Step}, not before --num_iteration={plan.Options.NumIterations}; nothing to do");
            var c = plan.Model.Config;
            output.WriteLine($"model {plan.Model.Name}: {c.Kind}, L={c.NLayer}, H={c.NHead}, KV={c.NKvHead}, C={c.NEmbd}, V={c.VocabSize}, block={c.BlockSize}, " +
                $"{Trainer.Data.LlmcWeights.ParamCount(c):N0} parameters{(plan.Model.WeightFile is { } w ? ", weights from " + w : "")}; " +
                $"data {(plan.InputBin ?? "embedded:" + Trainer.Data.EmbeddedData.Name)} ({tokens.Length:N0} tokens)");
            run.Run(resume);
            return 0;
        }
        catch (UsageException e) { error.WriteLine($"error: {e.Message}"); return 2; }
        catch (RuntimeFailure e) { error.WriteLine($"error: {e.Message}"); return 1; }
        catch (InvalidScheduleException e) { error.WriteLine($"error: {e.Message}"); return 2; }
        catch (ScheduleStepException e) { error.WriteLine($"error: lr schedule: {e.Message}"); return 1; }
        catch (TrainingSetupException e) { error.WriteLine($"error: {e.Message}"); return 2; }
        catch (TrainingStoppedException e) { error.WriteLine($"error: {e.Message}"); return 1; }
        catch (Trainer.Checkpoint.CheckpointException e) { error.WriteLine($"error: {e.Message}"); return 1; }
        catch (LrMismatchException e) { error.WriteLine($"error: {e.Message}"); return 1; }
        catch (Trainer.Parallel.CommunicatorException e) { error.WriteLine($"error: {e.Message}"); return 1; }
        catch (IOException e) { error.WriteLine($"error: {e.Message}"); return 1; }
        catch (UnauthorizedAccessException e) { error.WriteLine($"error: {e.Message}"); return 1; }
        catch (Exception e) when (Environment.GetEnvironmentVariable("TRAINER_DEBUG") is null)
        {
            error.WriteLine($"error: {e.GetType().Name}: {e.Message} (set TRAINER_DEBUG=1 for the stack trace)");
            return 1;
        }
    }
}
