using ElderCuda.Backends;
using ElderCuda.Backends.Cpu;

namespace ElderCuda.Tests.Model;

/// <summary>The stage-2 regulariser R = ‖a − b‖ (ℓ1, ℓ2) and its gradient against closed forms and float64 finite differences.</summary>
public class DiffNormOpTests
{
    [Theory]
    [InlineData(NormKind.L1)]
    [InlineData(NormKind.L2)]
    public void ValueAndGradientMatchClosedFormAndFiniteDifferences(NormKind kind)
    {
        var rng = new Random(7);
        int n = 37;
        // keep |a − b| ≥ 0.1 so that no ℓ1 kink lies within the finite-difference step
        var a = new float[n]; var b = new float[n];
        for (int i = 0; i < n; i++) { b[i] = rng.NextSingle() * 2 - 1; a[i] = b[i] + (rng.Next(2) * 2 - 1) * (0.1f + rng.NextSingle()); }
        double R(float[] x) => kind == NormKind.L1
            ? x.Select((v, i) => Math.Abs((double)v - b[i])).Sum()
            : Math.Sqrt(x.Select((v, i) => ((double)v - b[i]) * ((double)v - b[i])).Sum());

        var be = new CpuBackend();
        var ta = be.FromHost(a, be.ComputeType, n); var tb = be.FromHost(b, be.ComputeType, n);
        double norm = be.DiffNorm(ta, tb, kind);
        Assert.True(Math.Abs(norm - R(a)) / R(a) < 1e-6, $"R = {norm}, closed form {R(a)}");

        var da = be.Alloc(be.ComputeType, n); var db = be.Alloc(be.ComputeType, n);
        be.DiffNormBackward(da, db, ta, tb, kind, norm, 0.5f);
        var ga = new float[n]; var gb = new float[n]; be.ToHost(da, ga); be.ToHost(db, gb);
        const double h = 1e-3;
        for (int i = 0; i < n; i++)
        {
            var p = (float[])a.Clone(); p[i] += (float)h; double rp = R(p);
            p[i] = a[i] - (float)h; double rm = R(p);
            double numeric = 0.5 * (rp - rm) / ((double)(a[i] + (float)h) - (double)(a[i] - (float)h));
            Assert.True(Math.Abs(ga[i] - numeric) < 1e-4, $"dR/da[{i}] = {ga[i]} vs {numeric}");
            Assert.Equal(-ga[i], gb[i]); // R depends on a − b only
        }
    }
}
