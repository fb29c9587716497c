using System.Globalization;

namespace Trainer.Parallel.Mpi;

/// <summary>
/// This process's Open MPI state: whether it was started by <c>mpirun</c> (Open MPI sets OMPI_COMM_WORLD_SIZE and
/// OMPI_COMM_WORLD_RANK), MPI_Init_thread once, and the end of the job (MPI_Finalize after success, MPI_Abort after a
/// failure so that mpirun stops every other rank instead of leaving them waiting).
/// </summary>
public static class MpiRuntime
{
    /// <summary>Environment variable: seconds any MPI wait may take before the job is aborted (default 600).</summary>
    public const string TimeoutVariable = "TRAINER_COMM_TIMEOUT_S";

    static readonly object s_lock = new();
    static bool s_initialized;

    /// <summary>True when this process is one rank of an Open MPI job (started by mpirun/orterun).</summary>
    public static bool IsLaunched => Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null;

    /// <summary>Number of processes of the job, from mpirun's environment (1 when not launched by mpirun).</summary>
    public static int LaunchedSize => EnvInt("OMPI_COMM_WORLD_SIZE") ?? 1;

    /// <summary>This process's rank in the job, from mpirun's environment (0 when not launched by mpirun).</summary>
    public static int LaunchedRank => EnvInt("OMPI_COMM_WORLD_RANK") ?? 0;

    /// <summary>Processes of this job on this node (for sharing the cores).</summary>
    public static int LocalSize => EnvInt("OMPI_COMM_WORLD_LOCAL_SIZE") ?? 1;

    static int? EnvInt(string name) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : null;

    /// <summary>The collective timeout: <see cref="TimeoutVariable"/> seconds, else the thread backend's default.</summary>
    public static TimeSpan Timeout
    {
        get
        {
            var s = Environment.GetEnvironmentVariable(TimeoutVariable);
            if (s is null) return ThreadCommunicator.DefaultTimeout;
            if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !(v > 0))
                throw new CommunicatorException($"{TimeoutVariable}='{s}' is not a positive number of seconds");
            return TimeSpan.FromSeconds(v);
        }
    }

    public static bool IsInitialized { get { lock (s_lock) return s_initialized; } }

    /// <summary>MPI_Init_thread(MPI_THREAD_MULTIPLE) once per process (rank threads may call MPI concurrently).</summary>
    public static void Init()
    {
        lock (s_lock)
        {
            if (s_initialized) return;
            if (!MpiNative.Initialized())
            {
                int provided = MpiNative.InitThread(MpiNative.ThreadMultiple);
                if (provided < MpiNative.ThreadMultiple)
                    throw new CommunicatorException($"Open MPI provides thread level {provided}, the trainer needs MPI_THREAD_MULTIPLE ({MpiNative.ThreadMultiple})");
            }
            s_initialized = true;
        }
    }

    /// <summary>The world communicator of this job (MPI_COMM_WORLD); initializes MPI first.</summary>
    public static MpiCommunicator World()
    {
        Init();
        return MpiCommunicator.CreateWorld(Timeout);
    }

    /// <summary>
    /// Ends this process's part of the job: MPI_Finalize when <paramref name="exitCode"/> is 0; otherwise MPI_Abort,
    /// which makes mpirun end every rank (printing which rank aborted) rather than leaving the others in a collective.
    /// </summary>
    public static void End(int exitCode)
    {
        lock (s_lock)
        {
            if (!s_initialized || MpiNative.Finalized()) return;
            if (exitCode == 0) MpiNative.FinalizeMpi();
            else
            {
                Console.Out.Flush();
                Console.Error.Flush();
                MpiNative.Abort(MpiNative.CommWorld, exitCode);
            }
        }
    }
}
