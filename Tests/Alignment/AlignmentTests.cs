using Expecto;
using Tests.Harness;
using Trainer.LrTools;

namespace Tests.Alignment;

/// <summary>
/// Issues #4, #14: the C# trainer against the PyTorch reference, step by step, through <c>reference/align.sh CASE</c> (one
/// test per case of reference/align_cases.txt tagged <c>ci</c>, run one after another: each case is C# with DP threads,
/// then PyTorch under torchrun (or a single process, or, for a <c>golden=ID</c> case, the PyTorch 2.11 trace)).
/// The C# side is the Trainer.dll next to this test assembly (the Tests project references Trainer).
/// </summary>
public static class AlignmentTests
{
    /// <summary>One line of reference/align_cases.txt: <c>NAME MODEL [TAG...] FLAGS...</c> (tags: ci, dp=N, golden=ID).</summary>
    internal sealed record AlignCase(string Name, string Model, string[] Tags, string[] Flags)
    {
        public bool InCi => Tags.Contains("ci");
    }

    /// <summary>The COMMON flags and every case of reference/align_cases.txt, in file order (the format align.sh reads).</summary>
    internal static (string[] Common, AlignCase[] Cases) ReadCases()
    {
        var root = Scripts.RepoRoot();
        var common = Array.Empty<string>();
        var cases = new List<AlignCase>();
        foreach (var raw in File.ReadLines(System.IO.Path.Combine(root, "reference", "align_cases.txt")))
        {
            var w = raw.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (w.Length == 0 || w[0].StartsWith('#')) continue;
            if (w[0] == "COMMON") { common = w[1..]; continue; }
            int firstFlag = Array.FindIndex(w, 2, x => x.StartsWith("--"));
            if (firstFlag < 0) firstFlag = w.Length;
            cases.Add(new AlignCase(w[0], w[1], w[2..firstFlag], w[firstFlag..]));
        }
        return (common, cases.ToArray());
    }

    /// <summary>The cases CI runs: those tagged <c>ci</c> (the full list runs outside CI: <c>reference/align.sh</c>).</summary>
    internal static string[] CiCaseNames() => ReadCases().Cases.Where(c => c.InCi).Select(c => c.Name).ToArray();

    /// <summary>What a case's schedule exercises: the torch class names in its JSON tree (as the trainer builds it from the
    /// case's flags), plus <c>CyclicLR/MODE</c> and <c>OneCycleLR/linear|cos|three_phase</c>, plus the --lr_scheduler kind.</summary>
    internal static HashSet<string> Exercised(string[] common, AlignCase c)
    {
        var f = new Trainer.Cli.FlagSet("align case", "");
        Trainer.Cli.SchedulerFlags.Define(f);
        f.Double("learning_rate", 1e-2, "").Int("num_iteration", 10, "");
        bool Known(string a) => f.Definitions.Any(d => d.Aliases.Prepend(d.Name).Contains(
            Trainer.Cli.FlagSet.Normalize(a.TrimStart('-').Split('=')[0]).TrimStart('_')));
        var v = f.Parse(common.Concat(c.Flags).Where(a => Known(a) || (a.StartsWith("--no") && Known("--" + a[4..]))).ToArray());
        var flags = Trainer.Cli.SchedulerFlags.Read(v);
        var schedule = Trainer.Cli.SchedulerFlags.FromFlags(flags, v.GetDouble("learning_rate"), v.GetInt32("num_iteration"));
        var seen = new HashSet<string>();
        if (!v.IsSet("lr_schedule")) seen.Add("kind:" + v.GetString("lr_scheduler"));
        if (schedule is null) return seen;
        void Walk(System.Text.Json.JsonElement e)
        {
            if (e.ValueKind == System.Text.Json.JsonValueKind.Array) { foreach (var x in e.EnumerateArray()) Walk(x); return; }
            if (e.ValueKind != System.Text.Json.JsonValueKind.Object) return;
            if (e.TryGetProperty("type", out var t))
            {
                var type = t.GetString()!;
                seen.Add(type);
                if (type == "CyclicLR") seen.Add("CyclicLR/" + (e.TryGetProperty("mode", out var m) ? m.GetString() : "triangular"));
                if (type == "OneCycleLR")
                    seen.Add("OneCycleLR/" + (e.TryGetProperty("three_phase", out var tp) && tp.GetBoolean() ? "three_phase"
                        : e.TryGetProperty("anneal_strategy", out var a) ? a.GetString() : "cos"));
            }
            foreach (var p in e.EnumerateObject()) Walk(p.Value);
        }
        using var doc = System.Text.Json.JsonDocument.Parse(Schedules.Core.ScheduleJson.Write(schedule));
        Walk(doc.RootElement);
        return seen;
    }

    /// <summary>Every class, CyclicLR mode and OneCycleLR shape the library implements (issue 14).</summary>
    internal static readonly string[] EveryClass =
    [
        "ConstantLR", "LinearLR", "StepLR", "MultiStepLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts", "CyclicLR/triangular", "CyclicLR/triangular2", "CyclicLR/exp_range",
        "OneCycleLR/linear", "OneCycleLR/cos", "OneCycleLR/three_phase", "MultiplicativeLR", "ReduceLROnPlateau",
        "LambdaLR", "SequentialLR", "ChainedScheduler",
    ];

    static readonly string OutDir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"lrs-align-{Environment.ProcessId}");

    static void RunCase(string name)
    {
        Must.True(File.Exists("/usr/bin/python3"), "/usr/bin/python3 with torch is needed (apt-get install python3-torch)");
        var (exit, output) = Scripts.Run("align.sh", ["-o", OutDir, name], TimeSpan.FromMinutes(10));
        if (exit != 0)
            throw new Exception($"align.sh {name} exited {exit} (logs in {OutDir}/{name})\n{Scripts.Tail(output)}");
        Must.Contains(output, "-> PASS", $"align.sh {name} summary");
        // Logs stay for a failed case (the message names them); a passing case cleans up after itself.
        try { Directory.Delete(System.IO.Path.Combine(OutDir, name), recursive: true); } catch (IOException) { }
    }

    /// <summary>CI runs the <c>ci</c> cases only (a few minutes on 2 cores); <c>reference/align.sh</c> alone runs all.</summary>
    [Tests]
    public static Test Cases => Spec.Sequenced(Spec.List("alignment.csharp-vs-pytorch",
        CiCaseNames().Select(n => Spec.Case(n, () => RunCase(n)))));

    [Tests]
    public static Test Coverage => Spec.List("alignment.cases",
        Spec.Case("the CI subset touches every scheduler class, CyclicLR mode and OneCycleLR shape", () =>
        {
            var (common, cases) = ReadCases();
            var seen = cases.Where(c => c.InCi).SelectMany(c => Exercised(common, c)).ToHashSet();
            var missing = EveryClass.Where(k => !seen.Contains(k)).ToArray();
            Must.True(missing.Length == 0, "CI cases miss: " + string.Join(", ", missing));
        }),
        Spec.Case("the full list has every --lr_scheduler kind and every class; SGD, Adam and AdamW; DP 1, 2 and 8; both models", () =>
        {
            var (common, cases) = ReadCases();
            var seen = cases.SelectMany(c => Exercised(common, c)).ToHashSet();
            var missing = EveryClass.Concat(Trainer.Cli.SchedulerFlags.Kinds.Select(k => "kind:" + k)).Where(k => !seen.Contains(k)).ToArray();
            Must.True(missing.Length == 0, "the full list misses: " + string.Join(", ", missing));
            string Last(AlignCase c, string flag, string dflt) =>
                common.Concat(c.Flags).LastOrDefault(a => a.StartsWith(flag + "="))?[(flag.Length + 1)..] ?? dflt;
            var opts = cases.Select(c => Last(c, "--optimizer", "adamw")).ToHashSet();
            Must.True(opts.SetEquals(["sgd", "adam", "adamw"]), "optimizers: " + string.Join(",", opts));
            Must.True(cases.Where(c => Last(c, "--optimizer", "adamw") == "sgd").All(c => double.Parse(Last(c, "--momentum", "0"), System.Globalization.CultureInfo.InvariantCulture) > 0),
                "every SGD case has momentum");
            var dps = cases.Select(c => c.Tags.FirstOrDefault(t => t.StartsWith("dp="))?[3..] ?? "8").ToHashSet();
            Must.True(dps.IsSupersetOf(["1", "2", "8"]), "DP degrees: " + string.Join(",", dps));
            Must.True(cases.Select(c => c.Model).ToHashSet().SetEquals(["gpt2", "llama3"]), "models");
            var dup = cases.GroupBy(c => c.Name).FirstOrDefault(g => g.Count() > 1);
            Must.True(dup is null, $"case {dup?.Key} defined twice");
        }));

    [Tests]
    public static Test PlotLogs => Spec.List("alignment.plot-logs",
        Spec.Case("reads --log_json lines (lr list, lrs, number) and draws a PNG of three panels", () =>
        {
            var dir = Directory.CreateTempSubdirectory("plotlogs").FullName;
            try
            {
                var a = System.IO.Path.Combine(dir, "a.jsonl");
                var b = System.IO.Path.Combine(dir, "b.jsonl");
                File.WriteAllLines(a, Enumerable.Range(1, 5).Select(k => FormattableString.Invariant($"{{\"step\":{k},\"loss\":{10 - 0.1 * k},\"lr\":[{1e-3 / k}],\"ms\":1}}")));
                File.WriteAllLines(b, Enumerable.Range(1, 5).Select(k => FormattableString.Invariant($"{{\"step\": {k}, \"loss\": {10 - 0.1 * k + 1e-6}, \"lrs\": {1e-3 / k}}}")));
                Must.Equal(PlotLogsCommand.ReadLog(b)[2], new PlotLogsCommand.LogRow(3, 10 - 0.3 + 1e-6, 1e-3 / 3), "row of a log with lrs");
                var png = System.IO.Path.Combine(dir, "x.png");
                var (exit, _, err) = TestData.Capture(() => PlotLogsCommand.Run([a, b, "--labels=C#,PyTorch", "--title=t", $"--output={png}", "--width=400", "--height=200"], Console.Out, Console.Error));
                Must.Equal(exit, 0, "exit code: " + err);
                var bytes = File.ReadAllBytes(png);
                Must.True(bytes.Length > 100 && bytes[1] == (byte)'P' && bytes[2] == (byte)'N' && bytes[3] == (byte)'G', "PNG signature");
                int w = (bytes[16] << 24) | (bytes[17] << 16) | (bytes[18] << 8) | bytes[19];
                int h = (bytes[20] << 24) | (bytes[21] << 16) | (bytes[22] << 8) | bytes[23];
                Must.Equal((w, h), (400, 600), "PNG size: 3 panels of 400x200");
                File.WriteAllText(b, "{\"step\":1}\n");
                var (exit2, _, err2) = TestData.Capture(() => PlotLogsCommand.Run([a, b, $"--output={png}"], Console.Out, Console.Error));
                Must.Equal(exit2, 2, "exit code for a bad log");
                Must.Contains(err2, "b.jsonl:1", "error names the line");
            }
            finally { Directory.Delete(dir, true); }
        }));
}
