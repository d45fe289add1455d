using System.Runtime.InteropServices;
using System.Text;

namespace ElderCuda.Backends.Cuda.Interop;

/// <summary>
/// NVRTC (run-time CUDA C++ compiler): create a program with named headers, compile with options,
/// read the log, PTX and CUBIN. Works without a GPU or a driver, which is what the CI compile check uses.
/// </summary>
public static unsafe class Nvrtc
{
    internal static class Native
    {
        const string L = NativeLibraries.Nvrtc;
        [DllImport(L)] public static extern IntPtr nvrtcGetErrorString(int result);
        [DllImport(L)] public static extern int nvrtcVersion(out int major, out int minor);
        [DllImport(L)] public static extern int nvrtcGetNumSupportedArchs(out int n);
        [DllImport(L)] public static extern int nvrtcGetSupportedArchs(int* archs);
        [DllImport(L)] public static extern int nvrtcCreateProgram(out IntPtr prog, byte* src, byte* name, int numHeaders, byte** headers, byte** includeNames);
        [DllImport(L)] public static extern int nvrtcDestroyProgram(ref IntPtr prog);
        [DllImport(L)] public static extern int nvrtcCompileProgram(IntPtr prog, int numOptions, byte** options);
        [DllImport(L)] public static extern int nvrtcGetPTXSize(IntPtr prog, out nuint size);
        [DllImport(L)] public static extern int nvrtcGetPTX(IntPtr prog, byte* ptx);
        [DllImport(L)] public static extern int nvrtcGetCUBINSize(IntPtr prog, out nuint size);
        [DllImport(L)] public static extern int nvrtcGetCUBIN(IntPtr prog, byte* cubin);
        [DllImport(L)] public static extern int nvrtcGetProgramLogSize(IntPtr prog, out nuint size);
        [DllImport(L)] public static extern int nvrtcGetProgramLog(IntPtr prog, byte* log);
    }

    public const int NVRTC_ERROR_COMPILATION = 6;

    public static string ErrorName(int code)
    {
        try { var p = Native.nvrtcGetErrorString(code); if (p != IntPtr.Zero) return Marshal.PtrToStringAnsi(p) ?? $"nvrtcResult {code}"; }
        catch (DllNotFoundException) { }
        return $"nvrtcResult {code}";
    }

    public static void Check(int result, string function)
    {
        if (result == 0) return;
        var name = ErrorName(result);
        throw new CudaException($"{function} failed: {name} ({result})", function, result, name);
    }

    /// <summary>True when some libnvrtc can be loaded on this host.</summary>
    public static bool IsAvailable => NativeLibraries.IsAvailable(NativeLibraries.Nvrtc);

    public static (int major, int minor) Version()
    {
        try { Check(Native.nvrtcVersion(out var a, out var b), "nvrtcVersion"); return (a, b); }
        catch (NativeLibraries.OverrideNotLoadable e) { throw new CudaException(e.Message, "nvrtcVersion", -1, "DLL_NOT_FOUND", e); }
        catch (DllNotFoundException e)
        {
            throw new CudaException($"no NVRTC library was found (tried {NativeLibraries.CandidateList(NativeLibraries.Nvrtc)}); " +
                "install libnvrtc (Debian: .ci/install-nvrtc.sh) or provide precompiled kernels in native/", "nvrtcVersion", -1, "DLL_NOT_FOUND", e);
        }
    }

    /// <summary>The sm_XY numbers this NVRTC can target (e.g. 52 … 90).</summary>
    public static int[] SupportedArchs()
    {
        Check(Native.nvrtcGetNumSupportedArchs(out var n), "nvrtcGetNumSupportedArchs");
        var a = new int[n];
        fixed (int* p = a) Check(Native.nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
        return a;
    }

    /// <summary>What one compilation produced.</summary>
    public sealed record Output(byte[] Ptx, byte[]? Cubin, string Log);

    /// <summary>
    /// Compile <paramref name="source"/> (file name <paramref name="name"/>) with in-memory headers.
    /// Throws a <see cref="CudaException"/> whose message holds the full NVRTC log on a compile error.
    /// </summary>
    public static Output Compile(string source, string name, IReadOnlyList<(string name, string text)> headers, IReadOnlyList<string> options, bool wantCubin)
    {
        // NVRTC's front end recurses deeply; a thread-pool thread's default stack (1.5 MB) overflows on
        // our templated kernels, so every compilation runs on a thread of its own with a 256 MB stack.
        Output? result = null; Exception? error = null;
        var th = new Thread(() =>
        {
            try { result = CompileOnThisThread(source, name, headers, options, wantCubin); }
            catch (Exception e) { error = e; }
        }, 256 << 20);
        th.Start();
        th.Join();
        if (error != null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
        return result!;
    }

    static Output CompileOnThisThread(string source, string name, IReadOnlyList<(string name, string text)> headers, IReadOnlyList<string> options, bool wantCubin)
    {
        var allocs = new List<IntPtr>();
        byte* Str(string s) { var p = Marshal.StringToCoTaskMemUTF8(s); allocs.Add(p); return (byte*)p; }
        IntPtr prog = IntPtr.Zero;
        try
        {
            var hdrs = stackalloc byte*[Math.Max(1, headers.Count)];
            var incl = stackalloc byte*[Math.Max(1, headers.Count)];
            for (int i = 0; i < headers.Count; i++) { hdrs[i] = Str(headers[i].text); incl[i] = Str(headers[i].name); }
            int cr;
            try { cr = Native.nvrtcCreateProgram(out prog, Str(source), Str(name), headers.Count, hdrs, incl); }
            catch (DllNotFoundException) { Version(); throw; }
            Check(cr, "nvrtcCreateProgram");
            var opts = stackalloc byte*[Math.Max(1, options.Count)];
            for (int i = 0; i < options.Count; i++) opts[i] = Str(options[i]);
            int r = Native.nvrtcCompileProgram(prog, options.Count, opts);
            string log = GetLog(prog);
            if (r != 0)
            {
                var en = ErrorName(r);
                throw new CudaException($"nvrtcCompileProgram failed for {name} ({en}) with options [{string.Join(" ", options)}]; NVRTC log:\n{log}",
                    "nvrtcCompileProgram", r, en);
            }
            Check(Native.nvrtcGetPTXSize(prog, out var ps), "nvrtcGetPTXSize");
            var ptx = new byte[(int)ps];
            fixed (byte* p = ptx) Check(Native.nvrtcGetPTX(prog, p), "nvrtcGetPTX");
            byte[]? cubin = null;
            if (wantCubin)
            {
                Check(Native.nvrtcGetCUBINSize(prog, out var cs), "nvrtcGetCUBINSize");
                if (cs > 0)
                {
                    cubin = new byte[(int)cs];
                    fixed (byte* p = cubin) Check(Native.nvrtcGetCUBIN(prog, p), "nvrtcGetCUBIN");
                }
            }
            return new Output(ptx, cubin, log);
        }
        finally
        {
            if (prog != IntPtr.Zero) Native.nvrtcDestroyProgram(ref prog);
            foreach (var p in allocs) Marshal.FreeCoTaskMem(p);
        }
    }

    static string GetLog(IntPtr prog)
    {
        if (Native.nvrtcGetProgramLogSize(prog, out var n) != 0 || n <= 1) return "";
        var buf = new byte[(int)n];
        fixed (byte* p = buf) Native.nvrtcGetProgramLog(prog, p);
        return Encoding.UTF8.GetString(buf, 0, (int)n - 1);
    }
}
