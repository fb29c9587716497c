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

    /// <summary>Null when a run with layout <paramref name="now"/> can resume a checkpoint of <paramref name="saved"/>;
    /// otherwise why not. Every layout of the same model can: the same layout and replicated layouts of any DP load
    /// their files as they are; any other pair moves the state through the single-device layout (<see cref="Moves"/>).</summary>
    public static string? Mismatch(CheckpointLayout saved, CheckpointLayout now) =>
        saved.Tp < 1 || saved.Dp < 1 || saved.Pp < 1 || saved.Vpp < 1 || saved.ZeroStage is < 0 or > 2
            ? $"it records an impossible layout {saved}" : null;

    /// <summary>True when resuming <paramref name="saved"/> under <paramref name="now"/> consolidates the state to the
    /// single-device layout and cuts it again (the layouts split the model or shard the optimizer differently).</summary>
    public static bool Moves(CheckpointLayout saved, CheckpointLayout now) => saved != now && !(saved.Replicated && now.Replicated);
}
