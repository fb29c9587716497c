using TorchSharp.Modules;
using Trainer.Training;
using static TorchSharp.torch;

namespace Trainer.Parallel;

/// <summary>
/// Builds the TorchSharp optimizer a rank runs: one param group per entry of <paramref name="groups"/>, in that order
/// (per-group options such as a no-decay group are the factory's business: it knows the group index). Under ZeRO-0 the
/// groups hold the model's parameters; under ZeRO-1/2 each group holds one shard tensor (possibly with no elements).
/// </summary>
public delegate OptimizerHelper ShardOptimizerFactory(IReadOnlyList<IReadOnlyList<Parameter>> groups);

public static class ShardOptimizers
{
    /// <summary>SGD / Adam / AdamW with the CLI's options (as <c>TrainingRun</c> builds them), every group alike.</summary>
    public static ShardOptimizerFactory FromOptions(TrainOptions o) => groups => o.Optimizer switch
    {
        OptimizerKind.Sgd => optim.SGD(groups.Select(g => new SGD.ParamGroup { Parameters = g }), o.LearningRate, o.Momentum, 0, o.WeightDecay, o.Nesterov),
        OptimizerKind.Adam => optim.Adam(groups.Select(g => new Adam.ParamGroup { Parameters = g }), o.LearningRate, o.Beta1, o.Beta2, o.Eps, o.WeightDecay),
        _ => optim.AdamW(groups.Select(g => new AdamW.ParamGroup { Parameters = g }), o.LearningRate, o.Beta1, o.Beta2, o.Eps, o.WeightDecay),
    };
}
