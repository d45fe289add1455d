namespace ElderCuda.Tests;

/// <summary>Locates the repository's files from the test binary's folder.</summary>
public static class TestPaths
{
    public static string RepoRoot { get; } = FindRoot();

    static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "ELDeR.Cuda.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("ELDeR.Cuda.sln not found above " + AppContext.BaseDirectory);
    }

    public static string Fixture(params string[] parts) => Path.Combine([RepoRoot, "tests", "ElderCuda.Tests", "fixtures", .. parts]);
    public static string HfTiny(string family) => Fixture("hf-tiny", family);
    public static string BundledModel => Path.Combine(RepoRoot, "models", "llama-12L");
    /// <summary>../shared beside the checkout (CI and developer machines), or null.</summary>
    public static string? Shared
    {
        get
        {
            var p = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));
            return Directory.Exists(p) ? p : null;
        }
    }

    public static readonly string[] TinyFamilies = ["llama-gqa", "llama3-tied", "qwen2", "opt", "phi"];
}

public static class Rel
{
    /// <summary>‖a − b‖ / ‖b‖ in float64; NaN or ∞ anywhere gives +∞ so that it never passes.</summary>
    public static double Error(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"lengths differ: {a.Length} vs {b.Length}");
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++)
        {
            if (!float.IsFinite(a[i]) || !float.IsFinite(b[i])) return double.PositiveInfinity;
            double d = (double)a[i] - b[i];
            num += d * d; den += (double)b[i] * b[i];
        }
        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
    }
}
