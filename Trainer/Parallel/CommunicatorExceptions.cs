namespace Trainer.Parallel;

/// <summary>A collective or point-to-point operation could not complete. Thrown by every backend.</summary>
public class CommunicatorException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Another rank of the world failed (threw, timed out, or passed mismatched arguments), so this rank's pending and
/// future operations stop instead of waiting forever. <see cref="FailedRank"/> is the world rank that failed first.
/// </summary>
public sealed class CommunicatorAbortedException(string operation, int rank, int failedRank, Exception cause)
    : CommunicatorException($"{operation} on world rank {rank} aborted: world rank {failedRank} failed: {cause.GetType().Name}: {cause.Message}", cause)
{
    public int FailedRank { get; } = failedRank;
}

/// <summary>A wait (for the members of a collective, or for a message) ran past the communicator's timeout.</summary>
public sealed class CommunicatorTimeoutException(string message) : CommunicatorException(message);

/// <summary>Members of a group called a collective with arguments that do not fit together (different operations,
/// shapes, dtypes, reduce ops or roots), or a received message does not fit the receiving tensor.</summary>
public sealed class CommunicatorMismatchException(string message) : CommunicatorException(message);
