using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ElderCuda.Backends.Cuda.Interop;
using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

/// <summary>
/// The GPU backend: NVRTC-compiled kernels (kernels/*.cu, one launcher file per family in Ops/) and
/// cuBLAS products, all on one CUDA stream of the device's primary context.
///
/// Dtypes (IBackend's conventions): parameters and activations in <see cref="ComputeType"/> (BF16 by
/// default, F32 for parity runs); parameter gradients always F32; rstd/mean/lse and losses F32; ids and
/// targets I32. Where an op gets an input in another float dtype it casts a temporary copy first.
/// </summary>
public sealed unsafe partial class CudaBackend : IBackend
{
    readonly int _device;
    readonly IntPtr _ctx;
    readonly IntPtr _stream;
    readonly IntPtr _cublas;
    readonly Dictionary<string, IntPtr> _modules = new();
    readonly Dictionary<string, IntPtr> _functions = new();
    readonly Dictionary<IntPtr, int> _smemSet = new();
    readonly Dictionary<IntPtr, int> _staticSmem = new();
    readonly int _smCount;
    readonly int _maxSmemOptin;
    bool _disposed;

    [ThreadStatic] static IntPtr t_currentCtx;

    /// <param name="computeType">BF16 (default) or F32 (parity mode).</param>
    /// <param name="device">CUDA device ordinal.</param>
    /// <param name="arch">sm_XY to compile for (default: the device's own compute capability).</param>
    public CudaBackend(DType computeType = DType.BF16, int device = 0, int? arch = null)
    {
        if (computeType is not (DType.BF16 or DType.F32))
            throw new ArgumentException($"compute type {computeType} is not supported (BF16 or F32)");
        ComputeType = computeType;
        Driver.Init();
        int count = Driver.DeviceCount();
        if (count == 0) throw new CudaException("no CUDA device is present; run with --device cpu", "cuDeviceGetCount", 100, "CUDA_ERROR_NO_DEVICE");
        if (device < 0 || device >= count)
            throw new ArgumentException($"there is no CUDA device {device}: the driver sees {count} (cuda:0{(count > 1 ? $" to cuda:{count - 1}" : "")})" +
                (Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES") is { Length: > 0 } vis ? $", CUDA_VISIBLE_DEVICES={vis}" : ""));
        _device = Driver.DeviceGet(device);
        DeviceName = Driver.DeviceName(_device);
        int major = Driver.DeviceAttribute(_device, Driver.AttrComputeCapabilityMajor);
        int minor = Driver.DeviceAttribute(_device, Driver.AttrComputeCapabilityMinor);
        Arch = arch ?? major * 10 + minor;
        _smCount = Driver.DeviceAttribute(_device, Driver.AttrMultiprocessorCount);
        _maxSmemOptin = Driver.DeviceAttribute(_device, Driver.AttrMaxSharedMemoryPerBlockOptin);
        TotalMemory = (long)Driver.DeviceTotalMem(_device);
        _ctx = Driver.PrimaryCtxRetain(_device);
        Driver.CtxSetCurrent(_ctx);
        t_currentCtx = _ctx;
        _stream = Driver.StreamCreate(0);
        _cublas = Cublas.Create();
        Cublas.SetStream(_cublas, _stream);
        Allocator = new CudaAllocator(DeviceName);
    }

    public string Name => $"cuda:{DeviceName} ({ComputeType})";
    public DType ComputeType { get; }
    public string DeviceName { get; }
    /// <summary>The sm_XY kernels are compiled for.</summary>
    public int Arch { get; }
    public long TotalMemory { get; }
    public CudaAllocator Allocator { get; }
    internal IntPtr Stream => _stream;
    internal IntPtr CublasHandle => _cublas;
    internal int SmCount => _smCount;

    /// <summary>True when a CUDA driver and at least one device are present; otherwise why not.</summary>
    public static bool IsAvailable(out string reason)
    {
        try
        {
            Driver.Init();
            int n = Driver.DeviceCount();
            reason = n > 0 ? "" : "the CUDA driver reports no device";
            return n > 0;
        }
        catch (CudaException e) { reason = e.Message; return false; }
        catch (DllNotFoundException e) { reason = CudaException.NoDriverHint + " (" + e.Message + ")"; return false; }
    }

    /// <summary>Free and total device memory in bytes (cuMemGetInfo), for memory estimates.</summary>
    public (long free, long total) FreeAndTotalBytes()
    {
        Enter();
        var (f, t) = Driver.MemGetInfo();
        return ((long)f, (long)t);
    }

    /// <summary>Versions for reports: driver, NVRTC, cuBLAS.</summary>
    public string VersionString()
    {
        Enter();
        int dv = Driver.DriverVersion();
        string nv; try { var (a, b) = Nvrtc.Version(); nv = $"{a}.{b}"; } catch (CudaException) { nv = "none"; }
        int cb = Cublas.GetVersion(_cublas);
        return $"driver API {dv / 1000}.{dv % 1000 / 10}, NVRTC {nv}, cuBLAS {cb}, sm_{Arch}, {_smCount} SMs";
    }

    internal void Enter()
    {
        if (_disposed) throw new ObjectDisposedException(nameof(CudaBackend));
        if (t_currentCtx != _ctx) { Driver.CtxSetCurrent(_ctx); t_currentCtx = _ctx; }
    }

    // ---- kernels ----------------------------------------------------------------------------------
    /// <summary>Where each loaded family's image came from ("native:...", "cache:...", "nvrtc").</summary>
    public Dictionary<string, string> KernelOrigins { get; } = new();
    /// <summary>ELDR_KERNEL_LOG=1 prints each family's origin to stderr as it loads (is a native image being used?).</summary>
    static readonly bool LogKernelOrigins = Environment.GetEnvironmentVariable("ELDR_KERNEL_LOG") == "1";

    /// <summary>
    /// Loads a family's image. A cached image the driver refuses (damaged on disk, or from an NVRTC this driver cannot
    /// follow) is deleted and compiled again, once. An image it still refuses is an error that names the NVRTC, the
    /// driver's CUDA version and where the image came from: an NVRTC newer than the driver makes images it cannot load.
    /// </summary>
    IntPtr LoadModule(string family, ref byte[] image, ref string origin)
    {
        int r = Driver.TryModuleLoadData(image, out var mod);
        if (r == 0) return mod;
        if (Driver.IsImageError(r) && origin.StartsWith("cache:"))
        {
            var path = origin["cache:".Length..];
            KernelCompiler.Log?.Invoke($"kernels: the driver refuses the cached {path} ({Driver.ErrorName(r)}); compiling {family}.cu again");
            try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            (image, origin) = KernelCompiler.GetImage(family, Arch);
            r = Driver.TryModuleLoadData(image, out mod);
            if (r == 0) return mod;
        }
        if (Driver.IsImageError(r))
        {
            int dv = Driver.DriverVersion();
            string nv; try { var (a, b) = Nvrtc.Version(); nv = $"NVRTC {a}.{b}"; } catch (CudaException) { nv = "no NVRTC"; }
            // a set-up problem, not a bug: PlatformNotSupportedException makes the CLI say "error", not "internal error"
            throw new PlatformNotSupportedException($"cuModuleLoadData({family}) failed: {Driver.ErrorName(r)} ({r}): the driver (CUDA {dv / 1000}.{dv % 1000 / 10}) " +
                $"cannot load the kernel image from {origin} ({nv}, sm_{Arch}). An NVRTC newer than the driver makes images the driver cannot " +
                "load: use an NVRTC no newer than the driver (ELDR_NVRTC=/path/libnvrtc.so.N) or update the driver",
                new CudaException($"cuModuleLoadData({family}) failed", "cuModuleLoadData", r, Driver.ErrorName(r)));
        }
        Driver.Check(r, $"cuModuleLoadData({family})");
        return mod;
    }

    internal IntPtr Function(string family, string name)
    {
        lock (_functions) return FunctionLocked(family, name);
    }

    IntPtr FunctionLocked(string family, string name)
    {
        if (_functions.TryGetValue(name, out var f)) return f;
        if (!_modules.TryGetValue(family, out var mod))
        {
            var (image, origin) = KernelCompiler.GetImage(family, Arch);
            mod = LoadModule(family, ref image, ref origin);
            _modules[family] = mod;
            KernelOrigins[family] = origin;
            if (LogKernelOrigins) Console.Error.WriteLine($"kernels {family} (sm_{Arch}): {origin}");
        }
        f = Driver.ModuleGetFunction(mod, name);
        _functions[name] = f;
        return f;
    }

    /// <summary>A function's static shared memory (CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES), asked once.</summary>
    int StaticSmem(IntPtr f)
    {
        if (!_staticSmem.TryGetValue(f, out var v))
            _staticSmem[f] = v = Driver.FuncGetAttribute(f, Driver.FuncAttrSharedSizeBytes);
        return v;
    }

    /// <summary>Launch family/name with the given grid, block, dynamic shared memory and arguments.</summary>
    internal void Launch(string family, string name, (uint x, uint y, uint z) grid, (uint x, uint y, uint z) block, uint smem, params KArg[] args)
    {
        Enter();
        var f = Function(family, name);
        // A GPU allows 48 KB of shared memory, static and dynamic together, unless the function opts in to more
        // (up to the device's limit, less its static shared memory).
        int staticSmem = smem > 0 ? StaticSmem(f) : 0;
        if (smem > 0 && smem + staticSmem > 48 * 1024)
        {
            if (smem + staticSmem > _maxSmemOptin)
                throw new CudaException($"{name} needs {smem} bytes of dynamic and {staticSmem} of static shared memory; {DeviceName} allows {_maxSmemOptin}", "cuLaunchKernel", 0, "");
            if (!_smemSet.TryGetValue(f, out var set) || set < smem)
            {
                Driver.FuncSetAttribute(f, Driver.FuncAttrMaxDynamicSharedSizeBytes, (int)smem);
                _smemSet[f] = (int)smem;
            }
        }
        int n = args.Length;
        ulong* vals = stackalloc ulong[Math.Max(1, n)];
        void** ptrs = stackalloc void*[Math.Max(1, n)];
        for (int i = 0; i < n; i++) { vals[i] = args[i].Bits; ptrs[i] = &vals[i]; }
        Driver.LaunchKernel(f, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem, _stream, ptrs, name);
    }

    /// <summary>Elementwise launch: 256 threads, enough blocks for a grid-stride loop over n.</summary>
    internal void LaunchN(string family, string name, long n, params KArg[] args)
    {
        if (n <= 0) return;
        long blocks = Math.Min((n + 255) / 256, (long)_smCount * 32);
        Launch(family, name, ((uint)blocks, 1, 1), (256, 1, 1), 0, args);
    }

    /// <summary>A kernel argument: pointer, int, long or float, passed as its 8-byte slot.</summary>
    internal readonly struct KArg
    {
        public readonly ulong Bits;
        KArg(ulong b) { Bits = b; }
        public static implicit operator KArg(ulong p) => new(p);
        public static implicit operator KArg(int v) => new((uint)v);
        public static implicit operator KArg(long v) => new((ulong)v);
        public static implicit operator KArg(float v) => new(BitConverter.SingleToUInt32Bits(v));
    }

    // ---- tensors and dtypes -----------------------------------------------------------------------
    internal static CudaTensor Cu(Tensor t) => t as CudaTensor ?? throw new ArgumentException($"{t} does not belong to the CUDA backend");
    internal static ulong P(Tensor? t) => t is null ? 0UL : Cu(t).Ptr;

    internal static string Sfx(DType d) => d switch
    {
        DType.F32 => "f32", DType.BF16 => "bf16", DType.F16 => "f16",
        _ => throw new ArgumentException($"no float kernels for {d}"),
    };

    internal static void Need(Tensor t, DType d, string op, string arg)
    {
        if (t.DType != d) throw new ArgumentException($"{op}: {arg} must be {d}, got {t}");
    }

    internal static void NeedFloat(Tensor t, string op, string arg)
    {
        if (t.DType is not (DType.F32 or DType.BF16)) throw new ArgumentException($"{op}: {arg} must be F32 or BF16, got {t}");
    }

    internal static void SameCount(Tensor a, Tensor b, string op)
    {
        if (a.Count != b.Count) throw new ArgumentException($"{op}: element counts differ ({a} vs {b})");
    }

    /// <summary><paramref name="t"/> in dtype <paramref name="d"/>: itself, or a cast temporary added to <paramref name="temps"/>.</summary>
    internal Tensor As(Tensor t, DType d, List<Tensor> temps)
    {
        if (t.DType == d) return t;
        var c = new CudaTensor(Allocator, d, t.Shape);
        temps.Add(c);
        Cast(c, t);
        return c;
    }

    internal CudaTensor Temp(DType d, List<Tensor> temps, params int[] shape)
    {
        var c = new CudaTensor(Allocator, d, shape);
        temps.Add(c);
        return c;
    }

    /// <summary>Temporaries go back to the cache right away: later work on the one stream runs after the kernels that use them.</summary>
    internal static void Free(List<Tensor> temps) { foreach (var t in temps) t.Dispose(); temps.Clear(); }

    // ---- memory -----------------------------------------------------------------------------------
    public Tensor Alloc(DType dtype, params int[] shape)
    {
        Enter();
        var t = new CudaTensor(Allocator, dtype, shape);
        if (t.Bytes > 0) Driver.MemsetD8Async(t.Ptr, 0, (ulong)t.Bytes, _stream);
        return t;
    }

    /// <summary>
    /// No zero fill (one driver call fewer). Under <see cref="BackendOptions.PoisonUninitialized"/> every dtype is filled
    /// with a value no kernel writes by accident: NaN for the float types, int.MinValue for I32 (token ids, argmax
    /// indices), 0x8000000080000000 for I64.
    /// </summary>
    public Tensor AllocUninitialized(DType dtype, params int[] shape)
    {
        Enter();
        var t = new CudaTensor(Allocator, dtype, shape);
        if (BackendOptions.PoisonUninitialized && t.Bytes > 0)
        {
            if (dtype == DType.I64) Driver.MemsetD32Async(t.Ptr, 0x80000000u, (ulong)t.Count * 2, _stream);
            else FillBits(t, PoisonBits(dtype));
        }
        return t;
    }

    /// <summary>The poison pattern of <see cref="AllocUninitialized"/> for a 2- or 4-byte dtype.</summary>
    static uint PoisonBits(DType dtype) => dtype switch
    {
        DType.F32 => 0x7FC00000u, DType.BF16 => 0x7FC0u, DType.F16 => 0x7E00u, DType.I32 => 0x80000000u,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "no 2- or 4-byte poison pattern"),
    };

    public Tensor FromHost(ReadOnlySpan<float> data, DType dtype, params int[] shape)
    {
        Enter();
        var t = new CudaTensor(Allocator, dtype, shape);
        if (data.Length != t.Count) { t.Dispose(); throw new ArgumentException($"{data.Length} values for shape {t.ShapeString}"); }
        CopyFromHost(t, data);
        return t;
    }

    public void CopyFromHost(Tensor dst, ReadOnlySpan<float> data)
    {
        Enter();
        var t = Cu(dst);
        if (data.Length != t.Count) throw new ArgumentException($"{data.Length} values for {dst}");
        if (t.DType == DType.F32) { Upload(t, MemoryMarshal.AsBytes(data)); return; }   // goes up as it is
        if (t.DType != DType.BF16) { Upload(t, DTypes.FromFloat32(t.DType, data)); return; }
        // bf16: rounded on all cores into the reused pinned buffer, a chunk at a time, instead of a fresh array per call
        // (the host-offloaded optimiser uploads every trained weight each step: 13.5 GB at Llama-2-7B's size)
        const int chunk = (int)(StagingChunkBytes / 2);
        lock (_stagingLock)
        {
            byte* staging = PinnedStaging(Math.Min(2L * data.Length, StagingChunkBytes));
            for (long off = 0; off < data.Length; off += chunk)   // long: off + chunk passes int.MaxValue near 2³¹ values
            {
                int len = (int)Math.Min(chunk, data.Length - off);
                DTypes.ToBf16(data.Slice((int)off, len), new Span<ushort>(staging, len));
                Driver.MemcpyHtoDAsync(t.Ptr + 2UL * (ulong)off, staging, 2UL * (ulong)len, _stream);
                Driver.StreamSynchronize(_stream);   // the next chunk reuses the buffer
            }
        }
    }

    /// <summary>Uploads through the pinned buffer go in chunks of this size.</summary>
    const long StagingChunkBytes = 64L << 20;

    public Tensor FromHostInt(ReadOnlySpan<int> data, params int[] shape)
    {
        Enter();
        var t = new CudaTensor(Allocator, DType.I32, shape);
        if (data.Length != t.Count) { t.Dispose(); throw new ArgumentException($"{data.Length} values for shape {t.ShapeString}"); }
        Upload(t, MemoryMarshal.AsBytes(data));
        return t;
    }

    void Upload(CudaTensor t, ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 0) return;
        fixed (byte* p = bytes)
        {
            Driver.MemcpyHtoDAsync(t.Ptr, p, (ulong)bytes.Length, _stream);
            Driver.StreamSynchronize(_stream);   // the host buffer must outlive the copy
        }
    }

    internal byte[] Download(Tensor t)
    {
        Enter();
        var bytes = new byte[t.Bytes];
        if (bytes.Length == 0) return bytes;
        fixed (byte* p = bytes)
        {
            Driver.MemcpyDtoHAsync(p, Cu(t).Ptr, (ulong)bytes.Length, _stream);
            Driver.StreamSynchronize(_stream);
        }
        return bytes;
    }

    public void ToHost(Tensor t, Span<float> dst)
    {
        if (dst.Length < t.Count) throw new ArgumentException($"destination of {dst.Length} for {t}");
        if (t.Bytes == 0) return;
        // through one reused page-locked buffer, at most PinnedStagingLimit at a time, each chunk decoded on all cores:
        // decoding copies B·V logits per token (with a fresh pageable array each time and a scalar bf16 widening, 4 MB
        // of them cost 8.8 ms on the H100), and the host-offloaded optimiser brings down every gradient each step
        Enter();
        int size = t.DType.SizeOf();
        long chunk = PinnedStagingLimit / size;
        lock (_stagingLock)
        {
            byte* staging = PinnedStaging(Math.Min(t.Bytes, PinnedStagingLimit));
            for (long off = 0; off < t.Count; off += chunk)
            {
                int len = (int)Math.Min(chunk, t.Count - off);
                Driver.MemcpyDtoHAsync(staging, Cu(t).Ptr + (ulong)(off * size), (ulong)len * (ulong)size, _stream);
                Driver.StreamSynchronize(_stream);
                DTypes.ToFloat32(t.DType, new ReadOnlySpan<byte>(staging, len * size), dst.Slice((int)off, len));
            }
        }
    }

    public void ToHostInt(Tensor t, Span<int> dst)
    {
        Need(t, DType.I32, "ToHostInt", "t");
        if (dst.Length < t.Count) throw new ArgumentException($"destination of {dst.Length} for {t}");
        if (t.Bytes == 0) return;
        Enter();
        fixed (int* p = dst)
        {
            Driver.MemcpyDtoHAsync(p, Cu(t).Ptr, (ulong)t.Bytes, _stream);
            Driver.StreamSynchronize(_stream);
        }
    }

    /// <summary>The pinned staging buffer grows to at most this size; larger downloads go through it in chunks.</summary>
    const long PinnedStagingLimit = 256L << 20;
    IntPtr _pinned;
    long _pinnedBytes;
    /// <summary>Held while the staging buffer is in use: two threads' transfers would otherwise share (or free) it.</summary>
    readonly object _stagingLock = new();

    /// <summary>Where page-locked memory cannot be had (cuMemAllocHost fails: a container's locked-memory limit, WSL),
    /// the staging buffer is an ordinary array, GC-pinned: transfers still work, only slower.</summary>
    byte[]? _pageableStaging;
    bool _warnedPageable;

    /// <summary>The pinned staging buffer, grown to at least <paramref name="bytes"/> (doubling); freed in Dispose.</summary>
    byte* PinnedStaging(long bytes)
    {
        if (bytes > _pinnedBytes)
        {
            long size = Math.Max(bytes, Math.Min(2 * _pinnedBytes, PinnedStagingLimit));
            FreeStaging();
            try { _pinned = Driver.MemAllocHost((ulong)size); }
            catch (CudaException e)
            {
                if (!_warnedPageable) Console.Error.WriteLine($"warning: no page-locked host memory ({e.Message}); transfers go through ordinary memory");
                _warnedPageable = true;
                _pageableStaging = GC.AllocateUninitializedArray<byte>(checked((int)size), pinned: true);
                _pinned = (IntPtr)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_pageableStaging));
            }
            _pinnedBytes = size;
        }
        return (byte*)_pinned;
    }

    /// <summary>Lets the staging buffer go (page-locked memory back to the driver); the fields are cleared first, so a
    /// failed cuMemFreeHost leaves nothing to free twice.</summary>
    void FreeStaging()
    {
        var old = _pinned;
        bool pageLocked = _pageableStaging is null;
        _pinned = IntPtr.Zero; _pinnedBytes = 0; _pageableStaging = null;
        if (old != IntPtr.Zero && pageLocked) Driver.MemFreeHost(old);
    }

    public void Zero(Tensor t)
    {
        Enter();
        if (t.Bytes > 0) Driver.MemsetD8Async(Cu(t).Ptr, 0, (ulong)t.Bytes, _stream);
    }

    /// <summary>Fill every element with a bit pattern (tests poison outputs with NaN: 0x7FC00000 for F32, 0x7FC0 for BF16).</summary>
    public void FillBits(Tensor t, uint pattern)
    {
        Enter();
        if (t.Bytes == 0) return;
        switch (t.DType.SizeOf())
        {
            case 2: Driver.MemsetD16Async(Cu(t).Ptr, (ushort)pattern, (ulong)t.Count, _stream); break;
            case 4: Driver.MemsetD32Async(Cu(t).Ptr, pattern, (ulong)t.Count, _stream); break;
            default: throw new ArgumentException($"FillBits: no {t.DType.SizeOf()}-byte fill");
        }
    }

    public void Copy(Tensor dst, Tensor src)
    {
        SameCount(dst, src, "Copy");
        Enter();
        if (dst.DType == src.DType)
        {
            if (dst.Bytes > 0) Driver.MemcpyDtoDAsync(Cu(dst).Ptr, Cu(src).Ptr, (ulong)dst.Bytes, _stream);
        }
        else Cast(dst, src);
    }

    public void Synchronize()
    {
        Enter();
        Driver.StreamSynchronize(_stream);
    }

    /// <summary>Milliseconds of device time for <paramref name="work"/> (events on the backend's stream).</summary>
    public float TimeMs(Action work)
    {
        Enter();
        var a = Driver.EventCreate(); var b = Driver.EventCreate();
        try
        {
            Driver.EventRecord(a, _stream);
            work();
            Driver.EventRecord(b, _stream);
            Driver.EventSynchronize(b);
            return Driver.EventElapsedMs(a, b);
        }
        finally { Driver.EventDestroy(a); Driver.EventDestroy(b); }
    }

    /// <summary>
    /// Frees what the backend owns and releases the primary context. Every step is tried even when one fails. After a
    /// kernel fault that has already been thrown to a caller, the context fails every call; those failures are not
    /// thrown again (Dispose runs as that exception unwinds a <c>using</c>, and would replace its message, which names
    /// the kernel under CUDA_LAUNCH_BLOCKING=1, with its own). Otherwise the first failure is thrown: a fault first
    /// seen here means the last results cannot be trusted.
    /// </summary>
    public void Dispose()
    {
        if (_disposed) return;
        bool alreadyReported = Driver.KernelFaultReported;
        Exception? first = null;
        void Step(Action a) { try { a(); } catch (CudaException e) { first ??= e; } }
        Step(Enter);
        Step(() => Driver.StreamSynchronize(_stream));
        Step(Allocator.Dispose);
        Step(FreeStaging);
        Step(() => { foreach (var m in _modules.Values) Driver.ModuleUnload(m); });
        _modules.Clear(); _functions.Clear();
        Step(() => Cublas.Destroy(_cublas));
        Step(() => { if (_cublasLt != IntPtr.Zero) CublasLt.Destroy(_cublasLt); _cublasLt = IntPtr.Zero; });
        Step(() => Driver.StreamDestroy(_stream));
        _disposed = true;
        Step(() => Driver.PrimaryCtxRelease(_device));
        t_currentCtx = IntPtr.Zero;
        if (first is not null && !alreadyReported) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
    }
}
