using System.Globalization;
using System.Runtime.InteropServices;

namespace Trainer.Training;

/// <summary>
/// The C heap under libtorch's CPU tensors (issue #15). glibc's malloc serves a block of 32 MB or more (the logits,
/// the embedding's gradient, AdamW's temporaries of it: GPT-2 124M has many) with a fresh mmap and unmaps it on free,
/// and trims the heap top back to the OS past 128 KB; so every step mapped ~1.3 GB anew and the kernel zeroed it page
/// by page (~330,000 minor page faults per step at B=4, T=64). A training step allocates the same sizes every time,
/// so the trainer keeps what it frees instead, as llm.c's preallocated buffers do: no mmap for large blocks
/// (<c>M_MMAP_MAX</c> 0: they come from the heap) and no trimming (<c>M_TRIM_THRESHOLD</c> 2 GiB). The resident size
/// stays at the step's peak. Threads other than the main one share that heap only with one arena
/// (<see cref="ReexecWithOneArena"/>).
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
                    if (MallOpt(M_MMAP_MAX, 0) == 1 && MallOpt(M_TRIM_THRESHOLD, int.MaxValue) == 1)
                        result = "glibc malloc keeps freed memory (M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB)";
                }
                catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
            }
            _applied = result;
            return result.Length == 0 ? null : result;
        }
    }

    static readonly object Gate = new();
    static string? _applied;

    /// <summary>The tunable that puts every thread on glibc's main arena.</summary>
    public const string OneArenaTunable = "glibc.malloc.arena_max=1";

    [DllImport("libc", EntryPoint = "execve", SetLastError = true)]
    static extern int ExecVe(string path, string?[] argv, string?[] envp);

    [DllImport("libc", EntryPoint = "gnu_get_libc_version")]
    static extern IntPtr GnuLibcVersion();

    /// <summary>GLIBC_TUNABLES where it limits the arenas (<see cref="OneArenaTunable"/>, or the user's own limit), for
    /// the log; null otherwise.</summary>
    public static string? ArenaTunables => Environment.GetEnvironmentVariable("GLIBC_TUNABLES") is { } t && t.Contains("glibc.malloc.arena_max=") ? t : null;

    /// <summary>
    /// Rank threads (and libgomp's workers) each get a glibc arena of their own, whose heaps hold at most 64 MB: a larger
    /// block is mapped by mmap whatever <c>M_MMAP_MAX</c> says, and a heap emptied at the end of a step is unmapped,
    /// <c>M_TRIM_THRESHOLD</c> or not. So with data-parallel ranks on threads every step mapped and zeroed its memory
    /// anew (GPT-2 124M, DP 2: ~1,250,000 minor faults a step; gpt2-tiny, DP 8: 30,000-58,000). With one arena, the
    /// main one, every thread's blocks come from the one heap that <see cref="KeepFreedMemory"/> keeps (a few dozen
    /// faults a step; docs/REPORT.md §4.1). glibc fixes the arena limit once several arenas exist, so
    /// <c>mallopt(M_ARENA_MAX)</c> comes too late in a .NET process; the tunable must be in the environment when the
    /// process starts. This re-executes the same command line (same process id, so mpirun's bookkeeping holds) with it
    /// added to GLIBC_TUNABLES, once, first thing in Main; it does nothing off glibc, where the user set
    /// <c>glibc.malloc.arena_max</c>, or where exec fails (the run goes on as before).
    /// </summary>
    public static void ReexecWithOneArena()
    {
        if (!OperatingSystem.IsLinux() || ArenaTunables is not null) return;
        try
        {
            if (GnuLibcVersion() == IntPtr.Zero) return;
            var argv = File.ReadAllText("/proc/self/cmdline").TrimEnd('\0').Split('\0');
            if (argv.Length < 1 || argv[0].Length == 0) return;
            string? tunables = Environment.GetEnvironmentVariable("GLIBC_TUNABLES");
            var env = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
                .Where(e => (string)e.Key != "GLIBC_TUNABLES").Select(e => $"{e.Key}={e.Value}")
                .Append($"GLIBC_TUNABLES={(string.IsNullOrEmpty(tunables) ? "" : tunables + ":")}{OneArenaTunable}");
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
