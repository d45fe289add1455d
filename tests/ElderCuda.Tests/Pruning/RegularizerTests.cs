using ElderCuda.Backends;
using ElderCuda.Model;
using ElderCuda.Pruning;

namespace ElderCuda.Tests.Pruning;

/// <summary>ELDeR stage 2's λ2·Σ R(x_out − x_in) (DESIGN.md §4): its value from the layers' raw input/output, and its gradient by central differences.</summary>
public class RegularizerTests
{
    static readonly int[] P = [1, 2];

    [Theory]
    [InlineData(NormKind.L2)]
    [InlineData(NormKind.L1)]
    public void RegulariserValueIsTheNormalisedNormOfOutputMinusInput(NormKind kind)
    {
        using var m = PruneTestUtil.Tiny();
        var cal = PruneTestUtil.Calib(m.Config.VocabSize);
        var batch = PruneUtil.Batch(cal.Train, 0, 2);
        int N = batch.B * batch.T, d = m.Config.HiddenSize;
        double expected = 0;
        var r = m.Step(batch, new StepOptions
        {
            DiffRegLayers = P, DiffRegLambda = 0.7f, DiffRegNorm = kind,
            LayerHook = (l, x, y) =>
            {
                if (!P.Contains(l)) return;
                var a = new float[x.Count]; var b = new float[y.Count];
                m.Backend.ToHost(x, a); m.Backend.ToHost(y, b);
                double s = 0;
                for (int i = 0; i < a.Length; i++) s += kind == NormKind.L2 ? Math.Pow((double)b[i] - a[i], 2) : Math.Abs((double)b[i] - a[i]);
                // normalisation stated in StepOptions: ℓ2 / sqrt(N·d) (an RMS), ℓ1 / (N·d)
                expected += 0.7 * (kind == NormKind.L2 ? Math.Sqrt(s) / Math.Sqrt((double)N * d) : s / ((double)N * d));
            },
        });
        Assert.True(Math.Abs(r.RegLoss - expected) <= 1e-5 * expected, $"reg {r.RegLoss} vs {expected}");
    }

    [Theory]
    [InlineData("model.layers.0.mlp.down_proj.weight")]
    [InlineData("model.layers.1.self_attn.o_proj.weight")]
    [InlineData("model.layers.2.mlp.up_proj.weight")]
    public void RegulariserGradientMatchesCentralDifferences(string name)
    {
        using var m = PruneTestUtil.Tiny();
        var cal = PruneTestUtil.Calib(m.Config.VocabSize);
        var batch = PruneUtil.Batch(cal.Train, 0, 2);
        const float lambda = 1f;
        foreach (var p in m.Parameters) p.Trainable = p.Name == name;

        float[] Grad(float lam)
        {
            m.EnsureGrads(); m.ZeroGrads();
            m.Step(batch, new StepOptions { Backward = true, WeightGrads = true, DiffRegLayers = P, DiffRegLambda = lam });
            var g = new float[m.Get(name).Grad!.Count];
            m.Backend.ToHost(m.Get(name).Grad!, g);
            return g;
        }
        var gWith = Grad(lambda);
        var gCe = Grad(0f);
        // the regulariser's own gradient = total minus CE-only
        var gReg = gWith.Zip(gCe, (a, b) => (double)a - b).ToArray();

        var theta = m.ReadParameter(name);
        // direction: the sign of the regulariser gradient plus a seeded random part, so the derivative is not tiny
        var rng = new Random(3);
        var v = gReg.Select(g => Math.Sign(g) + 0.5 * (rng.NextDouble() - 0.5)).ToArray();
        double analytic = gReg.Zip(v, (g, x) => g * x).Sum();

        double Reg(double eps)
        {
            var t = theta.Select((x, i) => (float)(x + eps * v[i])).ToArray();
            m.WriteParameter(name, t);
            return m.Step(batch, new StepOptions { DiffRegLayers = P, DiffRegLambda = lambda }).RegLoss;
        }
        // Richardson extrapolation of two central differences cancels the O(h²) term
        double Cd(double h) => (Reg(h) - Reg(-h)) / (2 * h);
        const double h0 = 2e-3;
        double fd1 = Cd(h0), fd2 = Cd(h0 / 2);
        double fd = (4 * fd2 - fd1) / 3;
        
        m.WriteParameter(name, theta);
        Assert.True(Math.Abs(analytic) > 1e-3, $"directional derivative too small to test: {analytic}");
        Assert.True(Math.Abs(fd - analytic) <= 3e-3 * Math.Abs(analytic), $"{name}: analytic {analytic:E6} vs central difference {fd:E6}");
    }
}
