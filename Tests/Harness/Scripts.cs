using System.Diagnostics;
using System.Text;

namespace Tests.Harness;

/// <summary>Runs the repository's reference scripts (reference/*.sh) with the Trainer.dll built next to the tests.</summary>
public static class Scripts
{
    /// <summary>The repository root: the first folder above the test binaries that holds reference/.</summary>
    public static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (Directory.Exists(Path.Combine(d.FullName, "reference")) && File.Exists(Path.Combine(d.FullName, "reference", "align.sh"))) return d.FullName;
        throw new InvalidOperationException("reference/align.sh not found above " + AppContext.BaseDirectory);
    }

    /// <summary>The Trainer.dll copied next to the tests (what the scripts run through CS_TRAINER).</summary>
    public static string TrainerDll()
    {
        var trainer = Path.Combine(AppContext.BaseDirectory, "Trainer.dll");
        Must.True(File.Exists(trainer), $"Trainer.dll not next to the tests ({trainer})");
        return trainer;
    }

    /// <summary>Runs <c>bash reference/SCRIPT args</c> from the repository root with CS_TRAINER set; returns the exit
    /// code and everything it printed. Killed (and reported) after <paramref name="timeout"/>.</summary>
    public static (int ExitCode, string Output) Run(string script, IEnumerable<string> args, TimeSpan timeout)
    {
        var root = RepoRoot();
        var psi = new ProcessStartInfo("bash")
        {
            WorkingDirectory = root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(root, "reference", script));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["CS_TRAINER"] = $"dotnet {TrainerDll()}";
        var output = new StringBuilder();
        using var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(timeout))
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw new Exception($"{script} {string.Join(" ", args)}: no result after {timeout.TotalMinutes:F0} minutes\n{Tail(output.ToString())}");
        }
        p.WaitForExit();
        lock (output) return (p.ExitCode, output.ToString());
    }

    public static string Tail(string s, int lines = 40)
    {
        var all = s.Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }
}
