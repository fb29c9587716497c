using System.Text.Json.Serialization;
using Trainer.Parallel;

namespace Trainer.Checkpoint;

/// <summary>A checkpoint that cannot be used by this run (missing shard, layout or state mismatch).</summary>
public sealed class CheckpointException(string message) : Exception(message);

/// <summary>The parallel layout a checkpoint was written under (trainer.json's "layout").</summary>
public sealed record CheckpointLayout
{
    [JsonPropertyName("tp")] public int Tp { get; init; } = 1;
    [JsonPropertyName("dp")] public int Dp { get; init; } = 1;
    [JsonPropertyName("pp")] public int Pp { get; init; } = 1;
    [JsonPropertyName("vpp")] public int Vpp { get; init; } = 1;
    [JsonPropertyName("sp")] public bool Sp { get; init; }
    [JsonPropertyName("zero_stage")] public int ZeroStage { get; init; }

    public static CheckpointLayout Of(ParallelLayout l) => new() { Tp = l.Tp, Dp = l.Dp, Pp = l.Pp, Vpp = l.Vpp, Sp = l.Sp, ZeroStage = l.ZeroStage };

    /// <summary>Whole replicas with a replicated optimizer: every rank's state is the same, so DP may change on resume.</summary>
    bool Replicated => Tp == 1 && Pp == 1 && ZeroStage == 0;

    public override string ToString() => $"TP={Tp} DP={Dp} PP={Pp}" + (Vpp > 1 ? $" VPP={Vpp}" : "") + (Sp ? " SP" : "") + $" ZeRO-{ZeroStage}";

    /// <summary>Null when a run with layout <paramref name="now"/> can resume a checkpoint of <paramref name="saved"/>
    /// (the same layout, or replicated layouts of any DP); otherwise why not.</summary>
    public static string? Mismatch(CheckpointLayout saved, CheckpointLayout now) =>
        saved == now || (saved.Replicated && now.Replicated) ? null
        : $"it was written under layout {saved}, this run is {now}; resume under the same --tensor_parallel, --sequence_parallel, --pipeline_parallel, --zero_stage and data-parallel size (a checkpoint moves between layouts only when the model is not split and the optimizer not sharded)";
}
