using System.Security.Cryptography;
using System.Text;
using ElderCuda.Backends.Cuda.Interop;

namespace ElderCuda.Backends.Cuda;

/// <summary>
/// Turns a kernel family into a loadable image for one architecture, cheapest source first:
/// 1. a precompiled native/&lt;family&gt;.sm_XY.cubin (CMakeLists.txt builds them with nvcc), used when its
///    sidecar .sha256 matches the embedded source (or it has no sidecar);
/// 2. the on-disk cache ($ELDR_KERNEL_CACHE or ~/.cache/eldr/kernels), keyed by SHA-256 of
///    (source, headers, arch, NVRTC version, options);
/// 3. NVRTC, whose full log is in the exception on a compile error: a cubin for the device's sm_XY, or, when this
///    NVRTC is older than the GPU, PTX for the newest architecture it knows, which the driver compiles at load.
/// </summary>
public static class KernelCompiler
{
    /// <summary>Where the loader says that it compiles with NVRTC, which takes seconds (the attention family tens of
    /// seconds on a small host): the CLI points it at standard error; null (the default) says nothing.</summary>
    public static Action<string>? Log { get; set; }

    public static string CacheDir =>
        Environment.GetEnvironmentVariable("ELDR_KERNEL_CACHE") is { Length: > 0 } d ? d
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "eldr", "kernels");

    /// <summary>
    /// NVRTC options for sm_XY. No fast-math: the fp32 mode is checked to 1e-4 against the CPU. No -lineinfo:
    /// NVRTC 11.8 (Debian's, on CI) crashes compiling our sources for sm_90 with it.
    /// </summary>
    public static IReadOnlyList<string> Options(int arch) => Options(new Target(arch, arch, false));

    /// <summary>NVRTC options for a <see cref="Target"/>: sm_XY (a cubin) or compute_XY (PTX only).</summary>
    public static IReadOnlyList<string> Options(Target t) =>
        [$"--gpu-architecture={t.GpuArchitecture}", "-default-device", "--std=c++17", "-DELDR_NVRTC=1"];

    /// <summary>
    /// What NVRTC is asked for on behalf of a device of compute capability sm_<see cref="DeviceArch"/>: a cubin for
    /// that architecture, or, when this NVRTC is older than the device (NVRTC 12.4 and a Blackwell GPU), PTX for the
    /// newest architecture it knows below the device's, which the driver compiles for the device when it loads the
    /// module (PTX runs on later GPUs; a cubin does not).
    /// </summary>
    public readonly record struct Target(int DeviceArch, int CompileArch, bool Ptx)
    {
        public string GpuArchitecture => Ptx ? $"compute_{CompileArch}" : $"sm_{CompileArch}";
    }

    /// <summary>The <see cref="Target"/> for a device of sm_<paramref name="arch"/>, given the sm_XY numbers an NVRTC
    /// supports. Throws when every supported architecture is newer than the device's (NVRTC 13 has dropped sm_70).</summary>
    public static Target TargetFor(int arch, IReadOnlyCollection<int> supported, (int major, int minor) nvrtc)
    {
        if (supported.Contains(arch)) return new Target(arch, arch, false);
        var older = supported.Where(a => a < arch).ToArray();
        if (older.Length == 0)
            throw new CudaException($"NVRTC {nvrtc.major}.{nvrtc.minor} cannot compile for sm_{arch}: it targets " +
                $"sm_{supported.Min()} to sm_{supported.Max()}. Use an NVRTC that supports the GPU (ELDR_NVRTC=/path/libnvrtc.so.N), " +
                "or ahead-of-time kernel images (native/README.md)", "nvrtcCompileProgram", -1, "NVRTC_ERROR_INVALID_OPTION");
        return new Target(arch, older.Max(), true);
    }

    /// <summary>The <see cref="Target"/> for sm_<paramref name="arch"/> with the NVRTC this process loaded.</summary>
    public static Target TargetFor(int arch) => TargetFor(arch, Nvrtc.SupportedArchs(), Nvrtc.Version());

    /// <summary>SHA-256 of a family's source with its headers, as the sidecar of a native image records it.</summary>
    public static string SourceHash(string family)
    {
        var sb = new StringBuilder(KernelSources.Source(family));
        foreach (var (_, text) in KernelSources.Headers) sb.Append(text);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    /// <summary>Where precompiled images are looked for: $ELDR_NATIVE_DIR, then native/ beside the assembly.</summary>
    public static IEnumerable<string> NativeDirs()
    {
        if (Environment.GetEnvironmentVariable("ELDR_NATIVE_DIR") is { Length: > 0 } d) yield return d;
        yield return Path.Combine(AppContext.BaseDirectory, "native");
    }

    /// <summary>Compile with NVRTC, no device needed (what the CI compile check calls).</summary>
    public static Nvrtc.Output CompileWithNvrtc(string family, int arch, bool wantCubin = true) =>
        CompileWithNvrtc(family, new Target(arch, arch, false), wantCubin);

    /// <summary>Compile for a <see cref="Target"/>; a PTX target yields no cubin.</summary>
    public static Nvrtc.Output CompileWithNvrtc(string family, Target target, bool wantCubin = true) =>
        Nvrtc.Compile(KernelSources.Source(family), family + ".cu", KernelSources.Headers, Options(target), wantCubin && !target.Ptx);

    /// <summary>
    /// An image for cuModuleLoadData, and where it came from ("native", "cache", "nvrtc"). Native images are looked
    /// for in <paramref name="nativeDirs"/> (default <see cref="NativeDirs"/>).
    /// </summary>
    public static (byte[] image, string origin) GetImage(string family, int arch, IEnumerable<string>? nativeDirs = null)
    {
        foreach (var dir in nativeDirs ?? NativeDirs())
        {
            foreach (var ext in new[] { "cubin", "fatbin" })
            {
                var path = Path.Combine(dir, $"{family}.sm_{arch}.{ext}");
                if (!File.Exists(path)) continue;
                var side = path + ".sha256";
                if (File.Exists(side) && File.ReadAllText(side).Trim().Split(' ')[0] != SourceHash(family)) continue; // stale
                return (File.ReadAllBytes(path), "native:" + path);
            }
        }

        var (maj, min) = Nvrtc.Version();
        var target = TargetFor(arch);
        var cacheFile = CacheFile(family, target);
        if (File.Exists(cacheFile)) return (File.ReadAllBytes(cacheFile), "cache:" + cacheFile);

        bool announce; lock (s_ptxAnnounced) announce = target.Ptx && s_ptxAnnounced.Add(arch);
        if (announce)
            Log?.Invoke($"kernels: NVRTC {maj}.{min} does not know sm_{arch}; compiling PTX for {target.GpuArchitecture}, which the " +
                        "driver compiles for the GPU as it loads each module");
        Log?.Invoke($"kernels: compiling kernels/{family}.cu for {target.GpuArchitecture} with NVRTC {maj}.{min} (first use; cached in {CacheDir}, " +
                    "and `eldr kernels --warm` compiles them all ahead)");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var output = CompileWithNvrtc(family, target);
        Log?.Invoke($"kernels: {family}.cu compiled in {sw.Elapsed.TotalSeconds:F1} s");
        var image = target.Ptx ? output.Ptx : output.Cubin ?? output.Ptx;
        Store(cacheFile, image);
        return (image, target.Ptx ? "nvrtc:ptx" : "nvrtc");
    }

    static readonly HashSet<int> s_ptxAnnounced = [];

    /// <summary>The cache file of a family's image for sm_<paramref name="arch"/>: named by the SHA-256 of the source, the
    /// headers, the architecture, the NVRTC version and <see cref="Options"/>.</summary>
    public static string CacheFile(string family, int arch) => CacheFile(family, TargetFor(arch));

    /// <summary>The cache file of a family's image for a <see cref="Target"/> (a .ptx file when the target is PTX).</summary>
    public static string CacheFile(string family, Target target)
    {
        var (maj, min) = Nvrtc.Version();
        var key = new StringBuilder();
        key.Append(KernelSources.Source(family)).Append('\0');
        foreach (var (n, t) in KernelSources.Headers) key.Append(n).Append('\0').Append(t).Append('\0');
        key.Append("sm_").Append(target.DeviceArch).Append('\0').Append($"nvrtc {maj}.{min}").Append('\0').Append(string.Join(" ", Options(target)));
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key.ToString())));
        return Path.Combine(CacheDir, $"{family}.sm_{target.DeviceArch}.{hash[..24]}.{(target.Ptx ? "ptx" : "cubin")}");
    }

    /// <summary>Writes an image to its cache file (atomically: a temporary file, then a rename). A read-only home is no
    /// reason to fail: the family is compiled again next time.</summary>
    public static void Store(string cacheFile, byte[] image)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(cacheFile)!);
            var tmp = cacheFile + "." + Environment.ProcessId + ".tmp";
            File.WriteAllBytes(tmp, image);
            File.Move(tmp, cacheFile, overwrite: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
