using System.Collections.Concurrent;
using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using Schedules.Core;

namespace Benchmarks;

/// <summary>
/// ns per <c>Schedule.Lr(step, baseLr)</c> near step 10^3, 10^6 and 10^9, each invocation sampling the next
/// <see cref="CallsPerInvoke"/> steps in increasing order. In closed form a call costs the same at any step; without one
/// (B: an affine chain) the first call runs up to the step (timed once in the setup, <see cref="FirstCallMs"/>) and later
/// increasing samples advance the cached run.
/// </summary>
[MemoryDiagnoser]
public class LrBenchmarks
{
    public const int CallsPerInvoke = 1000;

    [Params(Composition.Leaf, Composition.A_Chained, Composition.B_ThreeLevel, Composition.C_WarmupCosine)]
    public Composition Composition { get; set; }

    [Params(1_000, 1_000_000, 1_000_000_000)]
    public int Step { get; set; }

    /// <summary>The first call's wall time, ms, per (composition, step): from scratch where a run is needed.</summary>
    public static readonly ConcurrentDictionary<(Composition, int), double> FirstCallMs = new();

    Schedule _schedule = null!;
    int _next;

    static bool _warmed;

    /// <summary>
    /// Once per process: brings Lr's paths (closed form, cached run) and this benchmark method to tier-1 code before the
    /// first case is timed (a first run without it timed tier-0 code: 251 ns per call where tier-1 takes ~70).
    /// </summary>
    static void PreWarm()
    {
        if (_warmed) return;
        _warmed = true;
        for (int round = 0; round < 3; round++)
        {
            foreach (var c in Enum.GetValues<Composition>())
                foreach (int start in new[] { 1_000, 1_000_000 })
                {
                    var b = new LrBenchmarks { Composition = c, Step = start };
                    b._schedule = Compositions.Ours(c);
                    b._next = start;
                    for (int i = 0; i < 60; i++) b.Lr();
                }
            Thread.Sleep(300);
        }
    }

    [GlobalSetup]
    public void Setup()
    {
        PreWarm();
        _schedule = Compositions.Ours(Composition);
        _next = Step;
        var sw = Stopwatch.StartNew();
        _schedule.Lr(Step, Compositions.BaseLr);
        FirstCallMs[(Composition, Step)] = sw.Elapsed.TotalMilliseconds;
    }

    [Benchmark(OperationsPerInvoke = CallsPerInvoke)]
    public double Lr()
    {
        var s = _schedule;
        int k = _next;
        double acc = 0;
        for (int i = 0; i < CallsPerInvoke; i++) acc += s.Lr(k + i, Compositions.BaseLr);
        _next = k + CallsPerInvoke;
        return acc;
    }
}
