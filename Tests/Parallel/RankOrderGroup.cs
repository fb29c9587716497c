using Trainer.Parallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Tests.Parallel;

/// <summary>
/// A minimal in-process test double of <see cref="ICommunicator"/> (ranks are threads): all-reduce, reduce-scatter and
/// all-gather, reductions added in rank order 0..n-1, so reduce-scatter chunk r ≡ all-reduce chunk r bit for bit.
/// Stands in until the real ThreadCommunicator lands; the rest of the interface is not needed here.
/// </summary>
public sealed class RankOrderGroup : ICommunicator
{
    sealed class Shared(int n)
    {
        public readonly Barrier Barrier = new(n);
        public readonly Tensor?[] Slots = new Tensor?[n];
    }

    readonly Shared _s;
    RankOrderGroup(Shared s, int rank, int size) { _s = s; Rank = rank; Size = size; WorldRanks = Enumerable.Range(0, size).ToArray(); }

    public static ICommunicator[] Create(int size)
    {
        var s = new Shared(size);
        return Enumerable.Range(0, size).Select(r => (ICommunicator)new RankOrderGroup(s, r, size)).ToArray();
    }

    public int Rank { get; }
    public int Size { get; }
    public IReadOnlyList<int> WorldRanks { get; }

    // Post the tensor, wait for everyone, run the local part, wait until everyone has read the others' tensors.
    void Collective(Tensor posted, Action local)
    {
        _s.Slots[Rank] = posted;
        _s.Barrier.SignalAndWait();
        using (torch.no_grad()) local();
        _s.Barrier.SignalAndWait();
    }

    static Tensor Reduce(IEnumerable<Tensor> parts, ReduceOp op, int n)
    {
        Tensor? acc = null;
        foreach (var p in parts)
        {
            if (acc is null) acc = p.clone();
            else if (op == ReduceOp.Max) acc = torch.maximum(acc, p);
            else acc.add_(p);
        }
        if (op == ReduceOp.Avg) acc!.div_(n);
        return acc!;
    }

    public void AllReduce(Tensor tensor, ReduceOp op)
    {
        Tensor? result = null;
        Collective(tensor, () => result = Reduce(_s.Slots.Select(t => t!), op, Size));
        using (torch.no_grad()) tensor.copy_(result!);
        result!.Dispose();
    }

    public void ReduceScatter(Tensor output, Tensor input, ReduceOp op)
    {
        long chunk = output.numel();
        if (input.numel() != chunk * Size) throw new ArgumentException($"reduce-scatter: input has {input.numel()} elements, expected {Size} x {chunk}");
        Collective(input, () =>
        {
            using var r = Reduce(_s.Slots.Select(t => t!.reshape(-1).narrow(0, Rank * chunk, chunk)), op, Size);
            output.copy_(r.view(output.shape));
        });
    }

    public void AllGather(Tensor output, Tensor input)
    {
        long chunk = input.numel();
        Collective(input, () =>
        {
            var flat = output.view(-1);
            for (int r = 0; r < Size; r++) flat.narrow(0, r * chunk, chunk).copy_(_s.Slots[r]!.reshape(-1));
        });
    }

    public void Barrier() => _s.Barrier.SignalAndWait();
    public void Broadcast(Tensor tensor, int root) => throw new NotSupportedException();
    public void Send(Tensor tensor, int peer) => throw new NotSupportedException();
    public void Recv(Tensor tensor, int peer) => throw new NotSupportedException();
    public ICommunicator Split(int color, int key) => throw new NotSupportedException();
    public void Dispose() { }
}
