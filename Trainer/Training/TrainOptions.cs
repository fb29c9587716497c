using Schedules.Core;

namespace Trainer.Training;

public enum OptimizerKind { Sgd, Adam, AdamW }

/// <summary>--data_order: which samples each global batch reads (<see cref="DistributedBatches"/>).</summary>
public enum DataOrder
{
    /// <summary>InfiniTrain's DistributedDataLoader: consecutive samples, the same order every epoch.</summary>
    InfiniTrain,
    /// <summary>llm.c's train_gpt2 loader with its seeded shuffle (one rank; <see cref="LlmcSampleOrder"/>).</summary>
    Llmc,
}

/// <summary>Everything the training loop needs, already validated (see <c>Trainer.Cli.TrainCommand</c>).</summary>
public sealed record TrainOptions
{
    public int BatchSize { get; init; } = 4;
    public int SequenceLength { get; init; } = 64;
    public DataOrder DataOrder { get; init; } = DataOrder.InfiniTrain;
    /// <summary>Tokens per optimizer step over all ranks: B × T × DP × accumulation steps.</summary>
    public int TotalBatchSize { get; init; } = 256;
    public int NumIterations { get; init; } = 10;
    /// <summary>All ranks: TP × DP × PP — the ranks of this process (--nthread_per_process, one thread each), or under
    /// mpirun World / <see cref="Processes"/> rank threads in each of the processes.</summary>
    public int World { get; init; } = 1;
    /// <summary>Processes of the mpirun job (the MPI backend; one rank each, or several rank threads each over the hybrid
    /// communicator); 1 = the ranks are threads of this process.</summary>
    public int Processes { get; init; } = 1;
    /// <summary>--tensor_parallel: ranks that split every layer.</summary>
    public int TensorParallel { get; init; } = 1;
    /// <summary>--sequence_parallel: activations outside attention/MLP split along T over the TP group.</summary>
    public bool SequenceParallel { get; init; }
    /// <summary>--pipeline_parallel: pipeline stages; the gradient-accumulation steps are the micro-batches.</summary>
    public int PipelineParallel { get; init; } = 1;
    /// <summary>--virtual_pipeline_parallel: model chunks per pipeline stage.</summary>
    public int VirtualPipelineParallel { get; init; } = 1;
    /// <summary>--pipeline_schedule; null = the one with the fewest activations in flight (<see cref="Trainer.Parallel.PipelineSchedule.Default"/>).</summary>
    public Trainer.Parallel.PipelineScheduleKind? PipelineSchedule { get; init; }
    /// <summary>--zero_stage: 0 replicated optimizer, 1 optimizer state sharded over DP, 2 gradients too.</summary>
    public int ZeroStage { get; init; }
    /// <summary>Data-parallel replicas: World / (TP × PP).</summary>
    public int DataParallel => World / (TensorParallel * PipelineParallel);
    /// <summary>The rank arrangement (TP-DP-PP order); throws on a layout that cannot be built.</summary>
    public Trainer.Parallel.ParallelLayout Layout =>
        new(World, TensorParallel, PipelineParallel, VirtualPipelineParallel, SequenceParallel, ZeroStage);
    /// <summary>"cpu" or "cuda"; with several ranks and cuda, rank i runs on cuda:i.</summary>
    public string Device { get; init; } = "cpu";
    public bool BFloat16 { get; init; }
    public long Seed { get; init; } = 42;

    public OptimizerKind Optimizer { get; init; } = OptimizerKind.AdamW;
    public double LearningRate { get; init; } = 6e-4;
    public double WeightDecay { get; init; }
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    public double Momentum { get; init; }
    public bool Nesterov { get; init; }
    /// <summary>Max global gradient L2 norm; 0 = no clipping.</summary>
    public double GradClip { get; init; }

    /// <summary>The LR schedule; null = constant LR, no scheduler.</summary>
    public Schedule? Schedule { get; init; }
    /// <summary>ReduceLROnPlateau: step with the metric (the step's train loss).</summary>
    public bool ScheduleWantsMetric { get; init; }

    public string? SaveDir { get; init; }
    public int SaveInterval { get; init; }
    public int KeepLast { get; init; } = 3;
    public string? LoadDir { get; init; }
    public string? LogJson { get; init; }
    /// <summary>Progress bar on a terminal.</summary>
    public bool Progress { get; init; }
    /// <summary>Torch intra-op threads; 0 = (cores - 1) / ranks (at least 1).</summary>
    public int NumThreads { get; init; }

    /// <summary>Where the training tokens come from (a path or embedded:NAME); named in resume messages.</summary>
    public string? DataName { get; init; }

    /// <summary>LoRA settings (null: full fine-tuning); the adapters themselves come with the model.</summary>
    public Trainer.Lora.LoraConfig? Lora { get; init; }
    /// <summary>--lora_save_path: write the adapters alone here after the last step.</summary>
    public string? LoraSavePath { get; init; }

    /// <summary>Identity of the model configuration (checked on resume).</summary>
    public string ModelDescription { get; init; } = "";

    public int TokensPerMicroStep => BatchSize * SequenceLength * DataParallel;
    public int GradAccumulationSteps => TotalBatchSize / TokensPerMicroStep;
}
