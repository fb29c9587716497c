using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Trainer.Parallel.Mpi;

/// <summary>
/// Threads × processes (InfiniTrain's PROC_WORLD_SIZE): <c>mpirun -np P</c> with <c>--nthread_per_process=T</c> gives a world
/// of P·T ranks, world rank = process·T + thread (so the layout's TP-DP-PP order puts a TP group, the fastest-varying
/// coordinate, inside one process when TP ≤ T). Every member of a group is a rank thread; a message between two members
/// is a queue hand-over when both live in this process and an MPI message otherwise (<see cref="MpiPostOffice"/>).
/// <para>The collectives are written on those messages exactly as <see cref="MpiCommunicator"/>'s: an AllReduce sends
/// chunk j of the tensor to member j, member j combines every member's chunk with <see cref="Reduction.Combine"/> in rank
/// order and sends the result back to all — so the results are bit-identical to <see cref="ThreadCommunicator"/>'s and to
/// the one-rank-per-process backend's. Before each collective the members exchange <see cref="MpiCommunicator"/>'s header
/// (argument check, mismatches throw on every member); every wait has the timeout and names the member it waits for.</para>
/// <para>A group is identified across processes by its split path (<c>world/2:5</c> = the world's third split, color 5),
/// hashed into the message envelope; each process checks that no two of its groups share a hash.</para>
/// </summary>
public sealed class HybridCommunicator : IAbortableCommunicator
{
    enum Kind { Header, Chunk, Reduced, Gather, Broadcast, Message }

    readonly MpiPostOffice _po;
    readonly long _group;
    readonly string _path;
    readonly int[] _worldRanks;
    readonly bool _holdsOffice;
    long _ops;
    int _splits;
    bool _disposed;

    HybridCommunicator(MpiPostOffice po, string path, int[] worldRanks, int worldRank, bool holdsOffice)
    {
        _po = po; _path = path; _worldRanks = worldRanks; _holdsOffice = holdsOffice;
        _group = po.Register(path);
        Rank = Array.IndexOf(worldRanks, worldRank);
        if (Rank < 0) throw new CommunicatorException($"world rank {worldRank} is not a member of group {path}");
    }

    /// <summary>This process's <paramref name="threadsPerProcess"/> members of the world of (processes × threads) ranks,
    /// element t for world rank process·T + t. Initializes MPI (MPI_THREAD_MULTIPLE).</summary>
    public static IReadOnlyList<ICommunicator> CreateWorld(int threadsPerProcess, TimeSpan timeout)
    {
        MpiRuntime.Init();
        var po = new MpiPostOffice(threadsPerProcess, timeout, users: threadsPerProcess);
        var ranks = Enumerable.Range(0, po.Processes * threadsPerProcess).ToArray();
        return Enumerable.Range(0, threadsPerProcess)
            .Select(t => (ICommunicator)new HybridCommunicator(po, "world", ranks, po.Process * threadsPerProcess + t, holdsOffice: true)).ToArray();
    }

    public int Rank { get; }
    public int Size => _worldRanks.Length;
    public IReadOnlyList<int> WorldRanks => _worldRanks;
    int WorldRank => _worldRanks[Rank];
    string GroupName => $"[{string.Join(",", _worldRanks)}]";
    string Who(int r) => $"rank {r} (world rank {_worldRanks[r]}, process {_po.ProcessOf(_worldRanks[r])})";

    /// <summary>Makes every pending and later operation of this process's ranks throw <see cref="CommunicatorAbortedException"/>
    /// (a rank thread failed; the trainer then ends the job with MPI_Abort).</summary>
    public void Abort(Exception cause) => _po.Abort(WorldRank, cause);

    // ------------------------------------------------------------------ collectives

    public void AllReduce(Tensor tensor, ReduceOp op)
    {
        string what = Agree(MpiCommunicator.Op.AllReduce, tensor, null, (int)op);
        CheckReducible(tensor.dtype, op, what);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var src = MpiCommunicator.HostContiguous(tensor, what).reshape(-1);
        var counts = MpiCommunicator.ChunkCounts(src.numel(), Size);
        var starts = new long[Size];
        for (int j = 1; j < Size; j++) starts[j] = starts[j - 1] + counts[j - 1];
        var mine = ReduceChunks(j => src.narrow(0, starts[j], counts[j]), op, tensor.dtype, what, scope);
        for (int j = 0; j < Size; j++) if (j != Rank) Put(Kind.Reduced, j, mine);
        var pieces = Enumerable.Range(0, Size).Select(j => j == Rank ? mine : Take(Kind.Reduced, j, what, "its reduced chunk", scope)).ToArray();
        tensor.copy_(torch.cat(pieces, 0).view(tensor.shape));
    }

    public void ReduceScatter(Tensor output, Tensor input, ReduceOp op)
    {
        string what = Agree(MpiCommunicator.Op.ReduceScatter, input, output, (int)op);
        CheckReducible(input.dtype, op, what);
        MpiCommunicator.CheckSizes(what, input, output, "input", "output", Size);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var src = MpiCommunicator.HostContiguous(input, what).reshape(-1);
        long m = output.numel();
        output.copy_(ReduceChunks(j => src.narrow(0, j * m, m), op, output.dtype, what, scope).view(output.shape));
    }

    /// <summary>Sends chunk j to member j, and combines every member's chunk <see cref="Rank"/> in rank order.</summary>
    Tensor ReduceChunks(Func<int, Tensor> chunk, ReduceOp op, ScalarType dtype, string what, DisposeScope scope)
    {
        for (int j = 0; j < Size; j++) if (j != Rank) Put(Kind.Chunk, j, chunk(j));
        var parts = Enumerable.Range(0, Size).Select(j => j == Rank ? chunk(j) : Take(Kind.Chunk, j, what, "its chunk", scope)).ToArray();
        return Reduction.Combine(parts, op, dtype, CPU);
    }

    public void AllGather(Tensor output, Tensor input)
    {
        string what = Agree(MpiCommunicator.Op.AllGather, input, output, 0);
        MpiCommunicator.CheckSizes(what, output, input, "output", "input", Size);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var src = MpiCommunicator.HostContiguous(input, what).reshape(-1);
        for (int j = 0; j < Size; j++) if (j != Rank) Put(Kind.Gather, j, src);
        var pieces = Enumerable.Range(0, Size).Select(j => j == Rank ? src : Take(Kind.Gather, j, what, "its part", scope)).ToArray();
        output.copy_(torch.cat(pieces, 0).view(output.shape));
    }

    public void Broadcast(Tensor tensor, int root)
    {
        string what = Agree(MpiCommunicator.Op.Broadcast, tensor, null, root);
        if (root < 0 || root >= Size) throw new CommunicatorMismatchException($"{what}: root {root} is not a rank of this group of {Size}");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        if (Rank == root)
        {
            var src = MpiCommunicator.HostContiguous(tensor, what);
            for (int j = 0; j < Size; j++) if (j != Rank) Put(Kind.Broadcast, j, src);
        }
        else tensor.copy_(Take(Kind.Broadcast, root, what, "the broadcast", scope).view(tensor.shape));
    }

    public void Barrier() => Agree(MpiCommunicator.Op.Barrier, null, null, 0);

    public ICommunicator Split(int color, int key)
    {
        var headers = new long[Size * MpiCommunicator.H];
        string what = Agree(MpiCommunicator.Op.Split, null, null, 0, color, key, headers);
        int H = MpiCommunicator.H;
        var members = Enumerable.Range(0, Size).Where(r => headers[r * H + 9] == color)
            .OrderBy(r => headers[r * H + 10]).ThenBy(r => r).Select(r => _worldRanks[r]).ToArray();
        return new HybridCommunicator(_po, $"{_path}/{_splits++}:{color}", members, WorldRank, holdsOffice: false);
    }

    // ------------------------------------------------------------------ point to point

    public void Send(Tensor tensor, int peer)
    {
        string what = $"Send to rank {peer} of group {GroupName} on world rank {WorldRank}";
        BeginOperation();
        CheckPeer(peer, what);
        Put(Kind.Message, peer, MpiCommunicator.HostContiguous(tensor, what));
    }

    public void Recv(Tensor tensor, int peer)
    {
        string what = $"Recv from rank {peer} of group {GroupName} on world rank {WorldRank}";
        BeginOperation();
        CheckPeer(peer, what);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var got = Take(Kind.Message, peer, what, "a message", scope);
        if (got.dtype != tensor.dtype || !got.shape.SequenceEqual(tensor.shape))
            throw new CommunicatorMismatchException($"{what}: the message is {MpiCommunicator.DescribeHeader(MpiCommunicator.MessageHeader(got))}, " +
                $"the receiving tensor {MpiCommunicator.DescribeHeader(MpiCommunicator.MessageHeader(tensor))}");
        tensor.copy_(got);
    }

    // ------------------------------------------------------------------ machinery

    void Put(Kind kind, int to, Tensor t) => _po.Post(_group, WorldRank, _worldRanks[to], (int)kind, t);

    /// <summary>The next message of <paramref name="kind"/> from member <paramref name="from"/>, owned by <paramref name="scope"/>.</summary>
    Tensor Take(Kind kind, int from, string what, string item, DisposeScope scope)
    {
        var t = _po.Take(_group, _worldRanks[from], WorldRank, (int)kind, what, () => $"{item} from {Who(from)}");
        scope.Attach(t);
        return t;
    }

    /// <summary>The members exchange <see cref="MpiCommunicator"/>'s collective header (the argument check and the barrier).</summary>
    string Agree(MpiCommunicator.Op op, Tensor? a, Tensor? b, int param, int color = 0, int key = 0, long[]? all = null)
    {
        BeginOperation();
        long n = ++_ops;
        string what = $"{op} (collective #{n} of group {GroupName}) on world rank {WorldRank}";
        int H = MpiCommunicator.H;
        var mine = MpiCommunicator.Header(n, op, a, b, param, color, key, WorldRank);
        all ??= new long[Size * H];
        mine.CopyTo(all, Rank * H);
        using var scope = torch.NewDisposeScope();
        var header = torch.tensor(mine);
        for (int r = 0; r < Size; r++) if (r != Rank) Put(Kind.Header, r, header);
        for (int r = 0; r < Size; r++)
            if (r != Rank) Take(Kind.Header, r, what, "the header (it hangs, died, or called another operation)", scope).data<long>().CopyTo(all, r * H);
        MpiCommunicator.CheckHeaders(all, Size, Who, what);
        return what;
    }

    static void CheckReducible(ScalarType t, ReduceOp op, string what)
    {
        if (Reduction.Unsupported(t, op) is { } why) throw new CommunicatorMismatchException($"{what}: {why}");
    }

    void CheckPeer(int peer, string what)
    {
        if (peer < 0 || peer >= Size) throw new ArgumentOutOfRangeException(nameof(peer), peer, $"{what}: not a rank of this group of {Size}");
    }

    void BeginOperation() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>A world member releases this process's post office; the last one waits (up to the timeout) for its
    /// messages to be delivered and frees it. Split groups hold nothing.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_holdsOffice) _po.Release();
    }
}

/// <summary>
/// One per process: delivers <see cref="HybridCommunicator"/> messages. A message to a rank thread of this process is a
/// detached copy put in the receiver's mailbox; one to another process is packed (an envelope of group, source, destination,
/// kind, dtype and shape, then the bytes) and sent with MPI_Isend on a private duplicate of MPI_COMM_WORLD. A postman thread
/// receives every incoming message (MPI_Iprobe + MPI_Recv) into the mailboxes and completes the sends, so the rank threads
/// never wait inside MPI; messages between two ranks of one group and kind arrive in the order sent (MPI's non-overtaking
/// rule for one source process, and one queue per mailbox).
/// </summary>
sealed unsafe class MpiPostOffice
{
    const int Tag = 7101, E = 14;   // envelope: group, src, dst, kind, dtype, ndim, 8 dims

    readonly IntPtr _comm;
    readonly int _threads;
    readonly TimeSpan _timeout;
    readonly object _lock = new();
    readonly Dictionary<(long Group, int Src, int Dst, int Kind), Queue<Tensor>> _boxes = new();
    readonly Dictionary<long, string> _groups = new();
    readonly ConcurrentQueue<(IntPtr Request, byte[] Buffer)> _outgoing = new();
    readonly Thread _postman;
    (int Rank, Exception Cause)? _abort;
    volatile bool _closing;
    int _users;

    public MpiPostOffice(int threads, TimeSpan timeout, int users)
    {
        _threads = threads; _timeout = timeout; _users = users;
        _comm = MpiNative.CommDup(MpiNative.CommWorld);
        Process = MpiNative.CommRank(_comm);
        Processes = MpiNative.CommSize(_comm);
        _postman = new Thread(Deliver) { IsBackground = true, Name = "mpi-postman" };
        _postman.Start();
    }

    public int Process { get; }
    public int Processes { get; }
    public int ProcessOf(int worldRank) => worldRank / _threads;

    /// <summary>The group's id (a hash of its split path); a second path with the same hash is refused.</summary>
    public long Register(string path)
    {
        long h = unchecked((long)14695981039346656037UL);
        foreach (byte b in Encoding.UTF8.GetBytes(path)) h = unchecked((h ^ b) * 1099511628211L);
        lock (_lock)
        {
            if (_groups.TryGetValue(h, out var other) && other != path)
                throw new CommunicatorException($"groups {other} and {path} have the same id {h:x16}; split them with other colors");
            _groups[h] = path;
        }
        return h;
    }

    public void Post(long group, int src, int dst, int kind, Tensor t)
    {
        if (ProcessOf(dst) == Process)
        {
            Tensor copy;
            using (torch.no_grad()) copy = t.detach().clone().DetachFromDisposeScope();
            Deposit((group, src, dst, kind), copy);
            return;
        }
        string what = $"a message from world rank {src} to world rank {dst}";
        long bytes = MpiCommunicator.Bytes(t.numel(), t, what);
        var c = t.is_contiguous() ? t : t.contiguous();
        var buf = GC.AllocateArray<byte>(E * 8 + (int)bytes, pinned: true);
        fixed (byte* p = buf)
        {
            var env = (long*)p;
            env[0] = group; env[1] = src; env[2] = dst; env[3] = kind; env[4] = (long)t.dtype; env[5] = t.shape.Length;
            if (t.shape.Length > 8) throw new CommunicatorException($"{what}: tensors of more than 8 dimensions are not sent");
            for (int i = 0; i < t.shape.Length; i++) env[6 + i] = t.shape[i];
            Buffer.MemoryCopy(MpiCommunicator.Data(c), p + E * 8, bytes, bytes);
            _outgoing.Enqueue((MpiNative.Isend(p, buf.Length, ProcessOf(dst), Tag, _comm), buf));
        }
        if (!ReferenceEquals(c, t)) c.Dispose();
    }

    void Deposit((long, int, int, int) key, Tensor t)
    {
        lock (_lock)
        {
            if (!_boxes.TryGetValue(key, out var q)) _boxes[key] = q = new Queue<Tensor>();
            q.Enqueue(t);
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Waits (up to the timeout) for the next message of the mailbox; throws when this process's ranks were aborted.</summary>
    public Tensor Take(long group, int src, int dst, int kind, string what, Func<string> waitingFor)
    {
        var clock = Stopwatch.StartNew();
        lock (_lock)
        {
            while (true)
            {
                if (_abort is { } a) throw new CommunicatorAbortedException(what, dst, a.Rank, a.Cause);
                if (_boxes.TryGetValue((group, src, dst, kind), out var q) && q.Count > 0) return q.Dequeue();
                var left = _timeout - clock.Elapsed;
                if (left <= TimeSpan.Zero)
                    throw new CommunicatorTimeoutException($"{what}: timed out after {_timeout.TotalSeconds:0.###} s waiting for {waitingFor()}");
                Monitor.Wait(_lock, left);
            }
        }
    }

    public void Abort(int worldRank, Exception cause)
    {
        lock (_lock)
        {
            _abort ??= (worldRank, cause);
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>The postman: receives into the mailboxes and completes sends until closed and every send is delivered.</summary>
    void Deliver()
    {
        var inFlight = new List<(IntPtr Request, byte[] Buffer)>();
        try
        {
            for (int idle = 0; ; idle++)
            {
                while (MpiNative.Iprobe(MpiNative.AnySource, Tag, _comm) is { } m)
                {
                    Receive(m.Source, m.Bytes);
                    idle = 0;
                }
                while (_outgoing.TryDequeue(out var o)) inFlight.Add(o);
                for (int i = inFlight.Count - 1; i >= 0; i--)
                {
                    var (req, _) = inFlight[i];
                    if (MpiNative.Test(ref req)) inFlight.RemoveAt(i);
                }
                if (_closing && inFlight.Count == 0 && _outgoing.IsEmpty) return;
                // Spin briefly while messages flow, then sleep: ranks of several processes may share few cores.
                if (idle < 100) Thread.Yield(); else Thread.Sleep(1);
            }
        }
        catch (Exception e) { Abort(Process * _threads, new CommunicatorException($"the MPI postman of process {Process} failed: {e.Message}", e)); }
    }

    void Receive(int source, int bytes)
    {
        var buf = GC.AllocateArray<byte>(bytes, pinned: true);
        fixed (byte* p = buf)
        {
            MpiNative.Recv(p, bytes, source, Tag, _comm);
            var env = (long*)p;
            var shape = new long[env[5]];
            for (int i = 0; i < shape.Length; i++) shape[i] = env[6 + i];
            var t = torch.empty(shape, (ScalarType)env[4]);
            long n = bytes - E * 8;
            if (n != t.numel() * t.ElementSize) throw new CommunicatorException($"a message from process {source} holds {n} bytes, its envelope says [{string.Join(", ", shape)}] {t.dtype}");
            Buffer.MemoryCopy(p + E * 8, MpiCommunicator.Data(t), n, n);
            Deposit((env[0], (int)env[1], (int)env[2], (int)env[3]), t);
        }
    }

    /// <summary>Called once per world member: the last one waits for the sends to complete, stops the postman and frees the
    /// communicator (unless the ranks were aborted: then the job is about to end with MPI_Abort).</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _users) > 0) return;
        _closing = true;
        // After a failure the job ends with MPI_Abort: messages to peers that may be gone are not waited for.
        lock (_lock) if (_abort is not null) return;
        if (!_postman.Join(_timeout))
            throw new CommunicatorTimeoutException($"process {Process}: its messages were not delivered within {_timeout.TotalSeconds:0.###} s");
        lock (_lock)
        {
            foreach (var q in _boxes.Values) while (q.Count > 0) q.Dequeue().Dispose();
        }
        if (!MpiNative.Finalized()) MpiNative.CommFree(_comm);
    }
}
