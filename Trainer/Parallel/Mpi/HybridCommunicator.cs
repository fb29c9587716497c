using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.ExceptionServices;
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
/// order and sends the result back to all (up to <see cref="OneRoundBytes"/>: every member gets and combines the whole
/// tensors) — so the results are bit-identical to <see cref="ThreadCommunicator"/>'s and to the one-rank-per-process
/// backend's. Each collective's first message from one member to another carries <see cref="MpiCommunicator"/>'s header
/// (the argument check, <see cref="Exchange"/>: mismatches throw on every member); every wait has the timeout and names
/// the member it waits for.</para>
/// <para>A group is identified across processes by its split path (<c>world/2:5</c> = the world's third split, color 5),
/// hashed into the message envelope; each process checks that no two of its groups share a hash.</para>
/// </summary>
public sealed class HybridCommunicator : IAbortableCommunicator
{
    /// <summary>First: a collective's opening message from one member to another (its header, and its data when the
    /// collective has a first round); Reduced: an AllReduce's reduced chunk; Message: Send/Recv.</summary>
    enum Kind { First, Reduced, Message }

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

    /// <summary>Tensors up to this size are all-reduced in one round: every member sends its whole tensor to every other
    /// and combines them all (the same elementwise rank-ordered rule, so the same bits), which halves the waits of the
    /// small, latency-bound reductions; larger ones are reduce-scattered and gathered, moving 2 (n-1)/n of the tensor.</summary>
    internal const long OneRoundBytes = 256 << 10;

    public void AllReduce(Tensor tensor, ReduceOp op)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        bool oneRound = tensor.numel() * tensor.ElementSize <= OneRoundBytes;   // the same on every member whose header agrees
        Tensor src = null!;
        long[] counts = [], starts = [];
        Tensor Chunk(int j) => oneRound ? src : src.narrow(0, starts[j], counts[j]);
        // Two rounds hand their tensors over without a copy inside this process: a member overwrites its tensor only
        // after every member has sent its reduced chunk, i.e. has finished reading the chunks it was sent, and `mine`
        // is a new tensor that nobody writes. One round has no such point, so its tensors are copied.
        var (what, got, _) = Exchange(MpiCommunicator.Op.AllReduce, tensor, null, (int)op, scope, share: !oneRound, prepare: what =>
        {
            CheckReducible(tensor.dtype, op, what);
            src = MpiCommunicator.HostContiguous(tensor, what).reshape(-1);
            counts = MpiCommunicator.ChunkCounts(src.numel(), Size);
            starts = new long[Size];
            for (int j = 1; j < Size; j++) starts[j] = starts[j - 1] + counts[j - 1];
            return Chunk;
        });
        var mine = Reduction.Combine(Enumerable.Range(0, Size).Select(j => j == Rank ? Chunk(j) : Body(got, j, what)).ToArray(), op, tensor.dtype, CPU);
        if (oneRound)
        {
            tensor.copy_(mine.view(tensor.shape));
            return;
        }
        for (int j = 0; j < Size; j++) if (j != Rank) Put(Kind.Reduced, j, null, mine, share: true);
        var pieces = Enumerable.Range(0, Size).Select(j => j == Rank ? mine : Take(Kind.Reduced, j, what, "its reduced chunk", scope).Body!).ToArray();
        tensor.copy_(torch.cat(pieces, 0).view(tensor.shape));
    }

    public void ReduceScatter(Tensor output, Tensor input, ReduceOp op)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        Tensor src = null!;
        long m = output.numel();
        Tensor Chunk(int j) => src.narrow(0, j * m, m);
        var (what, got, _) = Exchange(MpiCommunicator.Op.ReduceScatter, input, output, (int)op, scope, prepare: what =>
        {
            CheckReducible(input.dtype, op, what);
            MpiCommunicator.CheckSizes(what, input, output, "input", "output", Size);
            src = MpiCommunicator.HostContiguous(input, what).reshape(-1);
            return Chunk;
        });
        var parts = Enumerable.Range(0, Size).Select(j => j == Rank ? Chunk(j) : Body(got, j, what)).ToArray();
        output.copy_(Reduction.Combine(parts, op, output.dtype, CPU).view(output.shape));
    }

    public void AllGather(Tensor output, Tensor input)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        Tensor src = null!;
        var (what, got, _) = Exchange(MpiCommunicator.Op.AllGather, input, output, 0, scope, prepare: what =>
        {
            MpiCommunicator.CheckSizes(what, output, input, "output", "input", Size);
            src = MpiCommunicator.HostContiguous(input, what).reshape(-1);
            return _ => src;
        });
        var pieces = Enumerable.Range(0, Size).Select(j => j == Rank ? src : Body(got, j, what)).ToArray();
        output.copy_(torch.cat(pieces, 0).view(output.shape));
    }

    public void Broadcast(Tensor tensor, int root)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var (what, got, _) = Exchange(MpiCommunicator.Op.Broadcast, tensor, null, root, scope, prepare: what =>
        {
            if (root < 0 || root >= Size) throw new CommunicatorMismatchException($"{what}: root {root} is not a rank of this group of {Size}");
            if (Rank != root) return null;
            var src = MpiCommunicator.HostContiguous(tensor, what);
            return _ => src;
        });
        if (Rank != root) tensor.copy_(Body(got, root, what).view(tensor.shape));
    }

    public void Barrier()
    {
        using var scope = torch.NewDisposeScope();
        Exchange(MpiCommunicator.Op.Barrier, null, null, 0, scope);
    }

    public ICommunicator Split(int color, int key)
    {
        using var scope = torch.NewDisposeScope();
        var (_, _, headers) = Exchange(MpiCommunicator.Op.Split, null, null, 0, scope, color: color, key: key);
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
        Put(Kind.Message, peer, null, MpiCommunicator.HostContiguous(tensor, what));
    }

    public void Recv(Tensor tensor, int peer)
    {
        string what = $"Recv from rank {peer} of group {GroupName} on world rank {WorldRank}";
        BeginOperation();
        CheckPeer(peer, what);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var got = Take(Kind.Message, peer, what, "a message", scope).Body!;
        if (got.dtype != tensor.dtype || !got.shape.SequenceEqual(tensor.shape))
            throw new CommunicatorMismatchException($"{what}: the message is {MpiCommunicator.DescribeHeader(MpiCommunicator.MessageHeader(got))}, " +
                $"the receiving tensor {MpiCommunicator.DescribeHeader(MpiCommunicator.MessageHeader(tensor))}");
        tensor.copy_(got);
    }

    // ------------------------------------------------------------------ machinery

    /// <summary>Sends <paramref name="body"/> to member <paramref name="to"/>: a detached copy, or with <paramref name="share"/>
    /// (in this process only) the tensor's storage itself, when the caller guarantees nobody writes it until the receiver is done.</summary>
    void Put(Kind kind, int to, long[]? header, Tensor? body, bool share = false) =>
        _po.Post(_group, WorldRank, _worldRanks[to], (int)kind, new Letter(header, body), share);

    /// <summary>The next message of <paramref name="kind"/> from member <paramref name="from"/>; its tensor is owned by <paramref name="scope"/>.</summary>
    Letter Take(Kind kind, int from, string what, string item, DisposeScope scope)
    {
        var l = _po.Take(_group, _worldRanks[from], WorldRank, (int)kind, what, () => $"{item} from {Who(from)}");
        if (l.Body is { } b) scope.Attach(b);
        return l;
    }

    /// <summary>
    /// Opens a collective in one round: every member sends every other member its <see cref="MpiCommunicator"/> header
    /// (the argument check; with the receipt of every member's header, also the barrier) together with the data that
    /// member needs first — <paramref name="prepare"/> checks this member's arguments and returns the tensor for member j
    /// (or null for a header alone). The headers are checked on receipt, so a mismatch throws on every member before
    /// any data is used; a member whose own arguments were refused still sends its header (then throws), so its peers
    /// report the mismatch or its missing data instead of waiting. Returns the operation's name for messages, the data
    /// received from each member, and all headers (member r at r·H).
    /// </summary>
    (string What, Tensor?[] Got, long[] Headers) Exchange(MpiCommunicator.Op op, Tensor? a, Tensor? b, int param, DisposeScope scope,
        Func<string, Func<int, Tensor>?>? prepare = null, bool share = false, int color = 0, int key = 0)
    {
        BeginOperation();
        long n = ++_ops;
        string what = $"{op} (collective #{n} of group {GroupName}) on world rank {WorldRank}";
        int H = MpiCommunicator.H;
        var mine = MpiCommunicator.Header(n, op, a, b, param, color, key, WorldRank);
        var bodies = new Tensor?[Size];
        ExceptionDispatchInfo? refused = null;
        try
        {
            if (prepare?.Invoke(what) is { } data)
                for (int r = 0; r < Size; r++) if (r != Rank) bodies[r] = data(r);
        }
        catch (Exception e) { refused = ExceptionDispatchInfo.Capture(e); Array.Clear(bodies); }
        for (int r = 0; r < Size; r++) if (r != Rank) Put(Kind.First, r, mine, bodies[r], share);
        var all = new long[Size * H];
        var got = new Tensor?[Size];
        mine.CopyTo(all, Rank * H);
        for (int r = 0; r < Size; r++)
        {
            if (r == Rank) continue;
            var l = Take(Kind.First, r, what, "the header (it hangs, died, or called another operation)", scope);
            l.Header!.CopyTo(all, r * H);
            got[r] = l.Body;
        }
        MpiCommunicator.CheckHeaders(all, Size, Who, what);
        refused?.Throw();
        return (what, got, all);
    }

    /// <summary>The data member <paramref name="from"/> sent in its first message; none means its arguments were refused.</summary>
    Tensor Body(Tensor?[] got, int from, string what) =>
        got[from] ?? throw new CommunicatorException($"{what}: {Who(from)} sent no data: its arguments were refused (see its error)");

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

/// <summary>A message between two rank threads: a collective header, a tensor, or both.</summary>
readonly record struct Letter(long[]? Header, Tensor? Body);

/// <summary>
/// One per process: delivers <see cref="HybridCommunicator"/> messages. A message to a rank thread of this process is put
/// in the receiver's mailbox: a detached copy of its tensor, or the tensor's storage itself when the sender says nobody
/// writes it until the receiver is done. One to another process is packed (an envelope of group, source, destination,
/// kind, dtype and shape, then the header and the bytes) and sent with MPI_Isend on a private duplicate of
/// MPI_COMM_WORLD. A postman thread receives every incoming message (MPI_Iprobe + MPI_Recv) into the mailboxes and
/// completes the sends, so the rank threads never wait inside MPI; messages between two ranks of one group and kind
/// arrive in the order sent (MPI's non-overtaking rule for one source process, and one queue per mailbox).
/// <para>The postman polls only while it is needed, and then without the 1 ms granularity of a sleep: while a send is
/// in flight or a rank thread waits for a message from another process it naps for a time that grows with how long
/// nothing has come (<see cref="MinNap"/> up to <see cref="MaxNap"/>), so a message that follows a short wait is
/// picked up within tens of microseconds and a long wait costs few wake-ups; otherwise it sleeps until a rank thread
/// posts to or waits on another process (or <see cref="MaxNap"/> passes). Spinning is avoided: the rank threads and
/// processes usually share few cores.</para>
/// </summary>
sealed unsafe class MpiPostOffice
{
    const int Tag = 7101, E = 15;   // envelope: group, src, dst, kind, dtype, ndim (-1: no tensor), 8 dims, header length
    static readonly TimeSpan MinNap = TimeSpan.FromMicroseconds(20), MaxNap = TimeSpan.FromMilliseconds(1);

    readonly IntPtr _comm;
    readonly int _threads;
    readonly TimeSpan _timeout;
    readonly object _lock = new();
    readonly Dictionary<(long Group, int Src, int Dst, int Kind), Queue<Letter>> _boxes = new();
    readonly Dictionary<long, string> _groups = new();
    readonly ConcurrentQueue<(IntPtr Request, byte[] Buffer)> _outgoing = new();
    readonly ManualResetEventSlim _work = new(false, spinCount: 0);   // set when the postman is needed
    readonly Thread _postman;
    (int Rank, Exception Cause)? _abort;
    volatile bool _closing;
    int _remoteWaiters;   // rank threads waiting for a message from another process
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

    /// <summary>Posts <paramref name="letter"/>; its tensor stays the sender's (a receiver in this process gets a copy, or
    /// with <paramref name="share"/> a new handle on the same storage).</summary>
    public void Post(long group, int src, int dst, int kind, Letter letter, bool share)
    {
        if (ProcessOf(dst) == Process)
        {
            Tensor? body = null;
            if (letter.Body is { } t)
                using (torch.no_grad()) body = (share ? t.detach() : t.detach().clone()).DetachFromDisposeScope();
            Deposit((group, src, dst, kind), letter with { Body = body });
            return;
        }
        string what = $"a message from world rank {src} to world rank {dst}";
        var (h, b) = letter;
        if (b is not null && b.shape.Length > 8) throw new CommunicatorException($"{what}: tensors of more than 8 dimensions are not sent");
        long bytes = b is null ? 0 : MpiCommunicator.Bytes(b.numel(), b, what);
        int headerLength = h?.Length ?? 0;
        var c = b is null || b.is_contiguous() ? b : b.contiguous();
        var buf = GC.AllocateArray<byte>((E + headerLength) * 8 + (int)bytes, pinned: true);
        fixed (byte* p = buf)
        {
            var env = (long*)p;
            env[0] = group; env[1] = src; env[2] = dst; env[3] = kind; env[4] = b is null ? 0 : (long)b.dtype; env[5] = b?.shape.Length ?? -1;
            for (int i = 0; i < (b?.shape.Length ?? 0); i++) env[6 + i] = b!.shape[i];
            env[14] = headerLength;
            for (int i = 0; i < headerLength; i++) env[E + i] = h![i];
            if (c is not null) Buffer.MemoryCopy(MpiCommunicator.Data(c), p + (E + headerLength) * 8, bytes, bytes);
            _outgoing.Enqueue((MpiNative.Isend(p, buf.Length, ProcessOf(dst), Tag, _comm), buf));
        }
        if (!ReferenceEquals(c, b)) c?.Dispose();
        _work.Set();
    }

    void Deposit((long, int, int, int) key, Letter letter)
    {
        lock (_lock)
        {
            if (!_boxes.TryGetValue(key, out var q)) _boxes[key] = q = new Queue<Letter>();
            q.Enqueue(letter);
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Waits (up to the timeout) for the next message of the mailbox; throws when this process's ranks were aborted.</summary>
    public Letter Take(long group, int src, int dst, int kind, string what, Func<string> waitingFor)
    {
        var clock = Stopwatch.StartNew();
        bool remote = ProcessOf(src) != Process, counted = false;
        lock (_lock)
        {
            try
            {
                while (true)
                {
                    if (_abort is { } a) throw new CommunicatorAbortedException(what, dst, a.Rank, a.Cause);
                    if (_boxes.TryGetValue((group, src, dst, kind), out var q) && q.Count > 0) return q.Dequeue();
                    var left = _timeout - clock.Elapsed;
                    if (left <= TimeSpan.Zero)
                        throw new CommunicatorTimeoutException($"{what}: timed out after {_timeout.TotalSeconds:0.###} s waiting for {waitingFor()}");
                    if (remote && !counted)
                    {
                        counted = true;
                        Interlocked.Increment(ref _remoteWaiters);
                        _work.Set();
                    }
                    Monitor.Wait(_lock, left);
                }
            }
            finally { if (counted) Interlocked.Decrement(ref _remoteWaiters); }
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
        var quiet = Stopwatch.StartNew();   // since the last message in or out
        try
        {
            while (true)
            {
                _work.Reset();
                bool moved = false;
                while (MpiNative.Iprobe(MpiNative.AnySource, Tag, _comm) is { } m)
                {
                    Receive(m.Source, m.Bytes);
                    moved = true;
                }
                while (_outgoing.TryDequeue(out var o)) { inFlight.Add(o); moved = true; }
                for (int i = inFlight.Count - 1; i >= 0; i--)
                {
                    var (req, _) = inFlight[i];
                    if (MpiNative.Test(ref req)) { inFlight.RemoveAt(i); moved = true; }
                }
                if (_closing && inFlight.Count == 0 && _outgoing.IsEmpty) return;
                if (moved) { quiet.Restart(); continue; }
                if (inFlight.Count > 0 || Volatile.Read(ref _remoteWaiters) > 0)
                    Nap(TimeSpan.FromTicks(Math.Clamp(quiet.Elapsed.Ticks / 16, MinNap.Ticks, MaxNap.Ticks)));
                else if (_work.Wait(MaxNap)) quiet.Restart();   // a rank thread needs the postman from now
            }
        }
        catch (Exception e) { Abort(Process * _threads, new CommunicatorException($"the MPI postman of process {Process} failed: {e.Message}", e)); }
    }

    [DllImport("libc", EntryPoint = "usleep")] static extern int usleep(uint microseconds);

    /// <summary>A sleep finer than Thread.Sleep's whole milliseconds (the kernel's timer slack adds ~50 µs).</summary>
    static void Nap(TimeSpan t) => usleep((uint)Math.Max(1, t.Ticks / TimeSpan.TicksPerMicrosecond));

    void Receive(int source, int bytes)
    {
        var buf = GC.AllocateArray<byte>(bytes, pinned: true);
        fixed (byte* p = buf)
        {
            MpiNative.Recv(p, bytes, source, Tag, _comm);
            var env = (long*)p;
            int headerLength = (int)env[14];
            var header = headerLength == 0 ? null : new long[headerLength];
            for (int i = 0; i < headerLength; i++) header![i] = env[E + i];
            Tensor? body = null;
            long n = bytes - (E + headerLength) * 8;
            if (env[5] >= 0)
            {
                var shape = new long[env[5]];
                for (int i = 0; i < shape.Length; i++) shape[i] = env[6 + i];
                body = torch.empty(shape, (ScalarType)env[4]).DetachFromDisposeScope();
                if (n != body.numel() * body.ElementSize)
                    throw new CommunicatorException($"a message from process {source} holds {n} bytes, its envelope says [{string.Join(", ", shape)}] {body.dtype}");
                Buffer.MemoryCopy(p + (E + headerLength) * 8, MpiCommunicator.Data(body), n, n);
            }
            else if (n != 0) throw new CommunicatorException($"a message from process {source} holds {n} bytes, its envelope says it has no tensor");
            Deposit((env[0], (int)env[1], (int)env[2], (int)env[3]), new Letter(header, body));
        }
    }

    /// <summary>Called once per world member: the last one waits for the sends to complete, stops the postman and frees the
    /// communicator (unless the ranks were aborted: then the job is about to end with MPI_Abort).</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _users) > 0) return;
        _closing = true;
        _work.Set();
        // After a failure the job ends with MPI_Abort: messages to peers that may be gone are not waited for.
        lock (_lock) if (_abort is not null) return;
        if (!_postman.Join(_timeout))
            throw new CommunicatorTimeoutException($"process {Process}: its messages were not delivered within {_timeout.TotalSeconds:0.###} s");
        lock (_lock)
        {
            foreach (var q in _boxes.Values) while (q.Count > 0) q.Dequeue().Body?.Dispose();
        }
        if (!MpiNative.Finalized()) MpiNative.CommFree(_comm);
    }
}
