using Schedules.Core;

namespace Trainer.Training;

public enum OptimizerKind { Sgd, Adam, AdamW }

/// <summary>Everything the training loop needs, already validated (see <c>Trainer.Cli.TrainCommand</c>).</summary>
public sealed record TrainOptions
{
    public int BatchSize { get; init; } = 4;
    public int SequenceLength { get; init; } = 64;
    /// <summary>Tokens per optimizer step over all ranks: B × T × DP × accumulation steps.</summary>
    public int TotalBatchSize { get; init; } = 256;
    public int NumIterations { get; init; } = 10;
    /// <summary>Data-parallel replicas in this process (one thread each).</summary>
    public int DataParallel { get; init; } = 1;
    /// <summary>"cpu" or "cuda"; with DP &gt; 1 and cuda, rank i runs on cuda:i.</summary>
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
    /// <summary>Torch intra-op threads; 0 = (cores - 1) / DP (at least 1).</summary>
    public int NumThreads { get; init; }

    /// <summary>Where the training tokens come from (a path or embedded:NAME); named in resume messages.</summary>
    public string? DataName { get; init; }

    /// <summary>Identity of the model configuration (checked on resume).</summary>
    public string ModelDescription { get; init; } = "";

    public int TokensPerMicroStep => BatchSize * SequenceLength * DataParallel;
    public int GradAccumulationSteps => TotalBatchSize / TokensPerMicroStep;
}
