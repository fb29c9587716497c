using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;

namespace Tests.Oracle;

/// <summary>The oracle could not be started or did not answer properly (not a disagreement about a case).</summary>
public sealed class OracleUnavailableException(string message) : Exception(message);

/// <summary>
/// Real PyTorch as a long-lived subprocess (<c>torch_oracle.py</c> under Debian's /usr/bin/python3): cases go in as
/// JSON lines, PyTorch's traces come back as JSON lines. Started once, pipelined (a reader thread drains stdout so a
/// batch of any size cannot dead-lock), every answer awaited with a timeout.
/// </summary>
public sealed class TorchOracle : IDisposable
{
    /// <summary>Debian's own interpreter: the one python3-torch installs for (the python3 first on PATH may be another).</summary>
    public const string DefaultPython = "/usr/bin/python3";
    public const string InstallHint = "install PyTorch for Debian's python3: `apt-get install python3-torch` (CI does this)";

    readonly Process _process;
    readonly BlockingCollection<string> _lines = new();
    readonly StringBuilder _stderr = new();
    readonly Thread _reader;
    readonly TimeSpan _timeout;

    public string TorchVersion { get; }

    public static string ScriptPath => Path.Combine(AppContext.BaseDirectory, "Oracle", "torch_oracle.py");

    TorchOracle(Process process, TimeSpan timeout)
    {
        _process = process;
        _timeout = timeout;
        _reader = new Thread(ReadStdout) { IsBackground = true, Name = "torch-oracle stdout" };
        _reader.Start();
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_stderr) { if (_stderr.Length < 64_000) _stderr.AppendLine(e.Data); }
        };
        _process.BeginErrorReadLine();

        var hello = Next(TimeSpan.FromSeconds(Math.Max(60, timeout.TotalSeconds)), "the start-up greeting");
        JsonObject? h = null;
        try { h = JsonNode.Parse(hello) as JsonObject; } catch (System.Text.Json.JsonException) { }
        if (h is null || h["ready"]?.GetValue<bool>() != true)
            throw Fail($"PyTorch could not be imported by {DefaultPython}: {(string?)h?["error"] ?? hello}. To fix: {InstallHint}");
        TorchVersion = (string?)h["torch"] ?? "?";
    }

    /// <summary>Starts the oracle; throws <see cref="OracleUnavailableException"/> saying what to install when it cannot.</summary>
    public static TorchOracle Start(TimeSpan? answerTimeout = null, string python = DefaultPython, string? script = null)
    {
        script ??= ScriptPath;
        if (!File.Exists(python))
            throw new OracleUnavailableException($"{python} does not exist: the PyTorch oracle needs Debian's python3 with torch; {InstallHint}");
        if (!File.Exists(script))
            throw new OracleUnavailableException($"oracle script not found at {script} (is it copied to the test output by Tests.csproj?)");
        var psi = new ProcessStartInfo(python)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        psi.ArgumentList.Add("-u");
        psi.ArgumentList.Add(script);
        // One thread is plenty for scalar tensors, and CI has 2 cores.
        psi.Environment["OMP_NUM_THREADS"] = "1";
        psi.Environment["MKL_NUM_THREADS"] = "1";
        psi.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        psi.Environment.Remove("PYTHONPATH");
        psi.Environment.Remove("PYTHONHOME");
        Process p;
        try { p = Process.Start(psi) ?? throw new OracleUnavailableException($"could not start {python}"); }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new OracleUnavailableException($"could not start {python}: {e.Message}; {InstallHint}");
        }
        p.StandardInput.AutoFlush = false;
        try { return new TorchOracle(p, answerTimeout ?? TimeSpan.FromSeconds(60)); }
        catch { try { p.Kill(); } catch (InvalidOperationException) { } p.Dispose(); throw; }
    }

    void ReadStdout()
    {
        try
        {
            while (_process.StandardOutput.ReadLine() is { } line) _lines.Add(line);
        }
        catch (Exception) { /* the process went away; Next() reports it */ }
        finally { _lines.CompleteAdding(); }
    }

    string Next(TimeSpan timeout, string what)
    {
        try
        {
            if (_lines.TryTake(out var line, timeout)) return line;
        }
        catch (InvalidOperationException) { /* completed: the process exited */ }
        if (_lines.IsCompleted || _process.HasExited)
            throw Fail($"the oracle process exited (code {ExitCode()}) while waiting for {what}");
        throw Fail($"no answer from the oracle within {timeout.TotalSeconds:0} s while waiting for {what}");
    }

    string ExitCode()
    {
        try { return _process.WaitForExit(2000) ? _process.ExitCode.ToString() : "still running"; }
        catch (InvalidOperationException) { return "?"; }
    }

    OracleUnavailableException Fail(string why)
    {
        string err;
        lock (_stderr) err = _stderr.ToString().Trim();
        return new OracleUnavailableException(why + (err.Length > 0 ? "\n--- oracle stderr ---\n" + err : ""));
    }

    /// <summary>PyTorch's answer to one case.</summary>
    public JsonObject Ask(JsonObject @case) => AskAll([@case])[0];

    /// <summary>
    /// PyTorch's answers to many cases, in order: all are written while a thread reads the answers, each answer awaited
    /// with the timeout. An answer with another id, or one the oracle itself could not produce, is an error.
    /// </summary>
    public IReadOnlyList<JsonObject> AskAll(IReadOnlyList<JsonObject> cases)
    {
        var writer = Task.Run(() =>
        {
            foreach (var c in cases) _process.StandardInput.WriteLine(Request(c).ToJsonString());
            _process.StandardInput.Flush();
        });
        var answers = new List<JsonObject>(cases.Count);
        foreach (var c in cases)
        {
            string id = (string?)c["id"] ?? "?";
            if (writer.IsFaulted) throw Fail($"could not send cases to the oracle: {writer.Exception!.GetBaseException().Message}");
            var line = Next(_timeout, $"the answer to case {id}");
            JsonObject a;
            try { a = JsonNode.Parse(line) as JsonObject ?? throw new FormatException("not an object"); }
            catch (Exception e) when (e is System.Text.Json.JsonException or FormatException)
            {
                throw Fail($"the oracle wrote a line that is not a JSON object ({e.Message}): {Short(line)}");
            }
            if ((string?)a["id"] != id) throw Fail($"answer out of order: expected case {id}, got {Short(line)}");
            if (a["oracle_error"] is { } oe) throw Fail($"the oracle could not run case {id}: {oe}\ncase: {c.ToJsonString()}");
            answers.Add(a);
        }
        writer.Wait();
        return answers;
    }

    /// <summary>Only the input fields go to PyTorch.</summary>
    static JsonObject Request(JsonObject c)
    {
        var r = new JsonObject();
        foreach (var k in new[] { "id", "lrs", "steps", "scheduler", "metrics", "resume_at" })
            if (c[k] is { } v) r[k] = v.DeepClone();
        return r;
    }

    static string Short(string s) => s.Length <= 300 ? s : s[..300] + "...";

    public void Dispose()
    {
        try
        {
            _process.StandardInput.Close(); // the oracle ends at end of input
            if (!_process.WaitForExit(5000)) _process.Kill();
        }
        catch (Exception e) when (e is InvalidOperationException or IOException) { }
        _process.Dispose();
    }
}
