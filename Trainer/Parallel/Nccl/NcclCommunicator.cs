using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Trainer.Parallel.Nccl;

/// <summary>
/// The CUDA backend: one NCCL communicator per rank; in one process the ranks are threads on cuda:0..n-1
/// (<see cref="CreateWorld"/>, ncclCommInitAll, as InfiniTrain does), groups by ncclCommSplit. Work is enqueued on
/// each device's default stream (stream 0), the one libtorch uses when TorchSharp runs it, so it is ordered with the
/// surrounding kernels without events.
/// <para>Determinism: NCCL's own reductions (ring/tree, chosen by size and topology) are not rank-ordered, so, as the MPI
/// backend does, reductions never use them: member r receives every member's chunk r (grouped ncclSend/ncclRecv — an
/// all-to-all), combines them with <see cref="Reduction.Combine"/> on its GPU (rank order, bf16 in float32), and the
/// chunks are all-gathered back. Results equal the thread backend's bit for bit, given the same CUDA kernels.</para>
/// <para>Not yet: multi-process NCCL (ncclCommInitRank with the id broadcast over MPI is bound in
/// <see cref="NcclNative"/> but not wired; the trainer refuses --device cuda under mpirun), argument checks across
/// members and timeouts (a hang in NCCL is not detected here). Verified: compiles; nothing runs it on the CPU-only CI.</para>
/// </summary>
public sealed unsafe class NcclCommunicator : ICommunicator
{
    readonly IntPtr _comm;
    readonly Device _device;
    readonly int[] _worldRanks;
    bool _disposed;

    NcclCommunicator(IntPtr comm, Device device, int rank, int[] worldRanks)
    {
        _comm = comm; _device = device; Rank = rank; _worldRanks = worldRanks;
    }

    /// <summary>One communicator per rank, rank i on cuda:i (all in this process). Throws naming libnccl.so.2 when absent.</summary>
    public static IReadOnlyList<ICommunicator> CreateWorld(int size)
    {
        NcclNative.EnsureLoaded();
        var devices = Enumerable.Range(0, size).ToArray();
        var comms = NcclNative.CommInitAll(devices);
        return comms.Select((c, r) => (ICommunicator)new NcclCommunicator(c, torch.device(DeviceType.CUDA, r), r, devices)).ToArray();
    }

    public int Rank { get; }
    public int Size => _worldRanks.Length;
    public IReadOnlyList<int> WorldRanks => _worldRanks;
    string What(string op) => $"{op} on NCCL group [{string.Join(",", _worldRanks)}], world rank {_worldRanks[Rank]}";

    [DllImport("LibTorchSharp")] static extern IntPtr THSTensor_data(IntPtr handle);
    static void* Data(Tensor t) => (void*)THSTensor_data(t.Handle);

    Tensor OnDevice(Tensor t, string op)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (t.device_type != DeviceType.CUDA || t.device_index != _device.index)
            throw new CommunicatorException($"{What(op)}: the tensor is on {t.device}, this rank's NCCL communicator on {_device}");
        return t.is_contiguous() ? t : t.contiguous();
    }

    /// <summary>Grouped sends/receives: member j gets <paramref name="counts"/>[j] elements from offset displs[j] of
    /// <paramref name="src"/>; returns Size rows of <paramref name="m"/> elements, row j from member j.</summary>
    Tensor[] AllToAll(Tensor src, long[] counts, long m)
    {
        long es = src.ElementSize;
        var recv = torch.empty(Size * m, src.dtype, _device);
        byte* s = (byte*)Data(src), r = (byte*)Data(recv);
        NcclNative.GroupStart();
        long offset = 0;
        for (int j = 0; j < Size; j++)
        {
            if (counts[j] > 0) NcclNative.Send(s + offset * es, counts[j] * es, j, _comm);
            if (m > 0) NcclNative.Recv(r + j * m * es, m * es, j, _comm);
            offset += counts[j];
        }
        NcclNative.GroupEnd();
        var rows = recv.view(Size, m);
        return Enumerable.Range(0, Size).Select(j => rows[j]).ToArray();
    }

    public void AllReduce(Tensor tensor, ReduceOp op)
    {
        if (Reduction.Unsupported(tensor.dtype, op) is { } why) throw new CommunicatorMismatchException($"{What("AllReduce")}: {why}");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var src = OnDevice(tensor, "AllReduce").reshape(-1);
        long n = src.numel();
        var counts = Enumerable.Range(0, Size).Select(j => n / Size + (j < n % Size ? 1 : 0)).ToArray();
        long mMax = counts[0];
        // Equal chunks of mMax (the last ones padded) so the gather is one ncclAllGather.
        var padded = torch.zeros(Size * mMax, tensor.dtype, _device);
        long offset = 0;
        for (int j = 0; j < Size; j++) { padded.narrow(0, j * mMax, counts[j]).copy_(src.narrow(0, offset, counts[j])); offset += counts[j]; }
        var parts = AllToAll(padded, Enumerable.Repeat(mMax, Size).ToArray(), mMax);
        var mine = Reduction.Combine(parts, op, tensor.dtype, _device).contiguous();
        var gathered = torch.empty(Size * mMax, tensor.dtype, _device);
        NcclNative.AllGather(Data(mine), Data(gathered), mMax * mine.ElementSize, _comm);
        var rows = gathered.view(Size, mMax);
        var result = torch.cat(Enumerable.Range(0, Size).Select(j => rows[j].narrow(0, 0, counts[j])).ToArray(), 0);
        tensor.copy_(result.view(tensor.shape));
    }

    public void ReduceScatter(Tensor output, Tensor input, ReduceOp op)
    {
        if (Reduction.Unsupported(input.dtype, op) is { } why) throw new CommunicatorMismatchException($"{What("ReduceScatter")}: {why}");
        if (input.numel() != Size * output.numel()) throw new CommunicatorMismatchException($"{What("ReduceScatter")}: input must hold {Size} x output's {output.numel()} elements");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        long m = output.numel();
        var parts = AllToAll(OnDevice(input, "ReduceScatter").reshape(-1), Enumerable.Repeat(m, Size).ToArray(), m);
        output.copy_(Reduction.Combine(parts, op, output.dtype, _device).view(output.shape));
    }

    public void AllGather(Tensor output, Tensor input)
    {
        if (output.numel() != Size * input.numel()) throw new CommunicatorMismatchException($"{What("AllGather")}: output must hold {Size} x input's {input.numel()} elements");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var src = OnDevice(input, "AllGather");
        var result = torch.empty(output.numel(), output.dtype, _device);
        NcclNative.AllGather(Data(src), Data(result), src.numel() * src.ElementSize, _comm);
        output.copy_(result.view(output.shape));
    }

    public void Broadcast(Tensor tensor, int root)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var buf = OnDevice(tensor, "Broadcast").clone();
        NcclNative.Broadcast(Data(buf), Data(buf), buf.numel() * buf.ElementSize, root, _comm);
        if (Rank != root) tensor.copy_(buf);
    }

    /// <summary>A one-byte all-reduce followed by a wait on this device: every member has reached this point.</summary>
    public void Barrier()
    {
        using var t = torch.zeros(1, ScalarType.Float32, _device);
        AllReduce(t, ReduceOp.Sum);
        torch.cuda.synchronize(_device);
    }

    /// <summary>ncclCommSplit; members ordered by (key, rank) as in every backend (colors and keys gathered first).</summary>
    public ICommunicator Split(int color, int key)
    {
        using var mine = torch.tensor(new long[] { color, key }, device: _device);
        using var all = torch.zeros(2 * Size, ScalarType.Int64, _device);
        AllGather(all, mine);
        var ck = all.cpu().data<long>().ToArray();
        var members = Enumerable.Range(0, Size).Where(r => ck[2 * r] == color).OrderBy(r => ck[2 * r + 1]).ThenBy(r => r).ToArray();
        var comm = NcclNative.CommSplit(_comm, color, key);
        return new NcclCommunicator(comm, _device, Array.IndexOf(members, Rank), members.Select(r => _worldRanks[r]).ToArray());
    }

    /// <summary>Blocking like NCCL's send: callers pair it with the peer's Recv (the pipeline schedule does).</summary>
    public void Send(Tensor tensor, int peer)
    {
        using var scope = torch.NewDisposeScope();
        var src = OnDevice(tensor, "Send");
        NcclNative.Send(Data(src), src.numel() * src.ElementSize, peer, _comm);
        torch.cuda.synchronize(_device);   // the tensor may be reused after Send returns
    }

    public void Recv(Tensor tensor, int peer)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var buf = torch.empty(tensor.numel(), tensor.dtype, _device);
        NcclNative.Recv(Data(buf), buf.numel() * buf.ElementSize, peer, _comm);
        tensor.copy_(buf.view(tensor.shape));
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        NcclNative.CommDestroy(_comm);
    }
}
