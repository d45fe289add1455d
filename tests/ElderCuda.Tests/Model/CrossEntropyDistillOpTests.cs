using ElderCuda.Backends.Cpu;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Model;

/// <summary>
/// The fused distillation loss op on its own: the loss it reports is the hard-target CE, and the gradient it writes
/// is that of (1 − α)·CE + α·T²·KL(p ‖ softmax(z/T)) with p = softmax(teacher/T), checked element by element against central differences of
/// that loss written out here in float64. The model-level tests (DistillationTests) go through the whole network.
/// </summary>
public class CrossEntropyDistillOpTests
{
    static double HardCe(double[] z, int t)
    {
        double max = z.Max(), s = z.Sum(v => Math.Exp(v - max));
        return max + Math.Log(s) - z[t];
    }

    static double Loss(double[] z, double[] p, int row, int t, double alpha, double temp)
    {
        int V = z.Length;
        double max = z.Max(), sT = z.Sum(v => Math.Exp((v - max) / temp)), kl = 0;
        for (int j = 0; j < V; j++)
        {
            double pj = p[row * V + j], logqT = (z[j] - max) / temp - Math.Log(sT);
            kl += pj * (Math.Log(pj) - logqT);
        }
        return (1 - alpha) * HardCe(z, t) + alpha * temp * temp * kl;
    }

    [Theory]
    [InlineData(0.6f, 2f)]
    [InlineData(1f, 0.5f)]
    [InlineData(0.3f, 1f)]
    public void GradientIsThatOfTheMixedLoss(float alpha, float temp)
    {
        const int N = 5, V = 23;
        const float scale = 0.25f;
        var rng = new Random(17);
        var logits = Enumerable.Range(0, N * V).Select(_ => (float)(4 * rng.NextDouble() - 2)).ToArray();
        var teacher = DistillationTests.RandomLogits(N, V, 19);
        var soft = DistillationTests.Softmax(teacher, V, temp);
        int[] targets = [3, -100, 22, 0, 11];

        var be = new CpuBackend();
        var tz = be.FromHost(logits, DType.F32, N, V); var tp = be.FromHost(teacher, DType.F32, N, V);
        var tt = be.FromHostInt(targets, N);
        var tl = be.Alloc(DType.F32, N); var td = be.Alloc(DType.F32, N, V);
        be.CrossEntropyDistill(tl, td, tz, tp, tt, scale, alpha, temp);
        var loss = new float[N]; var grad = new float[N * V];
        be.ToHost(tl, loss); be.ToHost(td, grad);

        for (int n = 0; n < N; n++)
        {
            var z = Enumerable.Range(0, V).Select(j => (double)logits[n * V + j]).ToArray();
            if (targets[n] < 0)
            {
                Assert.Equal(0f, loss[n]);
                Assert.All(grad.AsSpan(n * V, V).ToArray(), g => Assert.Equal(0f, g));
                continue;
            }
            Assert.True(Math.Abs(loss[n] - HardCe(z, targets[n])) < 1e-5, $"row {n}: loss {loss[n]} vs CE {HardCe(z, targets[n])}");
            const double h = 1e-4;
            for (int j = 0; j < V; j++)
            {
                var zp = (double[])z.Clone(); zp[j] += h;
                var zm = (double[])z.Clone(); zm[j] -= h;
                double numeric = scale * (Loss(zp, soft, n, targets[n], alpha, temp) - Loss(zm, soft, n, targets[n], alpha, temp)) / (2 * h);
                Assert.True(Math.Abs(grad[n * V + j] - numeric) < 1e-6, $"row {n}, logit {j}: {grad[n * V + j]:G6} vs finite difference {numeric:G6}");
            }
        }

        // in place, as the model calls it: the same gradient
        be.CrossEntropyDistill(tl, tz, tz, tp, tt, scale, alpha, temp);
        var inPlace = new float[N * V]; be.ToHost(tz, inPlace);
        Assert.Equal(grad, inPlace);
    }
}
