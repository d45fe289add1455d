using ElderCuda.Backends.Cpu;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Model;

/// <summary>
/// RMSNorm and LayerNorm backward on the CPU against float64 finite differences of ℓ = Σ out∘R, with more rows than
/// one band of the column reduction (150 rows: bands of 64, the last one partial), and SwiGLU against its float64
/// definition and finite differences.
/// </summary>
public class CpuNormOpTests
{
    static float[] Rand(Random r, int n, float scale = 1f) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (r.NextSingle() * 2 - 1) * scale; return a; }
    static float[] Host(CpuBackend be, Tensor t) { var a = new float[t.Count]; be.ToHost(t, a); return a; }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void NormBackwardMatchesFiniteDifferences(bool layerNorm)
    {
        int N = 150, C = 37; const float eps = 1e-5f;
        var r = new Random(layerNorm ? 11 : 12);
        float[] x = Rand(r, N * C, 2f), w = Rand(r, C), b = Rand(r, C), R = Rand(r, N * C);
        for (int i = 0; i < C; i++) w[i] += 1.5f;
        double Loss()
        {
            double l = 0;
            for (int n = 0; n < N; n++)
            {
                double m = 0, v = 0;
                if (layerNorm) { for (int i = 0; i < C; i++) m += x[n * C + i]; m /= C; }
                for (int i = 0; i < C; i++) { double d = x[n * C + i] - m; v += d * d; }
                double rs = 1 / Math.Sqrt(v / C + eps);
                for (int i = 0; i < C; i++) l += R[n * C + i] * ((x[n * C + i] - m) * rs * w[i] + (layerNorm ? b[i] : 0));
            }
            return l;
        }
        var be = new CpuBackend();
        var tx = be.FromHost(x, DType.F32, N, C); var tw = be.FromHost(w, DType.F32, C); var tb = be.FromHost(b, DType.F32, C);
        var o = be.Alloc(DType.F32, N, C); var mean = be.Alloc(DType.F32, N); var rstd = be.Alloc(DType.F32, N);
        var dx = be.Alloc(DType.F32, N, C); var dw = be.Alloc(DType.F32, C); var db = be.Alloc(DType.F32, C);
        var g = be.FromHost(R, DType.F32, N, C);
        if (layerNorm) { be.LayerNorm(o, mean, rstd, tx, tw, tb, eps); be.LayerNormBackward(dx, dw, db, g, tx, tw, mean, rstd); }
        else { be.RmsNorm(o, rstd, tx, tw, eps); be.RmsNormBackward(dx, dw, g, tx, tw, rstd); }
        FiniteDifference.Check(w, Host(be, dw), "dw", Loss);
        if (layerNorm) FiniteDifference.Check(b, Host(be, db), "db", Loss);
        FiniteDifference.Check(x, Host(be, dx), "dx", Loss);
    }

    [Fact]
    public void SwiGluMatchesDefinitionAndFiniteDifferences()
    {
        int N = 70, C = 45;
        var r = new Random(5);
        float[] gt = Rand(r, N * C, 4f), up = Rand(r, N * C, 2f), R = Rand(r, N * C);
        static double Silu(double v) => v / (1 + Math.Exp(-v));
        double Loss() { double l = 0; for (int i = 0; i < gt.Length; i++) l += R[i] * Silu(gt[i]) * up[i]; return l; }
        var be = new CpuBackend();
        var tg = be.FromHost(gt, DType.F32, N, C); var tu = be.FromHost(up, DType.F32, N, C);
        var o = be.Alloc(DType.F32, N, C);
        be.SwiGlu(o, tg, tu);
        var oh = Host(be, o);
        for (int i = 0; i < oh.Length; i++)
        {
            double want = Silu(gt[i]) * up[i];
            Assert.True(Math.Abs(oh[i] - want) <= 1e-6 * (1 + Math.Abs(want)), $"out[{i}] = {oh[i]}, float64 {want}");
        }
        var dg = be.Alloc(DType.F32, N, C); var du = be.Alloc(DType.F32, N, C);
        be.SwiGluBackward(dg, du, be.FromHost(R, DType.F32, N, C), tg, tu);
        FiniteDifference.Check(gt, Host(be, dg), "dGate", Loss);
        FiniteDifference.Check(up, Host(be, du), "dUp", Loss);
    }
}
