using System.Globalization;
using System.Runtime.InteropServices;

namespace Trainer.Training;

/// <summary>
/// The C heap under libtorch's CPU tensors (issue #15). glibc's malloc serves a block of 32 MB or more (the logits,
/// the embedding's gradient, AdamW's temporaries of it: GPT-2 124M has many) with a fresh mmap and unmaps it on free,
/// and trims the heap top back to the OS past 128 KB; so every step mapped ~1.3 GB anew and the kernel zeroed it page
/// by page (~330,000 minor page faults per step at B=4, T=64). A training step allocates the same sizes every time,
/// so the trainer keeps what it frees instead, as llm.c's preallocated buffers do: no mmap for large blocks
/// (<c>M_MMAP_MAX</c> 0: they come from the heap) and no trimming. The resident size stays at the step's peak.
/// <para>Two of the settings can only come from the environment at process start (<see cref="Tunables"/>), so
/// <c>train</c> re-executes itself with them (<see cref="ReexecWithTunables"/>): one arena, and a trim threshold
/// beyond <c>mallopt</c>'s int (2 GiB; GPT-2 124M at DP 2 frees more than that at the end of a step).</para>
/// </summary>
public static class NativeHeap
{
    const int M_TRIM_THRESHOLD = -1, M_MMAP_MAX = -4;   // glibc malloc.h

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int MallOpt(int param, int value);

    /// <summary>Applies the settings once per process; returns a description for the log, or null where the C library
    /// is not glibc (or the call failed): nothing changed then.</summary>
    public static string? KeepFreedMemory()
    {
        lock (Gate)
        {
            if (_applied is { } done) return done.Length == 0 ? null : done;
            string result = "";
            if (OperatingSystem.IsLinux())
            {
                try
                {
                    // mallopt would lower a trim threshold set by the tunable to its int's 2 GiB.
                    bool trimTuned = (TunablesInEffect ?? "").Contains("glibc.malloc.trim_threshold=");
                    if (MallOpt(M_MMAP_MAX, 0) == 1 && (trimTuned || MallOpt(M_TRIM_THRESHOLD, int.MaxValue) == 1))
                        result = "glibc malloc keeps freed memory (M_MMAP_MAX=0, " +
                            (trimTuned ? "trim threshold from GLIBC_TUNABLES" : "M_TRIM_THRESHOLD=2 GiB") + ")" +
                            (TunablesInEffect is { } t ? $"; GLIBC_TUNABLES={t}" : "");
                }
                catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
            }
            _applied = result;
            return result.Length == 0 ? null : result;
        }
    }

    static readonly object Gate = new();
    static string? _applied;

    /// <summary>
    /// One arena, the main one, for every thread: rank threads (and libgomp's workers) would each get an arena of their
    /// own, whose heaps hold at most 64 MB: a larger block is mapped by mmap whatever <c>M_MMAP_MAX</c> says, and a heap
    /// emptied at the end of a step is unmapped, trim threshold or not (gpt2-tiny at DP 4 on threads: 19,000-31,000
    /// minor faults a step; ~50 with one arena). glibc fixes its arena limit once a few arenas exist, which a .NET
    /// process has before Main, so <c>mallopt(M_ARENA_MAX)</c> comes too late. And a trim threshold of 1 PiB: never.
    /// </summary>
    public const string Tunables = "glibc.malloc.arena_max=1:glibc.malloc.trim_threshold=1125899906842624";

    [DllImport("libc", EntryPoint = "execve", SetLastError = true)]
    static extern int ExecVe(string path, string?[] argv, string?[] envp);

    [DllImport("libc", EntryPoint = "gnu_get_libc_version")]
    static extern IntPtr GnuLibcVersion();

    /// <summary>GLIBC_TUNABLES where it sets malloc's arenas or trimming (<see cref="Tunables"/>, or the user's own);
    /// null otherwise.</summary>
    public static string? TunablesInEffect => Environment.GetEnvironmentVariable("GLIBC_TUNABLES") is { } t
        && (t.Contains("glibc.malloc.arena_max=") || t.Contains("glibc.malloc.trim_threshold=")) ? t : null;

    /// <summary>
    /// Re-executes this process's command line (same process id, so mpirun's bookkeeping holds) with
    /// <see cref="Tunables"/> added to GLIBC_TUNABLES, once, first thing in Main. It does nothing off glibc, where the
    /// user already set malloc's arenas or trimming there, or where exec fails (the run goes on as before).
    /// </summary>
    public static void ReexecWithTunables()
    {
        if (!OperatingSystem.IsLinux() || TunablesInEffect is not null) return;
        try
        {
            if (GnuLibcVersion() == IntPtr.Zero) return;
            var argv = File.ReadAllText("/proc/self/cmdline").TrimEnd('\0').Split('\0');
            if (argv.Length < 1 || argv[0].Length == 0) return;
            string? tunables = Environment.GetEnvironmentVariable("GLIBC_TUNABLES");
            var env = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
                .Where(e => (string)e.Key != "GLIBC_TUNABLES").Select(e => $"{e.Key}={e.Value}")
                .Append($"GLIBC_TUNABLES={(string.IsNullOrEmpty(tunables) ? "" : tunables + ":")}{Tunables}");
            ExecVe("/proc/self/exe", [.. argv, null], [.. env, null]);   // returns only on failure
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or IOException or UnauthorizedAccessException) { }
    }

    /// <summary>Minor page faults of this process so far (/proc/self/stat field 10), or null off Linux.</summary>
    public static long? MinorFaults()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            string stat = File.ReadAllText("/proc/self/stat");
            // The fields after "(comm)": state is field 3, minflt field 10.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[7], CultureInfo.InvariantCulture);
        }
        catch (IOException) { return null; }
    }
}
