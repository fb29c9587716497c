namespace Schedules.Core;

/// <summary>
/// PyTorch's keyword defaults that more than one place needs (the classes' constructors, the JSON reader, the trainer's
/// scheduler flags and their --help), written once here.
/// </summary>
public static class TorchDefaults
{
    /// <summary>StepLR and MultiStepLR gamma.</summary>
    public const double StepGamma = 0.1;
    /// <summary>CyclicLR gamma (used by mode exp_range only).</summary>
    public const double CyclicGamma = 1.0;
    /// <summary>OneCycleLR pct_start, div_factor, final_div_factor.</summary>
    public const double OneCyclePctStart = 0.3, OneCycleDivFactor = 25.0, OneCycleFinalDivFactor = 1e4;
    /// <summary>ReduceLROnPlateau factor, patience, threshold, cooldown.</summary>
    public const double PlateauFactor = 0.1, PlateauThreshold = 1e-4;
    public const int PlateauPatience = 10, PlateauCooldown = 0;
}
