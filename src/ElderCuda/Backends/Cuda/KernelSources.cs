using System.Reflection;

namespace ElderCuda.Backends.Cuda;

/// <summary>
/// The CUDA C sources embedded in this assembly (kernels/*.cu and kernels/*.cuh, logical names
/// "kernels/&lt;file&gt;"). A family is one .cu file: "rmsnorm", "attention", ...
/// </summary>
public static class KernelSources
{
    const string Prefix = "kernels/";
    static readonly Assembly Asm = typeof(KernelSources).Assembly;
    static readonly Lazy<Dictionary<string, string>> All = new(Load);

    static Dictionary<string, string> Load()
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in Asm.GetManifestResourceNames())
        {
            if (!name.StartsWith(Prefix, StringComparison.Ordinal)) continue;
            using var s = Asm.GetManifestResourceStream(name)!;
            using var r = new StreamReader(s);
            d[name[Prefix.Length..]] = r.ReadToEnd();
        }
        return d;
    }

    /// <summary>Every kernel family (the .cu files), sorted.</summary>
    public static IReadOnlyList<string> Families =>
        All.Value.Keys.Where(k => k.EndsWith(".cu", StringComparison.Ordinal)).Select(k => k[..^3]).Order(StringComparer.Ordinal).ToList();

    /// <summary>Headers handed to NVRTC by name (common.cuh).</summary>
    public static IReadOnlyList<(string name, string text)> Headers =>
        All.Value.Where(kv => kv.Key.EndsWith(".cuh", StringComparison.Ordinal)).OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => (kv.Key, kv.Value)).ToList();

    public static string Source(string family) =>
        All.Value.TryGetValue(family + ".cu", out var s) ? s
            : throw new ArgumentException($"no embedded kernel source kernels/{family}.cu (have: {string.Join(", ", Families)})");
}
