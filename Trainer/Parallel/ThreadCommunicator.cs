using System.Diagnostics;
using System.Runtime.ExceptionServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Trainer.Parallel;

/// <summary>
/// The in-process backend: ranks are threads of one process, tensors on CPU or CUDA (any mix of devices).
/// <see cref="CreateWorld"/> returns one communicator per rank; rank r's communicator is used by rank r's thread only.
/// <para>Every collective runs in two phases: each member posts its arguments into its slot of the group's shared slot
/// array, waits at a barrier, checks that all posts fit together, computes its own result from the posted tensors
/// following <see cref="Reduction"/> (rank order 0..n-1), waits at a second barrier (so nobody overwrites a tensor a
/// peer is still reading), then writes its result. So every member holds the same bits, a ReduceScatter chunk equals
/// the AllReduce chunk bit for bit, and results do not depend on thread timing.</para>
/// <para>Failure: every wait has a timeout (default 10 minutes). When any rank fails — it throws inside a collective,
/// times out, passes mismatched arguments, or its thread calls <see cref="Abort"/> — the whole world is aborted and
/// every pending or later operation on any of its groups throws <see cref="CommunicatorAbortedException"/> naming the
/// failed rank. <see cref="Run{T}"/> runs a body on one thread per rank and does this for you.</para>
/// <para>Send is buffered (it copies the tensor and returns at once); messages between a pair of ranks of a group
/// arrive in the order they were sent. Torch work inside the communicator runs under no_grad.</para>
/// </summary>
public sealed class ThreadCommunicator : IAbortableCommunicator
{
    /// <summary>How long any wait may take before the world is aborted, unless <see cref="CreateWorld"/> is told otherwise.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(10);

    readonly Group _group;
    long _ops;          // collectives called on this communicator, for messages
    bool _disposed;

    ThreadCommunicator(Group group, int rank) { _group = group; Rank = rank; }

    /// <summary>One communicator per rank of a new world of <paramref name="size"/> ranks; element r is rank r.</summary>
    public static IReadOnlyList<ICommunicator> CreateWorld(int size, TimeSpan? timeout = null)
    {
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), size, "a world needs at least one rank");
        var t = timeout ?? DefaultTimeout;
        if (t <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), t, "the timeout must be positive");
        var group = new Group(new World(t), Enumerable.Range(0, size).ToArray());
        return Enumerable.Range(0, size).Select(r => (ICommunicator)new ThreadCommunicator(group, r)).ToArray();
    }

    /// <summary>
    /// Runs <paramref name="body"/> for every rank of a new world, each on its own thread, and returns the results in
    /// rank order. A rank that throws aborts the world (the others' operations throw instead of waiting); then the
    /// first root-cause exception (lowest rank, not a <see cref="CommunicatorAbortedException"/>) is rethrown.
    /// </summary>
    public static T[] Run<T>(int size, Func<ICommunicator, T> body, TimeSpan? timeout = null)
    {
        var comms = CreateWorld(size, timeout);
        var results = new T[size];
        var errors = new Exception?[size];
        var threads = Enumerable.Range(0, size).Select(r => new Thread(() =>
        {
            try { results[r] = body(comms[r]); }
            catch (Exception e) { errors[r] = e; ((ThreadCommunicator)comms[r]).Abort(e); }
        }) { IsBackground = true, Name = $"rank-{r}" }).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        foreach (var c in comms) c.Dispose();
        var root = errors.FirstOrDefault(e => e is not null and not CommunicatorAbortedException) ?? errors.FirstOrDefault(e => e is not null);
        if (root is not null) ExceptionDispatchInfo.Capture(root).Throw();
        return results;
    }

    public static void Run(int size, Action<ICommunicator> body, TimeSpan? timeout = null) =>
        Run<int>(size, c => { body(c); return 0; }, timeout);

    public int Rank { get; }
    public int Size => _group.Size;
    public IReadOnlyList<int> WorldRanks => _group.WorldRanks;
    int WorldRank => _group.WorldRanks[Rank];

    /// <summary>Marks this rank's world as failed by this rank: every member's pending and later operations throw
    /// <see cref="CommunicatorAbortedException"/>. Call it from a rank thread that caught an exception. The first call wins.</summary>
    public void Abort(Exception cause) => _group.World.Abort(WorldRank, cause);

    // ------------------------------------------------------------------ collectives

    public void AllReduce(Tensor tensor, ReduceOp op)
    {
        Collective(new Post("AllReduce", A: tensor, Reduce: op), posts =>
        {
            CheckSame(posts, "AllReduce", p => p.Reduce.ToString(), "reduce op");
            CheckSame(posts, "AllReduce", p => Describe(p.A!), "tensors");
            CheckReducible(tensor.dtype, op, "AllReduce");
            var result = Reduction.Combine(posts.Select(p => p.A!).ToArray(), op, tensor.dtype, tensor.device);
            return () => tensor.copy_(result);
        });
    }

    public void ReduceScatter(Tensor output, Tensor input, ReduceOp op)
    {
        Collective(new Post("ReduceScatter", A: input, B: output, Reduce: op), posts =>
        {
            CheckSame(posts, "ReduceScatter", p => p.Reduce.ToString(), "reduce op");
            CheckSame(posts, "ReduceScatter", p => Describe(p.A!), "inputs");
            CheckSame(posts, "ReduceScatter", p => Describe(p.B!), "outputs");
            CheckReducible(input.dtype, op, "ReduceScatter");
            CheckSizes("ReduceScatter", input, output, "input", "output");
            long m = output.numel();
            var chunks = posts.Select(p => p.A!.reshape(-1).narrow(0, Rank * m, m)).ToArray();
            var result = Reduction.Combine(chunks, op, output.dtype, output.device);
            return () => output.copy_(result.view(output.shape));
        });
    }

    public void AllGather(Tensor output, Tensor input)
    {
        Collective(new Post("AllGather", A: input, B: output), posts =>
        {
            CheckSame(posts, "AllGather", p => Describe(p.A!), "inputs");
            CheckSame(posts, "AllGather", p => Describe(p.B!), "outputs");
            CheckSizes("AllGather", output, input, "output", "input");
            var gathered = torch.cat(posts.Select(p => p.A!.reshape(-1).to(output.dtype, output.device)).ToArray(), 0);
            return () => output.copy_(gathered.view(output.shape));
        });
    }

    public void Broadcast(Tensor tensor, int root)
    {
        Collective(new Post("Broadcast", A: tensor, Root: root), posts =>
        {
            CheckSame(posts, "Broadcast", p => p.Root.ToString(), "roots");
            if (root < 0 || root >= Size) throw Mismatch($"Broadcast: root {root} is not a rank of this group of {Size}");
            CheckSame(posts, "Broadcast", p => Describe(p.A!), "tensors");
            // Only the root's tensor is read, and the root does not write: members copy straight into their own tensor.
            if (Rank != root) tensor.copy_(posts[root].A!);
            return null;
        });
    }

    public void Barrier() => Collective(new Post("Barrier"), _ => null);

    public ICommunicator Split(int color, int key)
    {
        ThreadCommunicator? mine = null;
        Collective(new Post("Split", Color: color, Key: key), posts =>
        {
            var members = Enumerable.Range(0, Size).Where(r => posts[r].Color == color)
                .OrderBy(r => posts[r].Key).ThenBy(r => r).ToArray();
            int leader = members[0];
            // The leader creates the subgroup's shared state; members pick it up after the second barrier.
            if (Rank == leader) _group.SplitResults[leader] = new Group(_group.World, members.Select(r => _group.WorldRanks[r]).ToArray());
            int newRank = Array.IndexOf(members, Rank);
            return () => mine = new ThreadCommunicator(_group.SplitResults[leader]!, newRank);
        });
        return mine!;
    }

    // ------------------------------------------------------------------ point to point

    public void Send(Tensor tensor, int peer)
    {
        string what = $"Send to rank {peer}";
        BeginOperation(what);
        CheckPeer(peer, what);
        Tensor copy;
        using (torch.no_grad()) copy = tensor.detach().clone().DetachFromDisposeScope();
        _group.Mailbox(Rank, peer).Post(copy);
    }

    public void Recv(Tensor tensor, int peer)
    {
        string what = $"Recv from rank {peer}";
        BeginOperation(what);
        CheckPeer(peer, what);
        using var message = _group.Mailbox(peer, Rank).Take(this, what);
        if (Describe(message) != Describe(tensor))
            throw AbortWith(Mismatch($"{what} on {Who(Rank)}: the message is {Describe(message)}, the receiving tensor {Describe(tensor)}"));
        using (torch.no_grad()) tensor.copy_(message);
    }

    // ------------------------------------------------------------------ machinery

    /// <summary>What one member passed to a collective.</summary>
    sealed record Post(string Op, Tensor? A = null, Tensor? B = null, ReduceOp Reduce = ReduceOp.Sum, int Root = 0, int Color = 0, int Key = 0);

    /// <summary>
    /// Post, barrier, <paramref name="compute"/> (reads every post, validates, builds this member's result; returns the
    /// write of that result into this member's tensors), barrier, write.
    /// </summary>
    void Collective(Post mine, Func<Post[], Action?> compute)
    {
        long n = ++_ops;
        string what = $"{mine.Op} (collective #{n} of group {GroupName})";
        BeginOperation(what);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        try
        {
            _group.Posts[Rank] = mine;
            _group.Arrive(this, what);                 // every member's post is visible
            var posts = (Post[])_group.Posts.Clone();
            CheckSame(posts, mine.Op, p => p.Op, "collectives (every member must call the same collective in the same order)");
            var write = compute(posts);
            _group.Arrive(this, what);                 // every member has finished reading the posts
            _group.Posts[Rank] = null;
            write?.Invoke();
        }
        catch (Exception e) when (e is not CommunicatorAbortedException and not CommunicatorTimeoutException)
        {
            _group.World.Abort(WorldRank, e);          // the others must not wait for this member
            throw;
        }
    }

    void BeginOperation(string what)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _group.World.ThrowIfAborted(what, WorldRank);
    }

    Exception AbortWith(Exception e) { _group.World.Abort(WorldRank, e); return e; }

    string GroupName => $"[{string.Join(",", _group.WorldRanks)}]";

    /// <summary>"rank 2", plus the world rank when it differs.</summary>
    string Who(int r) => _group.WorldRanks[r] == r ? $"rank {r}" : $"rank {r} (world rank {_group.WorldRanks[r]})";

    static string Describe(Tensor t) => $"[{string.Join(", ", t.shape)}] {t.dtype}";

    CommunicatorMismatchException Mismatch(string message) => new(message);

    /// <summary>Every member sees the same posts, so every member throws the same message.</summary>
    void CheckSame(Post[] posts, string op, Func<Post, string> key, string what)
    {
        var first = key(posts[0]);
        var odd = Enumerable.Range(1, posts.Length - 1).Where(r => key(posts[r]) != first).ToArray();
        if (odd.Length == 0) return;
        var listed = string.Join(", ", new[] { 0 }.Concat(odd).Select(r => $"{Who(r)} {key(posts[r])}"));
        throw Mismatch($"{op} in group {GroupName}: members passed different {what}: {listed}");
    }

    void CheckReducible(ScalarType t, ReduceOp op, string name)
    {
        if (Reduction.Unsupported(t, op) is { } why) throw Mismatch($"{name} in group {GroupName}: {why}");
    }

    void CheckSizes(string op, Tensor big, Tensor small, string bigName, string smallName)
    {
        if (big.dtype != small.dtype)
            throw Mismatch($"{op} in group {GroupName}: {bigName} is {big.dtype} but {smallName} is {small.dtype}");
        if (big.numel() != Size * small.numel())
            throw Mismatch($"{op} in group {GroupName}: {bigName} {Describe(big)} must hold {Size} x {smallName} {Describe(small)} elements ({Size * small.numel()}), it holds {big.numel()}");
    }

    void CheckPeer(int peer, string what)
    {
        if (peer < 0 || peer >= Size) throw new ArgumentOutOfRangeException(nameof(peer), peer, $"{what}: not a rank of this group of {Size}");
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        for (int src = 0; src < Size; src++) _group.Mailbox(src, Rank).DisposePending();
    }

    /// <summary>What every group of one world shares: the timeout and the first failure.</summary>
    sealed class World(TimeSpan timeout)
    {
        public TimeSpan Timeout { get; } = timeout;
        readonly object _lock = new();
        (int Rank, Exception Cause)? _failure;

        public void Abort(int worldRank, Exception cause)
        {
            lock (_lock) _failure ??= (worldRank, cause);
        }

        public void ThrowIfAborted(string what, int worldRank)
        {
            (int Rank, Exception Cause)? f;
            lock (_lock) f = _failure;
            if (f is { } x) throw new CommunicatorAbortedException(what, worldRank, x.Rank, x.Cause);
        }

        /// <summary>
        /// Waits on <paramref name="gate"/> (held by the caller) while <paramref name="blocked"/>; polls for an abort;
        /// past the timeout, aborts the world and throws a timeout naming what was missing.
        /// </summary>
        public void WaitWhile(object gate, Func<bool> blocked, string what, int worldRank, Func<string> missing)
        {
            var clock = Stopwatch.StartNew();
            while (blocked())
            {
                ThrowIfAborted(what, worldRank);
                var left = Timeout - clock.Elapsed;
                if (left <= TimeSpan.Zero)
                {
                    var e = new CommunicatorTimeoutException($"{what} on world rank {worldRank}: timed out after {Timeout.TotalSeconds:0.###} s waiting for {missing()}");
                    Abort(worldRank, e);
                    throw e;
                }
                Monitor.Wait(gate, left < PollInterval ? left : PollInterval);
            }
        }

        static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(10);
    }

    /// <summary>The state the members of one group share: slots, barrier, split results, mailboxes.</summary>
    sealed class Group
    {
        public World World { get; }
        public int[] WorldRanks { get; }
        public int Size => WorldRanks.Length;
        public readonly Post?[] Posts;
        public readonly Group?[] SplitResults;
        readonly Mailbox[] _mail;
        readonly object _lock = new();
        readonly bool[] _present;
        int _arrived;
        long _generation;

        public Group(World world, int[] worldRanks)
        {
            World = world;
            WorldRanks = worldRanks;
            Posts = new Post?[Size];
            SplitResults = new Group?[Size];
            _present = new bool[Size];
            _mail = Enumerable.Range(0, Size * Size).Select(_ => new Mailbox(world)).ToArray();
        }

        public Mailbox Mailbox(int src, int dst) => _mail[src * Size + dst];

        /// <summary>A reusable barrier: returns when every member has arrived.</summary>
        public void Arrive(ThreadCommunicator member, string what)
        {
            lock (_lock)
            {
                long generation = _generation;
                _present[member.Rank] = true;
                if (++_arrived == Size)
                {
                    _arrived = 0;
                    Array.Clear(_present);
                    _generation++;
                    Monitor.PulseAll(_lock);
                    return;
                }
                World.WaitWhile(_lock, () => _generation == generation, what, member.WorldRank, () =>
                    "world rank(s) " + string.Join(", ", Enumerable.Range(0, Size).Where(r => !_present[r]).Select(r => WorldRanks[r])) + " to arrive");
            }
        }
    }

    /// <summary>FIFO of messages from one member to another; messages are private copies.</summary>
    sealed class Mailbox(World world)
    {
        readonly Queue<Tensor> _queue = new();

        public void Post(Tensor message)
        {
            lock (_queue) { _queue.Enqueue(message); Monitor.PulseAll(_queue); }
        }

        public Tensor Take(ThreadCommunicator receiver, string what)
        {
            lock (_queue)
            {
                world.WaitWhile(_queue, () => _queue.Count == 0, what, receiver.WorldRank, () => "a message");
                return _queue.Dequeue();
            }
        }

        public void DisposePending()
        {
            lock (_queue) while (_queue.Count > 0) _queue.Dequeue().Dispose();
        }
    }
}
