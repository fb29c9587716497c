using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace Trainer.Training;

/// <summary>
/// One dedicated thread per data-parallel rank (as InfiniTrain's nthread_per_process): <see cref="Run{T}"/>
/// runs the same function on every rank at once and waits for all. Each rank's work always runs on its own
/// thread, so thread-local torch state (grad mode, dispose scopes, device) stays put. With one rank it runs inline.
/// </summary>
public sealed class RankThreads : IDisposable
{
    readonly int _n;
    readonly Thread[] _threads;
    readonly BlockingCollection<Action>[] _queues;

    public RankThreads(int ranks)
    {
        _n = ranks;
        _threads = new Thread[ranks > 1 ? ranks : 0];
        _queues = new BlockingCollection<Action>[_threads.Length];
        for (int i = 0; i < _threads.Length; i++)
        {
            var q = _queues[i] = new BlockingCollection<Action>();
            _threads[i] = new Thread(() => { foreach (var a in q.GetConsumingEnumerable()) a(); })
            { IsBackground = true, Name = $"rank-{i}" };
            _threads[i].Start();
        }
    }

    public int Count => _n;

    public T[] Run<T>(Func<int, T> work)
    {
        var results = new T[_n];
        if (_n == 1) { results[0] = work(0); return results; }
        var errors = new Exception?[_n];
        using var done = new CountdownEvent(_n);
        for (int r = 0; r < _n; r++)
        {
            int rank = r;
            _queues[r].Add(() =>
            {
                try { results[rank] = work(rank); }
                catch (Exception e) { errors[rank] = e; }
                finally { done.Signal(); }
            });
        }
        done.Wait();
        var first = errors.FirstOrDefault(e => e is not null);
        if (first is not null) ExceptionDispatchInfo.Capture(first).Throw();
        return results;
    }

    public void Run(Action<int> work) => Run<int>(r => { work(r); return 0; });

    public void Dispose()
    {
        foreach (var q in _queues) q.CompleteAdding();
        foreach (var t in _threads) t.Join();
        foreach (var q in _queues) q.Dispose();
    }
}
