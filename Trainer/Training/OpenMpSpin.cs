using System.Runtime.InteropServices;

namespace Trainer.Training;

/// <summary>
/// libtorch's CPU ops run on libgomp (GNU OpenMP), each op its own parallel region, thousands per step. At the end of
/// a region libgomp's threads spin 300,000 rounds by default before they sleep. Where the cores are shared (other
/// processes, or more threads than cores) the thread being waited for is often off the CPU, and the spinning one burns
/// its time slice instead: with 2 threads on this project's shared 2-core machine ~58 % of both threads' samples were
/// in that spin, and GOMP_SPINCOUNT=10000 cut the CPU time of 6 GPT-2 124M steps from 65 s to 28 s (docs/REPORT.md
/// §4.1). 10,000 rounds still cover the microseconds between two ops of a step, so an idle machine keeps its threads
/// awake across them. libgomp reads its environment once, when libtorch loads it: <see cref="Bound"/> runs first thing
/// in Main, and does nothing where the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT.
/// </summary>
public static class OpenMpSpin
{
    public const string SpinCount = "10000";

    [DllImport("libc", EntryPoint = "setenv")]
    static extern int SetEnv(string name, string value, int overwrite);

    /// <summary>What <see cref="Bound"/> set, for the log (null: nothing).</summary>
    public static string? Applied { get; private set; }

    public static void Bound()
    {
        if (!OperatingSystem.IsLinux() || Applied is not null) return;
        if (Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is not null || Environment.GetEnvironmentVariable("GOMP_SPINCOUNT") is not null) return;
        try
        {
            if (SetEnv("GOMP_SPINCOUNT", SpinCount, 0) == 0) Applied = $"GOMP_SPINCOUNT={SpinCount}";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }
}
