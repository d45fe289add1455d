using ElderCuda.Backends;
using ElderCuda.Backends.Cpu;
using ElderCuda.Backends.Cuda;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Cuda;

/// <summary>
/// One CUDA backend per compute type for the whole test run (kernels compile once), plus the CPU
/// reference. Without a driver or device, <see cref="Get"/> skips the calling test with the reason.
/// </summary>
public static class CudaFixture
{
    static readonly object Lock = new();
    static readonly Dictionary<DType, CudaBackend> Backends = new();
    static string? _unavailable;
    public static readonly CpuBackend Cpu = new();

    public static CudaBackend Get(DType computeType)
    {
        lock (Lock)
        {
            if (_unavailable is null && !CudaBackend.IsAvailable(out var why)) _unavailable = why;
            if (_unavailable is { Length: > 0 }) Assert.Skip("no CUDA device: " + _unavailable);
            _unavailable = "";
            if (!Backends.TryGetValue(computeType, out var be)) Backends[computeType] = be = new CudaBackend(computeType);
            return be;
        }
    }

    /// <summary>Per-op worst relative errors seen in this run, for bench/RESULTS.md.</summary>
    public static readonly Dictionary<string, double> Worst = new();

    public static void Record(string op, DType d, double err)
    {
        var key = $"{op} [{d}]";
        lock (Worst)
        {
            Worst[key] = Worst.TryGetValue(key, out var w) ? Math.Max(w, err) : err;
            var log = Environment.GetEnvironmentVariable("ELDR_PARITY_LOG");
            if (!string.IsNullOrEmpty(log)) File.AppendAllText(log, $"{key}\t{err:E3}\n");
        }
    }
}

/// <summary>The CUDA tests share one backend per dtype, which runs one stream: run them one at a time.</summary>
[CollectionDefinition("cuda", DisableParallelization = true)]
public sealed class CudaCollection { }

/// <summary>Random inputs, NaN poisoning and relative-error checks shared by the CUDA parity tests.</summary>
internal sealed class Parity
{
    public readonly CudaBackend Gpu;
    public readonly IBackend Cpu = CudaFixture.Cpu;
    public readonly DType D;
    public readonly Random Rng;

    public Parity(DType d, int seed)
    {
        D = d;
        Gpu = CudaFixture.Get(d);
        Rng = new Random(seed);
    }

    public double FwdTol => D == DType.F32 ? 1e-4 : 1e-2;
    public double BwdTol => D == DType.F32 ? 1e-4 : 3e-2;

    /// <summary>Uniform in [−scale, scale], rounded to the compute dtype so both sides see the same inputs.</summary>
    public float[] Rand(long n, float scale = 1f)
    {
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = RoundD((float)(Rng.NextDouble() * 2 - 1) * scale);
        return a;
    }

    public float RoundD(float v) => D == DType.BF16 ? DTypes.Bf16ToFloat(DTypes.FloatToBf16(v)) : v;

    /// <summary>The same data on both backends: (gpu tensor in dtype d, cpu tensor).</summary>
    public (Tensor g, Tensor c) Both(float[] data, DType d, params int[] shape) =>
        (Gpu.FromHost(data, d, shape), Cpu.FromHost(data, DType.F32, shape));

    /// <summary>A GPU output filled with NaN, so any element the kernel does not write fails the check.</summary>
    public Tensor Poisoned(DType d, params int[] shape)
    {
        var t = Gpu.Alloc(d, shape);
        Gpu.FillBits(t, d == DType.F32 ? 0x7FC00000u : 0x7FC0u);
        return t;
    }

    public float[] Host(IBackend be, Tensor t)
    {
        var a = new float[t.Count];
        be.ToHost(t, a);
        return a;
    }

    /// <summary>‖got − want‖ / ‖want‖; NaN or ∞ gives +∞ (see <see cref="Rel.Error"/>).</summary>
    public static double RelError(ReadOnlySpan<float> got, ReadOnlySpan<float> want) => Rel.Error(got, want);

    /// <summary>Compare the GPU tensor with the CPU tensor; NaN anywhere fails.</summary>
    public double Check(string op, Tensor gpu, Tensor cpu, double tol)
    {
        Gpu.Synchronize();
        var g = Host(Gpu, gpu); var c = Host(Cpu, cpu);
        return CheckArrays(op, g, c, tol);
    }

    public double CheckArrays(string op, float[] g, float[] c, double tol)
    {
        int nan = g.Count(float.IsNaN);
        Assert.True(nan == 0, $"{op} [{D}]: {nan} of {g.Length} GPU elements are NaN (unwritten or invalid)");
        double e = RelError(g, c);
        CudaFixture.Record(op, D, e);
        Assert.True(e < tol, $"{op} [{D}]: relative error {e:E3} ≥ {tol:E0}");
        return e;
    }

    public double CheckScalar(string op, double got, double want, double tol)
    {
        Assert.False(double.IsNaN(got), $"{op}: NaN");
        double e = Math.Abs(got - want) / Math.Max(Math.Abs(want), 1e-30);
        CudaFixture.Record(op, D, e);
        Assert.True(e < tol, $"{op} [{D}]: {got} vs {want}, relative error {e:E3} ≥ {tol:E0}");
        return e;
    }
}
