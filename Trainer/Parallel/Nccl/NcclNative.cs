using System.Runtime.InteropServices;

namespace Trainer.Parallel.Nccl;

/// <summary>
/// The NCCL calls the trainer needs, bound to <c>libnccl.so.2</c> at run time (NVIDIA's libnccl2 package or the
/// nvidia-nccl-cu12/13 wheel, found on the library path). Nothing here is loaded unless a CUDA run needs a communicator,
/// so the CPU build and tests never touch it. API: NVIDIA/nccl <c>src/nccl.h.in</c> (ncclCommSplit needs NCCL ≥ 2.18).
/// </summary>
public static unsafe class NcclNative
{
    public const string Library = "libnccl.so.2";
    public const int Uint8 = 1;   // ncclUint8: every transfer here moves raw bytes; reductions are ours (Reduction)

    /// <summary>ncclUniqueId: 128 opaque bytes, passed by value to ncclCommInitRank.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 128)]
    public struct UniqueId { public fixed byte Internal[128]; }

    static readonly Lazy<IntPtr> s_handle = new(() =>
    {
        if (NativeLibrary.TryLoad(Library, out var h)) return h;
        throw new CommunicatorException($"--device cuda with several ranks uses NCCL, and {Library} cannot be loaded: install NCCL " +
            "(NVIDIA's CUDA apt repository: libnccl2; or pip nvidia-nccl-cu12) and put its directory on LD_LIBRARY_PATH");
    });

    /// <summary>Throws the message naming libnccl.so.2 when it is absent.</summary>
    public static void EnsureLoaded() => _ = s_handle.Value;

    static IntPtr Fn(string name) => NativeLibrary.GetExport(s_handle.Value, name);

    public static int Version()
    {
        int v;
        Check(((delegate* unmanaged<int*, int>)Fn("ncclGetVersion"))(&v), "ncclGetVersion");
        return v;
    }

    public static UniqueId GetUniqueId()
    {
        UniqueId id;
        Check(((delegate* unmanaged<UniqueId*, int>)Fn("ncclGetUniqueId"))(&id), "ncclGetUniqueId");
        return id;
    }

    /// <summary>One communicator per device of <paramref name="devices"/>, in one process (the threads backend's shape).</summary>
    public static IntPtr[] CommInitAll(int[] devices)
    {
        var comms = new IntPtr[devices.Length];
        fixed (IntPtr* c = comms)
        fixed (int* d = devices)
            Check(((delegate* unmanaged<IntPtr*, int, int*, int>)Fn("ncclCommInitAll"))(c, devices.Length, d), "ncclCommInitAll");
        return comms;
    }

    /// <summary>This process's member of a world of <paramref name="n"/> (the id comes from rank 0, e.g. over MPI).</summary>
    public static IntPtr CommInitRank(int n, UniqueId id, int rank)
    {
        IntPtr c;
        Check(((delegate* unmanaged<IntPtr*, int, UniqueId, int, int>)Fn("ncclCommInitRank"))(&c, n, id, rank), "ncclCommInitRank");
        return c;
    }

    public static IntPtr CommSplit(IntPtr comm, int color, int key)
    {
        IntPtr c;
        Check(((delegate* unmanaged<IntPtr, int, int, IntPtr*, void*, int>)Fn("ncclCommSplit"))(comm, color, key, &c, null), "ncclCommSplit");
        return c;
    }

    public static void CommDestroy(IntPtr comm) => Check(((delegate* unmanaged<IntPtr, int>)Fn("ncclCommDestroy"))(comm), "ncclCommDestroy");

    public static void AllGather(void* send, void* recv, long sendBytes, IntPtr comm) =>
        Check(((delegate* unmanaged<void*, void*, nuint, int, IntPtr, IntPtr, int>)Fn("ncclAllGather"))(send, recv, (nuint)sendBytes, Uint8, comm, IntPtr.Zero), "ncclAllGather");

    public static void Broadcast(void* send, void* recv, long bytes, int root, IntPtr comm) =>
        Check(((delegate* unmanaged<void*, void*, nuint, int, int, IntPtr, IntPtr, int>)Fn("ncclBroadcast"))(send, recv, (nuint)bytes, Uint8, root, comm, IntPtr.Zero), "ncclBroadcast");

    public static void Send(void* buf, long bytes, int peer, IntPtr comm) =>
        Check(((delegate* unmanaged<void*, nuint, int, int, IntPtr, IntPtr, int>)Fn("ncclSend"))(buf, (nuint)bytes, Uint8, peer, comm, IntPtr.Zero), "ncclSend");

    public static void Recv(void* buf, long bytes, int peer, IntPtr comm) =>
        Check(((delegate* unmanaged<void*, nuint, int, int, IntPtr, IntPtr, int>)Fn("ncclRecv"))(buf, (nuint)bytes, Uint8, peer, comm, IntPtr.Zero), "ncclRecv");

    public static void GroupStart() => Check(((delegate* unmanaged<int>)Fn("ncclGroupStart"))(), "ncclGroupStart");
    public static void GroupEnd() => Check(((delegate* unmanaged<int>)Fn("ncclGroupEnd"))(), "ncclGroupEnd");

    public static void Check(int rc, string call)
    {
        if (rc == 0) return;
        var s = ((delegate* unmanaged<int, IntPtr>)Fn("ncclGetErrorString"))(rc);
        throw new CommunicatorException($"{call} failed: {Marshal.PtrToStringUTF8(s)} (ncclResult {rc})");
    }
}
