using System.Runtime.InteropServices;
using System.Text;

namespace ElderCuda.Backends.Cuda.Interop;

/// <summary>
/// The CUDA driver API (libcuda.so.1), the subset the engine uses. Raw entry points live in
/// <see cref="Native"/>; the public methods check every result and throw <see cref="CudaException"/>
/// with the function name and the error's name (cuGetErrorName).
/// Device pointers are <c>ulong</c> (CUdeviceptr); handles are <c>IntPtr</c>.
/// </summary>
public static unsafe class Driver
{
    // CUdevice_attribute values we read.
    public const int AttrMultiprocessorCount = 16;
    public const int AttrComputeCapabilityMajor = 75;
    public const int AttrComputeCapabilityMinor = 76;
    public const int AttrMaxSharedMemoryPerBlockOptin = 97;
    // CUfunction_attribute
    public const int FuncAttrMaxDynamicSharedSizeBytes = 8;
    public const int FuncAttrNumRegs = 4;
    public const int FuncAttrSharedSizeBytes = 1;   // CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: static shared memory

    internal static class Native
    {
        const string L = NativeLibraries.Cuda;
        [DllImport(L)] public static extern int cuInit(uint flags);
        [DllImport(L)] public static extern int cuDriverGetVersion(out int version);
        [DllImport(L)] public static extern int cuGetErrorName(int error, out IntPtr str);
        [DllImport(L)] public static extern int cuGetErrorString(int error, out IntPtr str);
        [DllImport(L)] public static extern int cuDeviceGetCount(out int count);
        [DllImport(L)] public static extern int cuDeviceGet(out int device, int ordinal);
        [DllImport(L)] public static extern int cuDeviceGetName(byte* name, int len, int dev);
        [DllImport(L)] public static extern int cuDeviceGetAttribute(out int value, int attrib, int dev);
        [DllImport(L, EntryPoint = "cuDeviceTotalMem_v2")] public static extern int cuDeviceTotalMem(out ulong bytes, int dev);
        [DllImport(L)] public static extern int cuDevicePrimaryCtxRetain(out IntPtr ctx, int dev);
        [DllImport(L, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] public static extern int cuDevicePrimaryCtxRelease(int dev);
        [DllImport(L)] public static extern int cuCtxSetCurrent(IntPtr ctx);
        [DllImport(L)] public static extern int cuCtxSynchronize();
        [DllImport(L)] public static extern int cuStreamCreate(out IntPtr stream, uint flags);
        [DllImport(L, EntryPoint = "cuStreamDestroy_v2")] public static extern int cuStreamDestroy(IntPtr stream);
        [DllImport(L)] public static extern int cuStreamSynchronize(IntPtr stream);
        [DllImport(L)] public static extern int cuEventCreate(out IntPtr ev, uint flags);
        [DllImport(L, EntryPoint = "cuEventDestroy_v2")] public static extern int cuEventDestroy(IntPtr ev);
        [DllImport(L)] public static extern int cuEventRecord(IntPtr ev, IntPtr stream);
        [DllImport(L)] public static extern int cuEventSynchronize(IntPtr ev);
        [DllImport(L)] public static extern int cuEventElapsedTime(out float ms, IntPtr start, IntPtr end);
        [DllImport(L, EntryPoint = "cuEventElapsedTime_v2")] public static extern int cuEventElapsedTime_v2(out float ms, IntPtr start, IntPtr end);
        [DllImport(L, EntryPoint = "cuMemAlloc_v2")] public static extern int cuMemAlloc(out ulong dptr, ulong bytes);
        [DllImport(L, EntryPoint = "cuMemFree_v2")] public static extern int cuMemFree(ulong dptr);
        [DllImport(L, EntryPoint = "cuMemAllocHost_v2")] public static extern int cuMemAllocHost(out IntPtr pp, ulong bytes);
        [DllImport(L)] public static extern int cuMemFreeHost(IntPtr p);
        [DllImport(L, EntryPoint = "cuMemGetInfo_v2")] public static extern int cuMemGetInfo(out ulong free, out ulong total);
        [DllImport(L, EntryPoint = "cuMemsetD8_v2")] public static extern int cuMemsetD8(ulong dst, byte value, ulong n);
        [DllImport(L)] public static extern int cuMemsetD8Async(ulong dst, byte value, ulong n, IntPtr stream);
        [DllImport(L)] public static extern int cuMemsetD16Async(ulong dst, ushort value, ulong n, IntPtr stream);
        [DllImport(L)] public static extern int cuMemsetD32Async(ulong dst, uint value, ulong n, IntPtr stream);
        [DllImport(L, EntryPoint = "cuMemcpyHtoD_v2")] public static extern int cuMemcpyHtoD(ulong dst, void* src, ulong bytes);
        [DllImport(L, EntryPoint = "cuMemcpyDtoH_v2")] public static extern int cuMemcpyDtoH(void* dst, ulong src, ulong bytes);
        [DllImport(L, EntryPoint = "cuMemcpyDtoD_v2")] public static extern int cuMemcpyDtoD(ulong dst, ulong src, ulong bytes);
        [DllImport(L, EntryPoint = "cuMemcpyHtoDAsync_v2")] public static extern int cuMemcpyHtoDAsync(ulong dst, void* src, ulong bytes, IntPtr stream);
        [DllImport(L, EntryPoint = "cuMemcpyDtoHAsync_v2")] public static extern int cuMemcpyDtoHAsync(void* dst, ulong src, ulong bytes, IntPtr stream);
        [DllImport(L, EntryPoint = "cuMemcpyDtoDAsync_v2")] public static extern int cuMemcpyDtoDAsync(ulong dst, ulong src, ulong bytes, IntPtr stream);
        [DllImport(L)] public static extern int cuModuleLoadData(out IntPtr module, byte* image);
        [DllImport(L)] public static extern int cuModuleUnload(IntPtr module);
        [DllImport(L)] public static extern int cuModuleGetFunction(out IntPtr func, IntPtr module, [MarshalAs(UnmanagedType.LPStr)] string name);
        [DllImport(L)] public static extern int cuFuncSetAttribute(IntPtr func, int attrib, int value);
        [DllImport(L)] public static extern int cuFuncGetAttribute(out int value, int attrib, IntPtr func);
        [DllImport(L)] public static extern int cuLaunchKernel(IntPtr f, uint gx, uint gy, uint gz, uint bx, uint by, uint bz,
            uint sharedMemBytes, IntPtr stream, void** kernelParams, void** extra);
    }

    public static string ErrorName(int code)
    {
        try
        {
            if (Native.cuGetErrorName(code, out var p) == 0 && p != IntPtr.Zero) return Marshal.PtrToStringAnsi(p) ?? $"CUresult {code}";
        }
        catch (DllNotFoundException) { }
        return $"CUresult {code}";
    }

    static string ErrorString(int code)
    {
        try
        {
            if (Native.cuGetErrorString(code, out var p) == 0 && p != IntPtr.Zero) return Marshal.PtrToStringAnsi(p) ?? "";
        }
        catch (DllNotFoundException) { }
        return "";
    }

    public static void Check(int result, string function)
    {
        if (result == 0) return;
        var name = ErrorName(result);
        var text = ErrorString(result);
        if (IsKernelFault(result)) KernelFaultReported = true;
        var hint = !IsKernelFault(result) ? ""
            : function.StartsWith("cuLaunchKernel(")
                ? ". The kernel failed as it ran; the GPU cannot be used again in this process"
                : ". A GPU kernel failed: CUDA reports that at the next call that waits for the GPU, so this is where it " +
                  "was noticed, not where it happened (CUDA_LAUNCH_BLOCKING=1 stops at the failing kernel); the GPU " +
                  "cannot be used again in this process";
        throw new CudaException($"{function} failed: {name} ({result}){(text.Length > 0 && text != name ? ": " + text : "")}{hint}",
            function, result, name);
    }

    /// <summary>
    /// A kernel fault has been thrown to a caller in this process (the primary context then fails every call until the
    /// process ends; <see cref="CudaBackend.Dispose"/> does not throw it again).
    /// </summary>
    public static bool KernelFaultReported { get; private set; }

    /// <summary>
    /// Errors a faulting kernel leaves on the context (sticky: every later call returns them): illegal address (700),
    /// launch timeout (702), device assert (710), hardware stack error (714), illegal instruction (715), misaligned
    /// address (716), invalid address space (717), invalid PC (718), launch failed (719).
    /// </summary>
    public static bool IsKernelFault(int result) => result is 700 or 702 or 710 or (>= 714 and <= 719);

    /// <summary>cuInit(0), translating a missing libcuda into the "no CUDA driver" message.</summary>
    public static void Init()
    {
        int r;
        try { r = Native.cuInit(0); }
        catch (NativeLibraries.OverrideNotLoadable e) { throw new CudaException(e.Message, "cuInit", -1, "DLL_NOT_FOUND", e); }
        catch (DllNotFoundException e) { throw new CudaException(CudaException.NoDriverHint, "cuInit", -1, "DLL_NOT_FOUND", e); }
        if (r == 100 /* CUDA_ERROR_NO_DEVICE */)
            throw new CudaException("cuInit failed: CUDA_ERROR_NO_DEVICE: the driver sees no CUDA device; run with --device cpu", "cuInit", r, "CUDA_ERROR_NO_DEVICE");
        Check(r, "cuInit");
    }

    public static int DriverVersion() { Check(Native.cuDriverGetVersion(out var v), "cuDriverGetVersion"); return v; }
    public static int DeviceCount() { Check(Native.cuDeviceGetCount(out var n), "cuDeviceGetCount"); return n; }
    public static int DeviceGet(int ordinal) { Check(Native.cuDeviceGet(out var d, ordinal), "cuDeviceGet"); return d; }

    public static string DeviceName(int dev)
    {
        byte* buf = stackalloc byte[256];
        Check(Native.cuDeviceGetName(buf, 256, dev), "cuDeviceGetName");
        int n = 0; while (n < 256 && buf[n] != 0) n++;
        return Encoding.ASCII.GetString(buf, n);
    }

    public static int DeviceAttribute(int dev, int attr) { Check(Native.cuDeviceGetAttribute(out var v, attr, dev), "cuDeviceGetAttribute"); return v; }
    public static ulong DeviceTotalMem(int dev) { Check(Native.cuDeviceTotalMem(out var b, dev), "cuDeviceTotalMem_v2"); return b; }
    public static IntPtr PrimaryCtxRetain(int dev) { Check(Native.cuDevicePrimaryCtxRetain(out var c, dev), "cuDevicePrimaryCtxRetain"); return c; }
    public static void PrimaryCtxRelease(int dev) => Check(Native.cuDevicePrimaryCtxRelease(dev), "cuDevicePrimaryCtxRelease_v2");
    public static void CtxSetCurrent(IntPtr ctx) => Check(Native.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
    public static void CtxSynchronize() => Check(Native.cuCtxSynchronize(), "cuCtxSynchronize");

    public static IntPtr StreamCreate(uint flags = 0) { Check(Native.cuStreamCreate(out var s, flags), "cuStreamCreate"); return s; }
    public static void StreamDestroy(IntPtr s) => Check(Native.cuStreamDestroy(s), "cuStreamDestroy_v2");
    public static void StreamSynchronize(IntPtr s) => Check(Native.cuStreamSynchronize(s), "cuStreamSynchronize");

    public static IntPtr EventCreate(uint flags = 0) { Check(Native.cuEventCreate(out var e, flags), "cuEventCreate"); return e; }
    public static void EventDestroy(IntPtr e) => Check(Native.cuEventDestroy(e), "cuEventDestroy_v2");
    public static void EventRecord(IntPtr e, IntPtr stream) => Check(Native.cuEventRecord(e, stream), "cuEventRecord");
    public static void EventSynchronize(IntPtr e) => Check(Native.cuEventSynchronize(e), "cuEventSynchronize");

    /// <summary>Milliseconds between two recorded events (CUDA 13 keeps the old symbol for ABI; _v2 is the fallback).</summary>
    public static float EventElapsedMs(IntPtr start, IntPtr end)
    {
        try { Check(Native.cuEventElapsedTime(out var ms, start, end), "cuEventElapsedTime"); return ms; }
        catch (EntryPointNotFoundException)
        {
            Check(Native.cuEventElapsedTime_v2(out var ms, start, end), "cuEventElapsedTime_v2"); return ms;
        }
    }

    /// <summary>Raw allocation: returns the CUresult so the allocator can turn OOM into a helpful message.</summary>
    public static int TryMemAlloc(out ulong ptr, ulong bytes) => Native.cuMemAlloc(out ptr, bytes);
    public static void MemFree(ulong p) => Check(Native.cuMemFree(p), "cuMemFree_v2");
    /// <summary>Page-locked host memory: copies to and from it run at the bus's speed, with no staging by the driver.</summary>
    public static IntPtr MemAllocHost(ulong bytes) { Check(Native.cuMemAllocHost(out var p, bytes), "cuMemAllocHost_v2"); return p; }
    public static void MemFreeHost(IntPtr p) => Check(Native.cuMemFreeHost(p), "cuMemFreeHost");
    public static (ulong free, ulong total) MemGetInfo() { Check(Native.cuMemGetInfo(out var f, out var t), "cuMemGetInfo_v2"); return (f, t); }
    public static void MemsetD8Async(ulong dst, byte value, ulong n, IntPtr stream) => Check(Native.cuMemsetD8Async(dst, value, n, stream), "cuMemsetD8Async");
    public static void MemsetD16Async(ulong dst, ushort value, ulong n, IntPtr stream) => Check(Native.cuMemsetD16Async(dst, value, n, stream), "cuMemsetD16Async");
    public static void MemsetD32Async(ulong dst, uint value, ulong n, IntPtr stream) => Check(Native.cuMemsetD32Async(dst, value, n, stream), "cuMemsetD32Async");
    public static void MemcpyHtoD(ulong dst, void* src, ulong bytes) => Check(Native.cuMemcpyHtoD(dst, src, bytes), "cuMemcpyHtoD_v2");
    public static void MemcpyDtoH(void* dst, ulong src, ulong bytes) => Check(Native.cuMemcpyDtoH(dst, src, bytes), "cuMemcpyDtoH_v2");
    public static void MemcpyDtoD(ulong dst, ulong src, ulong bytes) => Check(Native.cuMemcpyDtoD(dst, src, bytes), "cuMemcpyDtoD_v2");
    public static void MemcpyHtoDAsync(ulong dst, void* src, ulong bytes, IntPtr stream) => Check(Native.cuMemcpyHtoDAsync(dst, src, bytes, stream), "cuMemcpyHtoDAsync_v2");
    public static void MemcpyDtoHAsync(void* dst, ulong src, ulong bytes, IntPtr stream) => Check(Native.cuMemcpyDtoHAsync(dst, src, bytes, stream), "cuMemcpyDtoHAsync_v2");
    public static void MemcpyDtoDAsync(ulong dst, ulong src, ulong bytes, IntPtr stream) => Check(Native.cuMemcpyDtoDAsync(dst, src, bytes, stream), "cuMemcpyDtoDAsync_v2");

    /// <summary>cuModuleLoadData without throwing: the CUresult, and the module when it is 0.</summary>
    public static int TryModuleLoadData(byte[] image, out IntPtr module)
    {
        fixed (byte* p = image) return Native.cuModuleLoadData(out module, p);
    }

    /// <summary>Image errors of cuModuleLoadData: invalid image (200), no binary for the GPU (209), invalid PTX (218),
    /// PTX newer than the driver (222).</summary>
    public static bool IsImageError(int result) => result is 200 or 209 or 218 or 222;

    public static void ModuleUnload(IntPtr m) => Check(Native.cuModuleUnload(m), "cuModuleUnload");
    public static IntPtr ModuleGetFunction(IntPtr module, string name)
    {
        int r = Native.cuModuleGetFunction(out var f, module, name);
        if (r != 0) Check(r, $"cuModuleGetFunction(\"{name}\")");
        return f;
    }
    public static void FuncSetAttribute(IntPtr f, int attr, int value) => Check(Native.cuFuncSetAttribute(f, attr, value), "cuFuncSetAttribute");
    public static int FuncGetAttribute(IntPtr f, int attr) { Check(Native.cuFuncGetAttribute(out var v, attr, f), "cuFuncGetAttribute"); return v; }

    public static void LaunchKernel(IntPtr f, uint gx, uint gy, uint gz, uint bx, uint by, uint bz, uint smem, IntPtr stream, void** args, string name)
        => Check(Native.cuLaunchKernel(f, gx, gy, gz, bx, by, bz, smem, stream, args, null), $"cuLaunchKernel({name})");
}
