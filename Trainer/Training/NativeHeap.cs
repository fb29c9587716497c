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
/// stays at the step's peak. Glibc's own fallbacks still map memory where the heap cannot grow (a thread arena's block
/// larger than its 64 MB heap, as under DP ranks on threads), so this helps the thread that runs a single rank most.
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
