using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Benchmarks;

/// <summary>
/// dotnet run -c Release --project Benchmarks [-- [--filter PATTERN...] [--no-pytorch] [--python PATH] [--out-of-process] [--lr]]
/// (--lr: only LrBenchmarks, ns per Schedule.Lr(step) at steps 10^3, 10^6, 10^9.)
/// Runs the BenchmarkDotNet suite (our LRScheduler, TorchSharp 0.107's schedulers), checks that TorchSharp's
/// schedulers follow the same rates as ours, runs pytorch_step_bench.py (PyTorch 1.13) as a subprocess, and prints one
/// summary table of ns/step with ratios, all from this one run.
/// </summary>
public static class Program
{
    public const int InvocationsPerIteration = 4;
    public const int IterationCount = 30;
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static int Main(string[] args)
    {
        var rest = new List<string>();
        bool pytorch = true, outOfProcess = false, lr = false;
        string python = "/usr/bin/python3";
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--no-pytorch": pytorch = false; break;
                case "--out-of-process": outOfProcess = true; break;
                case "--lr": lr = true; break;
                case "--python" when i + 1 < args.Length: python = args[++i]; break;
                default: rest.Add(args[i]); break;
            }
        }
        if (!rest.Contains("--filter")) rest.AddRange(["--filter", "*"]);

        // A short job for 2 shared cores: few iterations, fixed invocation count (so the measured steps stay in the
        // window StepBenchmarks describes). In-process by default: no per-case rebuild, and the native TorchSharp
        // libraries already prepared in this build output are the ones loaded.
        var job = Job.Default
            .WithLaunchCount(1).WithWarmupCount(6).WithIterationCount(IterationCount)
            .WithInvocationCount(InvocationsPerIteration).WithUnrollFactor(1)
            .WithId(outOfProcess ? "Short" : "ShortInProcess");
        if (!outOfProcess) job = job.WithToolchain(InProcessEmitToolchain.Instance);
        var config = ManualConfig.CreateEmpty()
            .AddJob(job)
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumnProvider(DefaultColumnProviders.Instance)
            .AddColumn(StatisticColumn.Median)
            .AddLogger(ConsoleLogger.Default)
            .AddExporter(MarkdownExporter.GitHub)
            .WithOptions(ConfigOptions.DisableOptimizationsValidator | ConfigOptions.JoinSummary);

        if (lr) return RunLr(rest, config);

        // In-process, warm before BenchmarkDotNet starts (the first case's [GlobalSetup] then finds it done; measured:
        // warming only from there left the very first case ~1.5x slow). Out of process, each case's process warms itself.
        if (!outOfProcess) PreWarm();
        var summaries = BenchmarkSwitcher.FromTypes([typeof(StepBenchmarks)]).Run(rest.ToArray(), config).ToList();
        var ours = Collect(summaries);
        if (ours.Count == 0) { Console.Error.WriteLine("no benchmark results"); return 1; }

        var compositions = ours.Keys.Select(k => k.Comp).Distinct().OrderBy(c => c).ToList();
        var starts = ours.Keys.Select(k => k.Start).Distinct().OrderBy(s => s).ToList();

        Console.WriteLine();
        Console.WriteLine("// TorchSharp 0.107 schedulers vs ours: same rates over the first 3000 steps?");
        var expressible = new Dictionary<Composition, string>();
        foreach (var c in compositions)
        {
            expressible[c] = CompareWithTorchSharp(c, 3000);
            Console.WriteLine($"//   {Compositions.Describe(c),-32} {expressible[c]}");
        }

        Console.WriteLine();
        Console.WriteLine("// Exact allocation check (this thread, GC.GetAllocatedBytesForCurrentThread) over 100,000 steps from step 1e3:");
        foreach (var c in compositions)
            Console.WriteLine($"//   {Compositions.Describe(c),-32} ours: {AllocatedOverSteps(c, false)} B, ours+TorchSharpParamGroups: {AllocatedOverSteps(c, true)} B");

        Dictionary<(Composition, int), double> py = [];
        string pyVersion = "not run";
        if (pytorch)
            (py, pyVersion) = RunPyTorch(python, compositions, starts);

        PrintSummary(ours, py, pyVersion, expressible, compositions, starts);
        return 0;
    }

    /// <summary>--lr: ns per Schedule.Lr(step) (LrBenchmarks), one summary table.</summary>
    static int RunLr(List<string> args, IConfig config)
    {
        var summaries = BenchmarkSwitcher.FromTypes([typeof(LrBenchmarks)]).Run(args.ToArray(), config).ToList();
        var rows = new Dictionary<(Composition, int), (double Ns, double Bytes)>();
        foreach (var s in summaries)
            foreach (var r in s.Reports)
            {
                var b = r.BenchmarkCase;
                rows[((Composition)b.Parameters[nameof(LrBenchmarks.Composition)], (int)b.Parameters[nameof(LrBenchmarks.Step)])] =
                    (r.ResultStatistics?.Median ?? double.NaN, r.GcStats.GetBytesAllocatedPerOperation(b) ?? double.NaN);
            }
        if (rows.Count == 0) { Console.Error.WriteLine("no benchmark results"); return 1; }
        var steps = rows.Keys.Select(k => k.Item2).Distinct().OrderBy(x => x).ToList();
        Console.WriteLine();
        Console.WriteLine("## Schedule.Lr(step, 0.1): ns per call (medians; increasing steps from the start step), bytes per call");
        Console.WriteLine($"// machine: {Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}");
        Console.WriteLine();
        Console.WriteLine("| Composition | closed form | " + string.Join(" | ", steps.Select(s => $"ns/call at {s:N0}")) + " | B/call | first call at " + $"{steps[^1]:N0}" + " |");
        Console.WriteLine("|---|---|" + string.Concat(steps.Select(_ => "---:|")) + "---:|---:|");
        foreach (var c in rows.Keys.Select(k => k.Item1).Distinct().OrderBy(c => c))
        {
            var sched = Compositions.Ours(c);
            string cf = sched.IsClosedForm ? "yes" : $"to step {sched.ClosedFormHorizon:N0}, then cached run";
            string Ns(int s) => rows.TryGetValue((c, s), out var v) ? v.Ns.ToString(v.Ns < 100 ? "0.0" : "0", Inv) : "-";
            double bytes = steps.Select(s => rows.TryGetValue((c, s), out var v) ? v.Bytes : 0).Max();
            string first = LrBenchmarks.FirstCallMs.TryGetValue((c, steps[^1]), out var ms) ? (ms < 1 ? $"{ms * 1000:0.0} µs" : $"{ms:N0} ms") : "-";
            Console.WriteLine($"| {Compositions.Describe(c)} | {cf} | {string.Join(" | ", steps.Select(Ns))} | {bytes.ToString("0.###", Inv)} | {first} |");
        }
        return 0;
    }

    static bool _warmed;

    /// <summary>
    /// Called from StepBenchmarks' [GlobalSetup], once per process (in-process: once for the whole suite; out of
    /// process: in each case's process). Every benchmark case shares one JIT: without this, the first cases would time tier-0 code (tiered
    /// compilation promotes hot methods in the background, after a delay). Step every rig kind for a while and give
    /// the background compiler time, so all cases measure the steady-state (tier-1) code a long training run gets.
    /// </summary>
    public static void PreWarm()
    {
        if (_warmed) return;
        _warmed = true;
        var sw = Stopwatch.StartNew();
        for (int round = 0; round < 3; round++)
        {
            foreach (var c in Enum.GetValues<Composition>())
            {
                var mem = new OursInMemoryRig(c);
                for (int i = 0; i < 50_000; i++) mem.Scheduler.Step();
                using (var t = new OursTorchRig(c)) for (int i = 0; i < 20_000; i++) t.Scheduler.Step();
                using (var ts = new TorchSharpRig(c)) for (int i = 0; i < 20_000; i++) ts.Step();
                // The benchmark methods themselves too: BenchmarkDotNet's warm-up calls each far fewer than the 30
                // times tiered compilation waits for, so the first case of each method would run tier-0 code.
                var b = new StepBenchmarks { Composition = c, StartStep = 1_000 };
                for (int i = 0; i < 40; i++)
                {
                    b.SetupMem(); b.Ours_InMemory();
                    b.SetupTorch(); b.Ours_TorchSharpGroups();
                    b.SetupTs(); b.TorchSharp_Own();
                }
                b.Cleanup();
            }
            Thread.Sleep(300);
        }
        Console.WriteLine($"// pre-warm (tiered JIT) done in {sw.Elapsed.TotalSeconds:0.0} s");
    }

    record struct Key(Composition Comp, int Start, string Method);
    record struct Cell(double NsPerStep, double BytesPerStep);

    static Dictionary<(Composition Comp, int Start), Dictionary<string, Cell>> Collect(IEnumerable<Summary> summaries)
    {
        var d = new Dictionary<(Composition, int), Dictionary<string, Cell>>();
        foreach (var s in summaries)
            foreach (var r in s.Reports)
            {
                var b = r.BenchmarkCase;
                var comp = (Composition)b.Parameters[nameof(StepBenchmarks.Composition)];
                var start = (int)b.Parameters[nameof(StepBenchmarks.StartStep)];
                var method = b.Descriptor.WorkloadMethod.Name;
                double ns = r.ResultStatistics?.Median ?? double.NaN;
                double bytes = r.GcStats.GetBytesAllocatedPerOperation(b) ?? double.NaN;
                if (!d.TryGetValue((comp, start), out var m)) d[(comp, start)] = m = [];
                m[method] = new Cell(ns, bytes);
            }
        return d;
    }

    /// <summary>Bytes this thread allocates over 100,000 steps of our scheduler, after 1,000 steps (BenchmarkDotNet's
    /// figure is process-wide, so a stray allocation on another thread can show there as "1 B").</summary>
    static long AllocatedOverSteps(Composition c, bool torchGroups)
    {
        OursTorchRig? t = torchGroups ? new OursTorchRig(c) : null;
        var s = t?.Scheduler ?? new OursInMemoryRig(c).Scheduler;
        try
        {
            for (int i = 0; i < 1_000; i++) s.Step();
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 100_000; i++) s.Step();
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }
        finally { t?.Dispose(); }
    }

    /// <summary>Steps ours (in memory) and TorchSharp's own schedulers side by side; reports where they part.</summary>
    static string CompareWithTorchSharp(Composition c, int steps)
    {
        try
        {
            var ours = new OursInMemoryRig(c);
            using var ts = new TorchSharpRig(c);
            if (!Close(ours.Lr, ts.Lr)) return $"DIFFERS after construction: ours {ours.Lr:R}, TorchSharp {ts.Lr:R}";
            for (int k = 1; k <= steps; k++)
            {
                ours.Scheduler.Step(); ts.Step();
                if (!Close(ours.Lr, ts.Lr)) return $"DIFFERS from step {k}: ours {ours.Lr:R}, TorchSharp {ts.Lr:R}";
            }
            return $"same rates (rel. 1e-9) for {steps} steps";
        }
        catch (Exception e)
        {
            return $"FAILS: {e.GetType().Name}: {e.Message.Split('\n')[0]}";
        }
    }

    static bool Close(double a, double b) => Math.Abs(a - b) <= 1e-9 * Math.Max(Math.Abs(a), Math.Abs(b));

    static (Dictionary<(Composition, int), double>, string) RunPyTorch(string python, List<Composition> comps, List<int> starts)
    {
        var d = new Dictionary<(Composition, int), double>();
        var script = Path.Combine(AppContext.BaseDirectory, "pytorch_step_bench.py");
        var psi = new ProcessStartInfo(python)
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { script, "--compositions", string.Join(",", comps.Select(Compositions.PyKey)),
                     "--starts", string.Join(",", starts), "--steps-per-rep", (StepBenchmarks.StepsPerInvoke * InvocationsPerIteration).ToString(Inv),
                     "--reps", IterationCount.ToString(Inv), "--warmup", "3" })
            psi.ArgumentList.Add(a);
        Console.WriteLine();
        Console.WriteLine($"// PyTorch: {python} {string.Join(" ", psi.ArgumentList)}");
        try
        {
            using var p = Process.Start(psi)!;
            var json = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0) return (d, $"failed (exit {p.ExitCode})");
            using var doc = JsonDocument.Parse(json);
            foreach (var r in doc.RootElement.GetProperty("results").EnumerateArray())
            {
                var comp = Enum.Parse<Composition>(r.GetProperty("composition").GetString()!);
                d[(comp, r.GetProperty("start_step").GetInt32())] = r.GetProperty("ns_per_step").GetDouble();
            }
            return (d, "torch " + doc.RootElement.GetProperty("torch").GetString() + ", Python " + doc.RootElement.GetProperty("python").GetString());
        }
        catch (Exception e)
        {
            return (d, $"failed ({e.Message})");
        }
    }

    static void PrintSummary(Dictionary<(Composition Comp, int Start), Dictionary<string, Cell>> ours,
        Dictionary<(Composition, int), double> py, string pyVersion, Dictionary<Composition, string> expressible,
        List<Composition> comps, List<int> starts)
    {
        static string Ns(double v) => double.IsNaN(v) ? "-" : v.ToString(v < 100 ? "0.0" : "0", Inv);
        static string B(double v) => double.IsNaN(v) ? "-" : v.ToString("0.###", Inv);
        static string R(double a, double b) => double.IsNaN(a) || double.IsNaN(b) || b == 0 ? "-" : (a / b).ToString(a / b < 10 ? "0.0" : "0", Inv) + "x";
        Cell Get(Composition c, int s, string m) =>
            ours.TryGetValue((c, s), out var d) && d.TryGetValue(m, out var cell) ? cell : new Cell(double.NaN, double.NaN);

        Console.WriteLine();
        Console.WriteLine("## scheduler.step(): ns per step (medians), bytes allocated per step — one run");
        Console.WriteLine($"// machine: {Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}; PyTorch: {pyVersion}");
        Console.WriteLine();
        Console.WriteLine("| Composition | Start step | Ours ns/step | Ours B/step | Ours+TorchSharpParamGroups ns/step (B/step) | TorchSharp ns/step (B/step) | PyTorch ns/step | TorchSharp/ours | PyTorch/ours |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var c in comps)
            foreach (var s in starts)
            {
                var o = Get(c, s, nameof(StepBenchmarks.Ours_InMemory));
                var ot = Get(c, s, nameof(StepBenchmarks.Ours_TorchSharpGroups));
                var t = Get(c, s, nameof(StepBenchmarks.TorchSharp_Own));
                var tsOk = expressible.TryGetValue(c, out var e) && e.StartsWith("same", StringComparison.Ordinal);
                var tsNs = tsOk ? t.NsPerStep : double.NaN;
                var p = py.TryGetValue((c, s), out var v) ? v : double.NaN;
                var tsText = tsOk ? $"{Ns(t.NsPerStep)} ({B(t.BytesPerStep)})" : double.IsNaN(t.NsPerStep) ? "-" : $"({Ns(t.NsPerStep)}, rates differ)";
                Console.WriteLine($"| {Compositions.Describe(c)} | {s:N0} | {Ns(o.NsPerStep)} | {B(o.BytesPerStep)} | {Ns(ot.NsPerStep)} ({B(ot.BytesPerStep)}) | {tsText} | {Ns(p)} | {R(tsNs, o.NsPerStep)} | {R(p, o.NsPerStep)} |");
            }
        Console.WriteLine();
        Console.WriteLine("// O(1): ours at start 1e6 / at start 1e3 (1.0 = same cost per step):");
        if (starts.Count >= 2)
            foreach (var c in comps)
            {
                var lo = Get(c, starts[0], nameof(StepBenchmarks.Ours_InMemory)).NsPerStep;
                var hi = Get(c, starts[^1], nameof(StepBenchmarks.Ours_InMemory)).NsPerStep;
                Console.WriteLine($"//   {Compositions.Describe(c),-32} {(hi / lo).ToString("0.00", Inv)}");
            }
    }
}
