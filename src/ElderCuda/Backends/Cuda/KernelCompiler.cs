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
/// 3. NVRTC, whose full log is in the exception on a compile error.
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
    public static IReadOnlyList<string> Options(int arch) =>
        [$"--gpu-architecture=sm_{arch}", "-default-device", "--std=c++17", "-DELDR_NVRTC=1"];

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
        Nvrtc.Compile(KernelSources.Source(family), family + ".cu", KernelSources.Headers, Options(arch), wantCubin);

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
        var cacheFile = CacheFile(family, arch);
        if (File.Exists(cacheFile)) return (File.ReadAllBytes(cacheFile), "cache:" + cacheFile);

        Log?.Invoke($"kernels: compiling kernels/{family}.cu for sm_{arch} with NVRTC {maj}.{min} (first use; cached in {CacheDir}, " +
                    "and `eldr kernels --warm` compiles them all ahead)");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var output = CompileWithNvrtc(family, arch, wantCubin: true);
        Log?.Invoke($"kernels: {family}.cu compiled in {sw.Elapsed.TotalSeconds:F1} s");
        var image = output.Cubin ?? output.Ptx;
        Store(cacheFile, image);
        return (image, "nvrtc");
    }

    /// <summary>The cache file of a family's image for sm_<paramref name="arch"/>: named by the SHA-256 of the source, the
    /// headers, the architecture, the NVRTC version and <see cref="Options"/>.</summary>
    public static string CacheFile(string family, int arch)
    {
        var (maj, min) = Nvrtc.Version();
        var key = new StringBuilder();
        key.Append(KernelSources.Source(family)).Append('\0');
        foreach (var (n, t) in KernelSources.Headers) key.Append(n).Append('\0').Append(t).Append('\0');
        key.Append("sm_").Append(arch).Append('\0').Append($"nvrtc {maj}.{min}").Append('\0').Append(string.Join(" ", Options(arch)));
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key.ToString())));
        return Path.Combine(CacheDir, $"{family}.sm_{arch}.{hash[..24]}.cubin");
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
