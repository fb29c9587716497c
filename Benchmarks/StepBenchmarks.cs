using BenchmarkDotNet.Attributes;

namespace Benchmarks;

/// <summary>
/// ns per scheduler.step() and bytes allocated per step, for each composition, with the run already advanced to
/// <see cref="StartStep"/> (1e3, 1e5 or 1e6: O(1) amortised means they agree).
/// Each invocation performs <see cref="StepsPerInvoke"/> steps; the job runs <see cref="Program.InvocationsPerIteration"/>
/// invocations per iteration. Before an iteration the run is rebuilt and advanced to StartStep again whenever the
/// iteration would leave the window [StartStep, StartStep + max(StartStep/10, steps per iteration)], so every
/// measured step lies in [1e3, 5e3], [1e5, 1.1e5] or [1e6, 1.1e6].
/// </summary>
[MemoryDiagnoser]
public class StepBenchmarks
{
    public const int StepsPerInvoke = 1000;
    const int StepsPerIteration = StepsPerInvoke * Program.InvocationsPerIteration;

    [Params(Composition.Leaf, Composition.A_Chained, Composition.B_ThreeLevel, Composition.C_WarmupCosine)]
    public Composition Composition { get; set; }

    [Params(1_000, 100_000, 1_000_000)]
    public int StartStep { get; set; }

    OursInMemoryRig? _mem;
    OursTorchRig? _torch;
    TorchSharpRig? _ts;

    bool NeedsRebase(int steps) => steps + StepsPerIteration > StartStep + Math.Max(StartStep / 10, StepsPerIteration);

    /// <summary>Brings every step path to tier-1 code first (see <see cref="Program.PreWarm"/>).</summary>
    [GlobalSetup]
    public void Warm() => Program.PreWarm();

    [IterationSetup(Target = nameof(Ours_InMemory))]
    public void SetupMem()
    {
        if (_mem is not null && !NeedsRebase(_mem.Steps)) return;
        _mem = new OursInMemoryRig(Composition);
        for (int i = 0; i < StartStep; i++) _mem.Scheduler.Step();
    }

    [IterationSetup(Target = nameof(Ours_TorchSharpGroups))]
    public void SetupTorch()
    {
        if (_torch is not null && !NeedsRebase(_torch.Steps)) return;
        _torch?.Dispose();
        _torch = new OursTorchRig(Composition);
        for (int i = 0; i < StartStep; i++) _torch.Scheduler.Step();
    }

    [IterationSetup(Target = nameof(TorchSharp_Own))]
    public void SetupTs()
    {
        if (_ts is not null && !NeedsRebase(_ts.Steps)) return;
        _ts?.Dispose();
        _ts = new TorchSharpRig(Composition);
        for (int i = 0; i < StartStep; i++) _ts.Step();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _torch?.Dispose(); _torch = null;
        _ts?.Dispose(); _ts = null;
        _mem = null;
    }

    /// <summary>Our LRScheduler.Step() over InMemoryParamGroups: the library's own cost.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = StepsPerInvoke)]
    public void Ours_InMemory()
    {
        var s = _mem!.Scheduler;
        for (int i = 0; i < StepsPerInvoke; i++) s.Step();
    }

    /// <summary>Our LRScheduler.Step() writing a real TorchSharp SGD's param group through TorchSharpParamGroups.</summary>
    [Benchmark(OperationsPerInvoke = StepsPerInvoke)]
    public void Ours_TorchSharpGroups()
    {
        var s = _torch!.Scheduler;
        for (int i = 0; i < StepsPerInvoke; i++) s.Step();
    }

    /// <summary>TorchSharp 0.107's own scheduler objects (step()) on a real SGD.</summary>
    [Benchmark(OperationsPerInvoke = StepsPerInvoke)]
    public void TorchSharp_Own()
    {
        var s = _ts!.Scheduler;
        for (int i = 0; i < StepsPerInvoke; i++) s.step();
        _ts.Steps += StepsPerInvoke;
    }
}
