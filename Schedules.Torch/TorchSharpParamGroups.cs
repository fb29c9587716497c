namespace Schedules.Torch;

// Placeholder: the TorchSharp-backed IParamGroups is being written (see issue 2, "a TorchSharp optimizer is one implementation").
public sealed partial class TorchSharpParamGroups { }
