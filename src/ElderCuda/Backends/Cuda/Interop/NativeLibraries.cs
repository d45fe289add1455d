using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ElderCuda.Backends.Cuda.Interop;

/// <summary>
/// Maps the short library names used in our [DllImport]s ("cuda", "nvrtc", "cublas", "cublasLt") to the
/// sonames a host actually has: the driver is always libcuda.so.1; NVRTC and cuBLAS carry their major
/// version in the soname (CUDA 13 on the GPU box, 12 on most hosts, Debian's non-free 11.2 on CI).
/// </summary>
internal static class NativeLibraries
{
    public const string Cuda = "cuda";
    public const string Nvrtc = "nvrtc";
    public const string Cublas = "cublas";
    public const string CublasLt = "cublasLt";

    static readonly Dictionary<string, string[]> Candidates = new()
    {
        [Cuda] = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"],
        [Nvrtc] = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so", "nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll"],
        [Cublas] = ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so", "cublas64_13.dll", "cublas64_12.dll", "cublas64_11.dll"],
        [CublasLt] = ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so", "cublasLt64_13.dll", "cublasLt64_12.dll", "cublasLt64_11.dll"],
    };

    /// <summary>Which file each short name resolved to (for reports and error messages).</summary>
    public static readonly Dictionary<string, string> Loaded = new();

    static readonly string[] ExtraDirs = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu"];

    [ModuleInitializer]
    internal static void Register()
    {
        try { NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve); }
        catch (InvalidOperationException) { /* a resolver is already set for this assembly */ }
    }

    static IntPtr Resolve(string name, Assembly asm, DllImportSearchPath? path)
    {
        if (!Candidates.TryGetValue(name, out var cands)) return IntPtr.Zero;
        var h = TryLoadAny(name, cands, asm, path);
        return h;
    }

    static IntPtr TryLoadAny(string name, string[] cands, Assembly asm, DllImportSearchPath? path)
    {
        // An explicit override wins: ELDR_NVRTC=/path/libnvrtc.so.12 and so on. One that cannot be loaded is an
        // error, not a reason to fall back quietly to another version than the one asked for.
        var variable = "ELDR_" + name.ToUpperInvariant();
        var env = Environment.GetEnvironmentVariable(variable);
        if (!string.IsNullOrEmpty(env))
        {
            try { var eh = NativeLibrary.Load(env); lock (Loaded) Loaded[name] = env; return eh; }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                throw new OverrideNotLoadable($"{variable}={env} cannot be loaded: {e.Message}", e);
            }
        }
        // plain dlopen by soname (the (name, assembly, path) overload would call this resolver again)
        foreach (var c in cands)
            if (NativeLibrary.TryLoad(c, out var h)) { lock (Loaded) Loaded[name] = c; return h; }
        foreach (var dir in ExtraDirs)
            foreach (var c in cands)
            {
                var full = Path.Combine(dir, c);
                if (File.Exists(full) && NativeLibrary.TryLoad(full, out var h)) { lock (Loaded) Loaded[name] = full; return h; }
            }
        return IntPtr.Zero;
    }

    /// <summary>An ELDR_CUDA, ELDR_NVRTC, ELDR_CUBLAS or ELDR_CUBLASLT override names a library that cannot be loaded: the
    /// message names the variable and the path, which the callers' "no library found" messages would hide.</summary>
    public sealed class OverrideNotLoadable(string message, Exception inner) : DllNotFoundException(message, inner);

    /// <summary>True when the named library can be loaded on this host. Throws <see cref="OverrideNotLoadable"/> when
    /// its ELDR_* override names a library that cannot be loaded.</summary>
    public static bool IsAvailable(string name)
    {
        if (!Candidates.TryGetValue(name, out var cands)) return false;
        var h = TryLoadAny(name, cands, typeof(NativeLibraries).Assembly, null);
        return h != IntPtr.Zero;
    }

    public static string CandidateList(string name) => string.Join(", ", Candidates[name]);
}
