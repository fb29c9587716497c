using static TorchSharp.torch;

namespace Trainer.Parallel;

public enum ReduceOp { Sum, Avg, Max }

/// <summary>
/// A group of ranks that exchange tensors: the collectives training needs, over TorchSharp tensors (CPU or CUDA).
/// Every member calls each collective in the same order (as with MPI/NCCL). Backends: in-process threads (the default
/// and the reference: deterministic, rank-ordered reductions); MPI and NCCL later, behind this same interface.
/// A communicator is used by exactly one rank; ranks are identified by this object, never by thread-local state
/// (libtorch may run autograd on other threads), so autograd functions capture the communicator they need.
/// Failures throw <see cref="CommunicatorException"/> subclasses: arguments that do not fit the peers'
/// (<see cref="CommunicatorMismatchException"/>), a wait past the timeout (<see cref="CommunicatorTimeoutException"/>),
/// another rank's failure (<see cref="CommunicatorAbortedException"/>, naming it).
/// </summary>
public interface ICommunicator : IDisposable
{
    /// <summary>This member's rank within the group, 0..Size-1.</summary>
    int Rank { get; }
    /// <summary>Number of members.</summary>
    int Size { get; }
    /// <summary>The world ranks of the members, in group-rank order (for messages and checkpoints).</summary>
    IReadOnlyList<int> WorldRanks { get; }

    /// <summary>In place: every member ends with the reduction of all members' tensors (same shape and dtype).
    /// Deterministic backends add in rank order 0..Size-1, so every member holds the same bits. Avg = that Sum, then
    /// divided by Size; bfloat16/float16 are reduced in float32 and rounded once (the rule: <see cref="Reduction"/>).</summary>
    void AllReduce(Tensor tensor, ReduceOp op);

    /// <summary><paramref name="input"/> holds Size equal chunks along dim 0 (flattened); member r receives in
    /// <paramref name="output"/> the reduction of every member's chunk r. Bit-identical to chunk r of an AllReduce.</summary>
    void ReduceScatter(Tensor output, Tensor input, ReduceOp op);

    /// <summary><paramref name="output"/> (Size × input along dim 0) receives every member's <paramref name="input"/> in rank order.</summary>
    void AllGather(Tensor output, Tensor input);

    /// <summary>In place: every member ends with <paramref name="root"/>'s tensor.</summary>
    void Broadcast(Tensor tensor, int root);

    /// <summary>Point to point within the group (group ranks). Send returns when the tensor may be reused; messages
    /// from one member to another arrive in the order sent; Recv needs a tensor of the message's shape and dtype.</summary>
    void Send(Tensor tensor, int peer);
    void Recv(Tensor tensor, int peer);

    void Barrier();

    /// <summary>Collective: members with the same <paramref name="color"/> form a new group, ordered by
    /// (<paramref name="key"/>, rank). Returns this member's new group.</summary>
    ICommunicator Split(int color, int key);
}

/// <summary>A backend whose ranks are threads of this process (threads, threads × processes): a rank thread that fails
/// calls <see cref="Abort"/> so its peers in this process stop waiting for it and throw
/// <see cref="CommunicatorAbortedException"/> naming it. (One rank per process needs no such call: the process ends.)</summary>
public interface IAbortableCommunicator : ICommunicator
{
    /// <summary>Marks this rank's world as failed by this rank; every member's pending and later operations throw. The first call wins.</summary>
    void Abort(Exception cause);
}
