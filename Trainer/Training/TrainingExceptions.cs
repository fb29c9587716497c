namespace Trainer.Training;

/// <summary>Settings that cannot run together, found before the first step (the CLI reports it as a usage error, exit 2).</summary>
public sealed class TrainingSetupException(string message) : Exception(message);

/// <summary>The run stopped: the training itself failed (the CLI reports it as a runtime failure, exit 1).</summary>
public sealed class TrainingStoppedException(string message) : Exception(message);
