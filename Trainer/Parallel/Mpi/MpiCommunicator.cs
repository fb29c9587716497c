using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Trainer.Parallel.Mpi;

/// <summary>
/// The multi-process backend: one rank per process, over Open MPI (processes on one machine or on several nodes,
/// started by <c>mpirun</c>), CPU tensors. Obtain the world from <see cref="MpiRuntime.World"/>; groups by <see cref="Split"/>
/// (MPI_Comm_split).
/// <para>Determinism: results are bit-identical to <see cref="ThreadCommunicator"/>'s for the same inputs. MPI's own
/// reductions are not used (their order depends on the algorithm Open MPI picks, not on rank order); instead an
/// AllReduce is a reduce-scatter + all-gather written with MPI_Ialltoallv / MPI_Iallgatherv on raw bytes: member r
/// receives every member's chunk r, combines the chunks with <see cref="Reduction.Combine"/> (rank order, bf16/f16 in
/// float32, Avg = Sum / n) and the chunks are gathered back. Because the rule is elementwise this equals the thread
/// backend's whole-tensor reduction bit for bit, and moves the same bytes as a ring all-reduce (2 (n-1)/n of the tensor).</para>
/// <para>Checks and timeouts: before every collective the members exchange a small header (collective number, operation,
/// dtypes, sizes, shapes' hashes, reduce op or root) point to point, so a mismatch throws
/// <see cref="CommunicatorMismatchException"/> on every member, and a member that never arrives is named in the
/// <see cref="CommunicatorTimeoutException"/> thrown after the timeout. Every wait polls a non-blocking request
/// (MPI_Test) against the timeout. The trainer then ends the job with MPI_Abort (<see cref="MpiRuntime.End"/>).</para>
/// <para>Send is buffered like the thread backend's (the tensor is copied, the send completes in the background);
/// messages between two members arrive in the order sent (MPI's non-overtaking rule).</para>
/// </summary>
public sealed unsafe class MpiCommunicator : ICommunicator
{
    const int HeaderTag = 7001, SendHeaderTag = 7002, SendDataTag = 7003;
    internal const int H = 12;   // header fields, see Agree()

    readonly IntPtr _comm;
    readonly bool _ownsComm;
    readonly TimeSpan _timeout;
    readonly int[] _worldRanks;
    readonly List<(IntPtr Request, Tensor Buffer)> _pendingSends = new();
    long _ops;
    bool _disposed;

    MpiCommunicator(IntPtr comm, bool ownsComm, TimeSpan timeout, int[] worldRanks)
    {
        _comm = comm; _ownsComm = ownsComm; _timeout = timeout; _worldRanks = worldRanks;
        Rank = MpiNative.CommRank(comm);
        Size = MpiNative.CommSize(comm);
        if (worldRanks.Length != Size) throw new CommunicatorException($"MPI communicator of {Size} ranks, expected {worldRanks.Length}");
    }

    internal static MpiCommunicator CreateWorld(TimeSpan timeout)
    {
        var world = MpiNative.CommWorld;
        return new MpiCommunicator(world, false, timeout, Enumerable.Range(0, MpiNative.CommSize(world)).ToArray());
    }

    public int Rank { get; }
    public int Size { get; }
    public IReadOnlyList<int> WorldRanks => _worldRanks;
    int WorldRank => _worldRanks[Rank];
    string GroupName => $"[{string.Join(",", _worldRanks)}]";
    string Who(int r) => _worldRanks[r] == r ? $"rank {r}" : $"rank {r} (world rank {_worldRanks[r]})";

    // ------------------------------------------------------------------ collectives

    internal enum Op { AllReduce = 1, ReduceScatter, AllGather, Broadcast, Barrier, Split }

    public void AllReduce(Tensor tensor, ReduceOp op)
    {
        string what = Agree(Op.AllReduce, tensor, null, (int)op);
        CheckReducible(tensor.dtype, op, what);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var src = HostContiguous(tensor, what);
        long n = src.numel();
        var counts = ChunkCounts(n);
        long m = counts[Rank];
        var parts = ExchangeChunks(src, counts, m, what);            // member j's chunk `Rank`, for every j
        var mine = Reduction.Combine(Rows(parts, m), op, tensor.dtype, CPU);
        var result = torch.empty(n, tensor.dtype);
        GatherChunks(mine, result, counts, what);
        tensor.copy_(result.view(tensor.shape));
    }

    public void ReduceScatter(Tensor output, Tensor input, ReduceOp op)
    {
        string what = Agree(Op.ReduceScatter, input, output, (int)op);
        CheckReducible(input.dtype, op, what);
        CheckSizes(what, input, output, "input", "output");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var src = HostContiguous(input, what);
        long m = output.numel();
        var parts = ExchangeChunks(src, Enumerable.Repeat(m, Size).ToArray(), m, what);
        var mine = Reduction.Combine(Rows(parts, m), op, output.dtype, CPU);
        output.copy_(mine.view(output.shape));
    }

    public void AllGather(Tensor output, Tensor input)
    {
        string what = Agree(Op.AllGather, input, output, 0);
        CheckSizes(what, output, input, "output", "input");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var src = HostContiguous(input, what).reshape(-1);
        var result = torch.empty(output.numel(), output.dtype);
        GatherChunks(src, result, Enumerable.Repeat(src.numel(), Size).ToArray(), what);
        output.copy_(result.view(output.shape));
    }

    public void Broadcast(Tensor tensor, int root)
    {
        string what = Agree(Op.Broadcast, tensor, null, root);
        if (root < 0 || root >= Size) throw new CommunicatorMismatchException($"{what}: root {root} is not a rank of this group of {Size}");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var buf = HostContiguous(tensor, what).clone();
        var req = MpiNative.Ibcast(Data(buf), Bytes(buf.numel(), buf, what), root, _comm);
        Wait(ref req, what, () => $"the broadcast from {Who(root)}");
        if (Rank != root) tensor.copy_(buf);
    }

    public void Barrier() => Agree(Op.Barrier, null, null, 0);   // the header exchange is itself a barrier

    public ICommunicator Split(int color, int key)
    {
        var headers = new long[Size * H];
        string what = Agree(Op.Split, null, null, 0, color, key, headers);
        // Members and their order, as MPI_Comm_split defines them (and the thread backend): same color, by (key, rank).
        var members = Enumerable.Range(0, Size).Where(r => headers[r * H + 9] == color)
            .OrderBy(r => headers[r * H + 10]).ThenBy(r => r).Select(r => _worldRanks[r]).ToArray();
        var comm = MpiNative.CommSplit(_comm, color, key);
        var sub = new MpiCommunicator(comm, true, _timeout, members);
        if (sub._worldRanks[sub.Rank] != WorldRank)
            throw new CommunicatorException($"{what}: MPI_Comm_split put world rank {WorldRank} at rank {sub.Rank} of {sub.GroupName}");
        return sub;
    }

    // ------------------------------------------------------------------ point to point

    public void Send(Tensor tensor, int peer)
    {
        string what = $"Send to rank {peer} of group {GroupName} on world rank {WorldRank}";
        BeginOperation();
        CheckPeer(peer, what);
        Tensor copy, header;
        using (torch.no_grad())
        {
            copy = HostContiguous(tensor, what).clone().DetachFromDisposeScope();
            header = torch.tensor(MessageHeader(tensor)).DetachFromDisposeScope();
        }
        _pendingSends.Add((MpiNative.Isend(Data(header), (int)(header.numel() * 8), peer, SendHeaderTag, _comm), header));
        _pendingSends.Add((MpiNative.Isend(Data(copy), Bytes(copy.numel(), copy, what), peer, SendDataTag, _comm), copy));
        ProgressSends();
    }

    public void Recv(Tensor tensor, int peer)
    {
        string what = $"Recv from rank {peer} of group {GroupName} on world rank {WorldRank}";
        BeginOperation();
        CheckPeer(peer, what);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var expected = MessageHeader(tensor);
        var header = torch.zeros(expected.Length, ScalarType.Int64);
        var req = MpiNative.Irecv(Data(header), expected.Length * 8, peer, SendHeaderTag, _comm);
        Wait(ref req, what, () => $"a message from {Who(peer)}");
        var got = header.data<long>().ToArray();
        if (!got.SequenceEqual(expected))
            throw new CommunicatorMismatchException($"{what}: the message is {DescribeHeader(got)}, the receiving tensor {DescribeHeader(expected)}");
        var buf = torch.empty(tensor.numel(), tensor.dtype);
        req = MpiNative.Irecv(Data(buf), Bytes(buf.numel(), buf, what), peer, SendDataTag, _comm);
        Wait(ref req, what, () => $"the data from {Who(peer)}");
        tensor.copy_(buf.view(tensor.shape));
    }

    // ------------------------------------------------------------------ machinery

    /// <summary>
    /// Every member sends its header to every other member and receives theirs (this is the collective's barrier and
    /// its argument check); returns the operation's name for messages. Fields: 0 collective number, 1 operation,
    /// 2-4 dtype/numel/shape hash of the first tensor, 5-7 of the second, 8 reduce op or root — all must agree —
    /// then 9 color, 10 key, 11 world rank.
    /// </summary>
    string Agree(Op op, Tensor? a, Tensor? b, int param, int color = 0, int key = 0, long[]? all = null)
    {
        BeginOperation();
        long n = ++_ops;
        string what = $"{op} (collective #{n} of group {GroupName}) on world rank {WorldRank}";
        var mine = Header(n, op, a, b, param, color, key, WorldRank);
        all ??= new long[Size * H];
        var pinned = GC.AllocateArray<long>(Size * H, pinned: true);
        mine.CopyTo(pinned, Rank * H);
        var requests = new IntPtr[2 * Size];
        fixed (long* p = pinned)
        {
            for (int r = 0; r < Size; r++)
            {
                if (r == Rank) continue;
                requests[2 * r] = MpiNative.Irecv(p + r * H, H * 8, r, HeaderTag, _comm);
                requests[2 * r + 1] = MpiNative.Isend(p + Rank * H, H * 8, r, HeaderTag, _comm);
            }
            WaitAll(requests, what, pending =>
            {
                var missing = Enumerable.Range(0, Size).Where(r => pending[2 * r] != IntPtr.Zero).Select(Who).ToArray();
                return missing.Length == 0 ? "its header sends to the other members" : $"{string.Join(", ", missing)} to join (it hangs, died, or called another operation)";
            });
        }
        pinned.CopyTo(all, 0);
        CheckHeaders(all, Size, Who, what);
        return what;
    }

    /// <summary>A member's collective header (<see cref="H"/> fields, see <see cref="Agree"/>); shared with <see cref="HybridCommunicator"/>.</summary>
    internal static long[] Header(long n, Op op, Tensor? a, Tensor? b, int param, int color, int key, int worldRank)
    {
        var mine = new long[H];
        mine[0] = n; mine[1] = (long)op;
        Describe(a, mine, 2); Describe(b, mine, 5);
        mine[8] = param; mine[9] = color; mine[10] = key; mine[11] = worldRank;
        return mine;
    }

    /// <summary>Throws <see cref="CommunicatorMismatchException"/> when the members' headers (<paramref name="all"/>, member r
    /// at r·<see cref="H"/>) disagree in fields 0-8, naming each member that differs from member 0.</summary>
    internal static void CheckHeaders(long[] all, int size, Func<int, string> who, string what)
    {
        for (int field = 0; field <= 8; field++)
        {
            var odd = Enumerable.Range(0, size).Where(r => all[r * H + field] != all[field]).ToArray();
            if (odd.Length == 0) continue;
            string Show(int r) => $"{who(r)}: {(Op)all[r * H + 1]} #{all[r * H]} {DescribeFields(all, r * H + 2)} / {DescribeFields(all, r * H + 5)} param {all[r * H + 8]}";
            throw new CommunicatorMismatchException($"{what}: members passed different arguments (every member must call the same collective in the same order, with matching tensors): " +
                string.Join("; ", new[] { 0 }.Concat(odd).Distinct().Select(Show)));
        }
    }

    static void Describe(Tensor? t, long[] into, int at)
    {
        if (t is null) return;
        into[at] = (long)t.dtype;
        into[at + 1] = t.numel();
        long h = unchecked((long)14695981039346656037UL);
        foreach (var d in t.shape) h = unchecked((h ^ d) * 1099511628211L);
        into[at + 2] = h ^ t.shape.Length;
    }

    static string DescribeFields(long[] a, int at) => a[at + 1] == 0 && a[at] == 0 ? "-" : $"{(ScalarType)a[at]} x {a[at + 1]}";

    internal static long[] MessageHeader(Tensor t)
    {
        var h = new long[10];
        h[0] = (long)t.dtype;
        h[1] = t.shape.Length;
        for (int i = 0; i < Math.Min(t.shape.Length, 8); i++) h[2 + i] = t.shape[i];
        return h;
    }

    internal static string DescribeHeader(long[] h) => $"[{string.Join(", ", h.Skip(2).Take((int)Math.Min(h[1], 8)))}] {(ScalarType)h[0]}";

    /// <summary>Elements of chunk j when <paramref name="n"/> elements are split over the members (the first n % Size get one more).</summary>
    long[] ChunkCounts(long n) => ChunkCounts(n, Size);
    internal static long[] ChunkCounts(long n, int size) => Enumerable.Range(0, size).Select(j => n / size + (j < n % size ? 1 : 0)).ToArray();

    /// <summary>MPI_Ialltoallv: member j gets chunk j of <paramref name="src"/>; returns Size × <paramref name="m"/> elements,
    /// row j = member j's chunk <see cref="Rank"/>.</summary>
    Tensor ExchangeChunks(Tensor src, long[] counts, long m, string what)
    {
        int es = (int)src.ElementSize;
        var recv = torch.empty(Size * m, src.dtype);
        Bytes(src.numel(), src, what); Bytes(recv.numel(), recv, what);
        var sendCounts = new int[Size]; var sendDispls = new int[Size];
        var recvCounts = new int[Size]; var recvDispls = new int[Size];
        long offset = 0;
        for (int j = 0; j < Size; j++)
        {
            sendCounts[j] = (int)(counts[j] * es); sendDispls[j] = (int)(offset * es); offset += counts[j];
            recvCounts[j] = (int)(m * es); recvDispls[j] = (int)(j * m * es);
        }
        fixed (int* sc = sendCounts, sd = sendDispls, rc = recvCounts, rd = recvDispls)
        {
            var req = MpiNative.Ialltoallv(Data(src), sc, sd, Data(recv), rc, rd, _comm);
            Wait(ref req, what, () => "the chunk exchange");
        }
        return recv;
    }

    /// <summary>MPI_Iallgatherv: <paramref name="result"/> receives member j's <paramref name="mine"/> (counts[j] elements) in rank order.</summary>
    void GatherChunks(Tensor mine, Tensor result, long[] counts, string what)
    {
        int es = (int)result.ElementSize;
        Bytes(result.numel(), result, what);
        var recvCounts = new int[Size]; var displs = new int[Size];
        long offset = 0;
        for (int j = 0; j < Size; j++) { recvCounts[j] = (int)(counts[j] * es); displs[j] = (int)(offset * es); offset += counts[j]; }
        var m = mine.contiguous();
        fixed (int* rc = recvCounts, d = displs)
        {
            var req = MpiNative.Iallgatherv(Data(m), (int)(counts[Rank] * es), Data(result), rc, d, _comm);
            Wait(ref req, what, () => "the gather");
        }
    }

    Tensor[] Rows(Tensor parts, long m)
    {
        var rows = parts.view(Size, m);
        return Enumerable.Range(0, Size).Select(j => rows[j]).ToArray();
    }

    /// <summary>The tensor itself when it is a contiguous CPU tensor, else a contiguous copy; CUDA tensors are refused.</summary>
    internal static Tensor HostContiguous(Tensor t, string what)
    {
        if (t.device_type != DeviceType.CPU)
            throw new CommunicatorException($"{what}: the MPI backend exchanges CPU tensors, this one is on {t.device} (CUDA ranks use the NCCL backend)");
        return t.is_contiguous() ? t : t.contiguous();
    }

    /// <summary>MPI counts are 32-bit: a buffer of more than 2 GiB is refused with a message.</summary>
    internal static int Bytes(long numel, Tensor t, string what)
    {
        long bytes = numel * t.ElementSize;
        if (bytes > int.MaxValue) throw new CommunicatorException($"{what}: {bytes} bytes in one MPI message, more than the 2 GiB this backend sends at once");
        return (int)bytes;
    }

    [DllImport("LibTorchSharp")] internal static extern IntPtr THSTensor_data(IntPtr handle);

    /// <summary>The address of the tensor's first element (data_ptr, storage offset included).</summary>
    internal static void* Data(Tensor t) => (void*)THSTensor_data(t.Handle);

    void Wait(ref IntPtr request, string what, Func<string> waitingFor)
    {
        var one = new[] { request };
        WaitAll(one, what, _ => waitingFor());
        request = one[0];
    }

    /// <summary>Polls every non-null request with MPI_Test until all complete (completed ones become null); past the
    /// timeout throws <see cref="CommunicatorTimeoutException"/> naming what is still missing.</summary>
    void WaitAll(IntPtr[] requests, string what, Func<IntPtr[], string> missing)
    {
        var clock = Stopwatch.StartNew();
        for (int spin = 0; ; spin++)
        {
            bool done = true;
            for (int i = 0; i < requests.Length; i++)
                if (requests[i] != IntPtr.Zero && !MpiNative.Test(ref requests[i])) done = false;   // MPI_Test sets MPI_REQUEST_NULL (0) when complete
                else requests[i] = IntPtr.Zero;
            if (done) return;
            if (clock.Elapsed > _timeout)
                throw new CommunicatorTimeoutException($"{what}: timed out after {_timeout.TotalSeconds:0.###} s waiting for {missing(requests)}");
            // Spin briefly (low latency), then sleep: ranks may share few cores (mpirun --oversubscribe).
            if (spin < 200) Thread.Yield(); else Thread.Sleep(1);
        }
    }

    void ProgressSends()
    {
        for (int i = _pendingSends.Count - 1; i >= 0; i--)
        {
            var (req, buf) = _pendingSends[i];
            if (MpiNative.Test(ref req)) { buf.Dispose(); _pendingSends.RemoveAt(i); }
            else _pendingSends[i] = (req, buf);
        }
    }

    void BeginOperation()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ProgressSends();
    }

    void CheckReducible(ScalarType t, ReduceOp op, string what)
    {
        if (Reduction.Unsupported(t, op) is { } why) throw new CommunicatorMismatchException($"{what}: {why}");
    }

    void CheckSizes(string what, Tensor big, Tensor small, string bigName, string smallName) => CheckSizes(what, big, small, bigName, smallName, Size);

    internal static void CheckSizes(string what, Tensor big, Tensor small, string bigName, string smallName, int size)
    {
        if (big.dtype != small.dtype) throw new CommunicatorMismatchException($"{what}: {bigName} is {big.dtype} but {smallName} is {small.dtype}");
        if (big.numel() != size * small.numel())
            throw new CommunicatorMismatchException($"{what}: {bigName} must hold {size} x {smallName}'s {small.numel()} elements ({size * small.numel()}), it holds {big.numel()}");
    }

    void CheckPeer(int peer, string what)
    {
        if (peer < 0 || peer >= Size) throw new ArgumentOutOfRangeException(nameof(peer), peer, $"{what}: not a rank of this group of {Size}");
    }

    /// <summary>Waits (up to the timeout) for buffered sends to be delivered, then frees a split communicator.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (MpiNative.Finalized()) return;
        if (_pendingSends.Count > 0)
        {
            var reqs = _pendingSends.Select(p => p.Request).ToArray();
            try { WaitAll(reqs, $"delivering {reqs.Length / 2} sent message(s) of group {GroupName} from world rank {WorldRank}", _ => "the receivers"); }
            finally { foreach (var p in _pendingSends) p.Buffer.Dispose(); _pendingSends.Clear(); }
        }
        if (_ownsComm) MpiNative.CommFree(_comm);
    }
}
