using System.Runtime.InteropServices;

namespace Trainer.Parallel.Mpi;

/// <summary>
/// The few Open MPI 4.x calls the trainer needs, bound directly to <c>libmpi.so.40</c> (Debian's <c>openmpi-bin</c> /
/// <c>libopenmpi3</c>). Open MPI's predefined handles (<c>MPI_COMM_WORLD</c>, <c>MPI_BYTE</c>, ...) are the addresses of
/// exported globals (<c>ompi_mpi_comm_world</c>, <c>ompi_mpi_byte</c>), read with <see cref="NativeLibrary.GetExport"/>.
/// Every call that returns an error code goes through <see cref="Check"/>. MPICH and other ABIs are not supported.
/// </summary>
static unsafe class MpiNative
{
    public const string Library = "libmpi.so.40";
    public const int ThreadMultiple = 3;   // MPI_THREAD_MULTIPLE in Open MPI's mpi.h

    static readonly Lazy<IntPtr> s_handle = new(Load);

    /// <summary>Loads libmpi.so.40 with RTLD_GLOBAL: Open MPI's plugins (mca_*.so) resolve their symbols from it.</summary>
    static IntPtr Load()
    {
        const int RTLD_NOW = 2, RTLD_GLOBAL = 0x100;
        IntPtr h = dlopen(Library, RTLD_NOW | RTLD_GLOBAL);
        if (h == IntPtr.Zero)
            throw new CommunicatorException($"the MPI backend needs Open MPI's {Library} (Debian: apt-get install openmpi-bin), and it cannot be loaded: {Marshal.PtrToStringUTF8(dlerror()) ?? "not found"}");
        return h;
    }

    [DllImport("libc", EntryPoint = "dlopen")] static extern IntPtr dlopen(string file, int mode);
    [DllImport("libc", EntryPoint = "dlerror")] static extern IntPtr dlerror();

    static IntPtr Export(string name) => NativeLibrary.GetExport(s_handle.Value, name);
    static T Fn<T>(string name) where T : Delegate => Marshal.GetDelegateForFunctionPointer<T>(Export(name));

    // Handles: the addresses of Open MPI's predefined objects.
    public static IntPtr CommWorld => Export("ompi_mpi_comm_world");
    public static IntPtr Byte => Export("ompi_mpi_byte");

    // Function pointers, resolved once on first use (function pointers avoid delegate marshalling per call).
    static readonly Lazy<IntPtr> pInitialized = new(() => Export("MPI_Initialized"));
    static readonly Lazy<IntPtr> pFinalized = new(() => Export("MPI_Finalized"));
    static readonly Lazy<IntPtr> pInitThread = new(() => Export("MPI_Init_thread"));
    static readonly Lazy<IntPtr> pFinalize = new(() => Export("MPI_Finalize"));
    static readonly Lazy<IntPtr> pAbort = new(() => Export("MPI_Abort"));
    static readonly Lazy<IntPtr> pCommRank = new(() => Export("MPI_Comm_rank"));
    static readonly Lazy<IntPtr> pCommSize = new(() => Export("MPI_Comm_size"));
    static readonly Lazy<IntPtr> pCommSplit = new(() => Export("MPI_Comm_split"));
    static readonly Lazy<IntPtr> pCommFree = new(() => Export("MPI_Comm_free"));
    static readonly Lazy<IntPtr> pCommDup = new(() => Export("MPI_Comm_dup"));
    static readonly Lazy<IntPtr> pIprobe = new(() => Export("MPI_Iprobe"));
    static readonly Lazy<IntPtr> pGetCount = new(() => Export("MPI_Get_count"));
    static readonly Lazy<IntPtr> pRecv = new(() => Export("MPI_Recv"));
    static readonly Lazy<IntPtr> pIalltoallv = new(() => Export("MPI_Ialltoallv"));
    static readonly Lazy<IntPtr> pIallgatherv = new(() => Export("MPI_Iallgatherv"));
    static readonly Lazy<IntPtr> pIbcast = new(() => Export("MPI_Ibcast"));
    static readonly Lazy<IntPtr> pIbarrier = new(() => Export("MPI_Ibarrier"));
    static readonly Lazy<IntPtr> pIsend = new(() => Export("MPI_Isend"));
    static readonly Lazy<IntPtr> pIrecv = new(() => Export("MPI_Irecv"));
    static readonly Lazy<IntPtr> pTest = new(() => Export("MPI_Test"));
    static readonly Lazy<IntPtr> pErrorString = new(() => Export("MPI_Error_string"));

    public static bool Initialized() { int f; Check(((delegate* unmanaged<int*, int>)pInitialized.Value)(&f), "MPI_Initialized"); return f != 0; }
    public static bool Finalized() { int f; Check(((delegate* unmanaged<int*, int>)pFinalized.Value)(&f), "MPI_Finalized"); return f != 0; }

    /// <summary>MPI_Init_thread(NULL, NULL, required, &amp;provided); returns provided.</summary>
    public static int InitThread(int required)
    {
        int provided;
        Check(((delegate* unmanaged<int*, byte***, int, int*, int>)pInitThread.Value)(null, null, required, &provided), "MPI_Init_thread");
        return provided;
    }

    public static void FinalizeMpi() => Check(((delegate* unmanaged<int>)pFinalize.Value)(), "MPI_Finalize");
    public static void Abort(IntPtr comm, int code) => ((delegate* unmanaged<IntPtr, int, int>)pAbort.Value)(comm, code);

    public static int CommRank(IntPtr comm) { int r; Check(((delegate* unmanaged<IntPtr, int*, int>)pCommRank.Value)(comm, &r), "MPI_Comm_rank"); return r; }
    public static int CommSize(IntPtr comm) { int s; Check(((delegate* unmanaged<IntPtr, int*, int>)pCommSize.Value)(comm, &s), "MPI_Comm_size"); return s; }

    public static IntPtr CommSplit(IntPtr comm, int color, int key)
    {
        IntPtr n;
        Check(((delegate* unmanaged<IntPtr, int, int, IntPtr*, int>)pCommSplit.Value)(comm, color, key, &n), "MPI_Comm_split");
        return n;
    }

    public static IntPtr CommDup(IntPtr comm)
    {
        IntPtr n;
        Check(((delegate* unmanaged<IntPtr, IntPtr*, int>)pCommDup.Value)(comm, &n), "MPI_Comm_dup");
        return n;
    }

    public const int AnySource = -1;   // MPI_ANY_SOURCE in Open MPI's mpi.h

    /// <summary>Open MPI's MPI_Status (<c>ompi_status_public_t</c>: MPI_SOURCE, MPI_TAG, MPI_ERROR, _cancelled, size_t _ucount).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Status { public int Source, Tag, Error, Cancelled; public nuint Count; }

    /// <summary>MPI_Iprobe(source, tag, comm): a message waiting to be received (its source and size in bytes), or null.</summary>
    public static (int Source, int Bytes)? Iprobe(int source, int tag, IntPtr comm)
    {
        int flag; Status st;
        Check(((delegate* unmanaged<int, int, IntPtr, int*, Status*, int>)pIprobe.Value)(source, tag, comm, &flag, &st), "MPI_Iprobe");
        if (flag == 0) return null;
        int count;
        Check(((delegate* unmanaged<Status*, IntPtr, int*, int>)pGetCount.Value)(&st, Byte, &count), "MPI_Get_count");
        return (st.Source, count);
    }

    /// <summary>Blocking MPI_Recv of bytes (used after MPI_Iprobe has seen the message, so it returns at once).</summary>
    public static void Recv(void* buf, int count, int source, int tag, IntPtr comm)
    {
        Status st;
        Check(((delegate* unmanaged<void*, int, IntPtr, int, int, IntPtr, Status*, int>)pRecv.Value)(buf, count, Byte, source, tag, comm, &st), "MPI_Recv");
    }

    public static void CommFree(IntPtr comm) => Check(((delegate* unmanaged<IntPtr*, int>)pCommFree.Value)(&comm), "MPI_Comm_free");

    public static IntPtr Ialltoallv(void* send, int* sendCounts, int* sendDispls, void* recv, int* recvCounts, int* recvDispls, IntPtr comm)
    {
        IntPtr req; var b = Byte;
        Check(((delegate* unmanaged<void*, int*, int*, IntPtr, void*, int*, int*, IntPtr, IntPtr, IntPtr*, int>)pIalltoallv.Value)
            (send, sendCounts, sendDispls, b, recv, recvCounts, recvDispls, b, comm, &req), "MPI_Ialltoallv");
        return req;
    }

    public static IntPtr Iallgatherv(void* send, int sendCount, void* recv, int* recvCounts, int* displs, IntPtr comm)
    {
        IntPtr req; var b = Byte;
        Check(((delegate* unmanaged<void*, int, IntPtr, void*, int*, int*, IntPtr, IntPtr, IntPtr*, int>)pIallgatherv.Value)
            (send, sendCount, b, recv, recvCounts, displs, b, comm, &req), "MPI_Iallgatherv");
        return req;
    }

    public static IntPtr Ibcast(void* buf, int count, int root, IntPtr comm)
    {
        IntPtr req;
        Check(((delegate* unmanaged<void*, int, IntPtr, int, IntPtr, IntPtr*, int>)pIbcast.Value)(buf, count, Byte, root, comm, &req), "MPI_Ibcast");
        return req;
    }

    public static IntPtr Ibarrier(IntPtr comm)
    {
        IntPtr req;
        Check(((delegate* unmanaged<IntPtr, IntPtr*, int>)pIbarrier.Value)(comm, &req), "MPI_Ibarrier");
        return req;
    }

    public static IntPtr Isend(void* buf, int count, int dest, int tag, IntPtr comm)
    {
        IntPtr req;
        Check(((delegate* unmanaged<void*, int, IntPtr, int, int, IntPtr, IntPtr*, int>)pIsend.Value)(buf, count, Byte, dest, tag, comm, &req), "MPI_Isend");
        return req;
    }

    public static IntPtr Irecv(void* buf, int count, int source, int tag, IntPtr comm)
    {
        IntPtr req;
        Check(((delegate* unmanaged<void*, int, IntPtr, int, int, IntPtr, IntPtr*, int>)pIrecv.Value)(buf, count, Byte, source, tag, comm, &req), "MPI_Irecv");
        return req;
    }

    /// <summary>MPI_Test with MPI_STATUS_IGNORE: true (and the request freed, set to MPI_REQUEST_NULL) once complete.</summary>
    public static bool Test(ref IntPtr request)
    {
        int flag;
        fixed (IntPtr* r = &request)
            Check(((delegate* unmanaged<IntPtr*, int*, void*, int>)pTest.Value)(r, &flag, null), "MPI_Test");
        return flag != 0;
    }

    static string ErrorString(int code)
    {
        var buf = stackalloc byte[512];   // MPI_MAX_ERROR_STRING = 256 in Open MPI
        int len;
        if (((delegate* unmanaged<int, byte*, int*, int>)pErrorString.Value)(code, buf, &len) != 0) return $"MPI error {code}";
        return Marshal.PtrToStringUTF8((IntPtr)buf, len);
    }

    /// <summary>Open MPI's default error handler aborts the job on errors; a code that comes back anyway is thrown.</summary>
    public static void Check(int rc, string call)
    {
        if (rc != 0) throw new CommunicatorException($"{call} failed: {ErrorString(rc)} (code {rc})");
    }
}
