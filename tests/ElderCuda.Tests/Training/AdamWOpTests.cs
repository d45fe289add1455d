using ElderCuda.Backends.Cpu;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Training;

/// <summary>
/// The CPU backend's fused AdamW (the reference the CUDA kernel is compared with, and the host-offloaded optimiser's
/// update) against torch.optim.AdamW's update written out in float64: decoupled weight decay, then
/// p −= lr·m̂ / (√v̂ + ε) with bias-corrected moments. Sizes cover a vector tail and more than one parallel block.
/// </summary>
public class AdamWOpTests
{
    [Theory]
    [InlineData(3, false)]
    [InlineData(65536 + 37, false)]
    [InlineData(2 * 65536 + 5, true)]
    public void ThreeStepsMatchTheClosedForm(int n, bool separateParam)
    {
        const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
        var rng = new Random(n);
        var p0 = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var be = new CpuBackend();
        var master = be.FromHost(p0, DType.F32, n);
        var m = be.Alloc(DType.F32, n); var v = be.Alloc(DType.F32, n);
        var param = separateParam ? be.Alloc(DType.F32, n) : master;

        var P = p0.Select(x => (double)x).ToArray(); var M = new double[n]; var Vv = new double[n];
        for (int step = 1; step <= 3; step++)
        {
            // gradients of mixed scale, with exact zeros, so that ε and the decay both matter somewhere
            var g = Enumerable.Range(0, n).Select(i => i % 11 == 0 ? 0f : (float)((rng.NextDouble() * 2 - 1) * Math.Pow(10, -(i % 4)))).ToArray();
            be.AdamW(param, master, be.FromHost(g, DType.F32, n), m, v, lr, b1, b2, eps, wd, step);
            double bc1 = 1 - Math.Pow(b1, step), bc2 = 1 - Math.Pow(b2, step);
            for (int i = 0; i < n; i++)
            {
                P[i] *= 1 - (double)lr * wd;
                M[i] = b1 * M[i] + (1 - (double)b1) * g[i];
                Vv[i] = b2 * Vv[i] + (1 - (double)b2) * (double)g[i] * g[i];
                P[i] -= lr * (M[i] / bc1) / (Math.Sqrt(Vv[i] / bc2) + eps);
            }
        }
        var got = new float[n]; var gotParam = new float[n]; var gotM = new float[n]; var gotV = new float[n];
        be.ToHost(master, got); be.ToHost(param, gotParam); be.ToHost(m, gotM); be.ToHost(v, gotV);
        Assert.True(Rel.Error(got, P.Select(x => (float)x).ToArray()) < 1e-6, $"master: rel err {Rel.Error(got, P.Select(x => (float)x).ToArray()):E2}");
        Assert.True(Rel.Error(gotM, M.Select(x => (float)x).ToArray()) < 1e-6, "m");
        Assert.True(Rel.Error(gotV, Vv.Select(x => (float)x).ToArray()) < 1e-6, "v");
        Assert.Equal(got, gotParam);
        // the weights moved by more than round-off
        Assert.True(Rel.Error(got, p0) > 1e-3);
    }
}
