using System.Diagnostics;
using Expecto;
using Tests.Harness;
using Trainer.LrTools;

namespace Tests.Alignment;

/// <summary>
/// Issue #4: the C# trainer against the PyTorch reference, step by step, through <c>reference/align.sh CASE</c> (one test
/// per case of reference/align_cases.txt, run one after another: each case is C# DP=8 then torchrun x8 on the CPUs).
/// The C# side is the Trainer.dll next to this test assembly (the Tests project references Trainer).
/// </summary>
public static class AlignmentTests
{
    /// <summary>The repository root: the first folder above the test assembly that holds reference/align.sh.</summary>
    internal static string? RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(System.IO.Path.Combine(d.FullName, "reference", "align.sh"))) return d.FullName;
        return null;
    }

    /// <summary>The case names (first word of every line of reference/align_cases.txt that is not a comment or COMMON).</summary>
    internal static string[] CaseNames()
    {
        var root = RepoRoot() ?? throw new InvalidOperationException("reference/align.sh not found above " + AppContext.BaseDirectory);
        return File.ReadLines(System.IO.Path.Combine(root, "reference", "align_cases.txt"))
            .Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#') && !l.StartsWith("COMMON"))
            .Select(l => l.Split((char[]?)null, 2, StringSplitOptions.RemoveEmptyEntries)[0])
            .ToArray();
    }

    static readonly string OutDir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"lrs-align-{Environment.ProcessId}");

    static void RunCase(string name)
    {
        var root = RepoRoot()!;
        var trainer = System.IO.Path.Combine(AppContext.BaseDirectory, "Trainer.dll");
        Must.True(File.Exists(trainer), $"Trainer.dll not next to the tests ({trainer})");
        Must.True(File.Exists("/usr/bin/python3"), "/usr/bin/python3 with torch is needed (apt-get install python3-torch)");
        var psi = new ProcessStartInfo("bash")
        {
            WorkingDirectory = root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { System.IO.Path.Combine(root, "reference", "align.sh"), "-o", OutDir, name }) psi.ArgumentList.Add(a);
        psi.Environment["CS_TRAINER"] = $"dotnet {trainer}";
        var output = new System.Text.StringBuilder();
        using var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw new Exception($"align.sh {name}: no result after 10 minutes\n{Tail(output)}");
        }
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new Exception($"align.sh {name} exited {p.ExitCode} (logs in {OutDir}/{name})\n{Tail(output)}");
        string text;
        lock (output) text = output.ToString();
        Must.Contains(text, "-> PASS", $"align.sh {name} summary");
        // Logs stay for a failed case (the message names them); a passing case cleans up after itself.
        try { Directory.Delete(System.IO.Path.Combine(OutDir, name), recursive: true); } catch (IOException) { }
    }

    static string Tail(System.Text.StringBuilder sb)
    {
        string s;
        lock (sb) s = sb.ToString();
        var lines = s.Split('\n');
        return string.Join('\n', lines.Skip(Math.Max(0, lines.Length - 40)));
    }

    [Tests]
    public static Test Cases => Spec.Sequenced(Spec.List("alignment.csharp-vs-pytorch",
        CaseNames().Select(n => Spec.Case(n, () => RunCase(n)))));

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
