using ElderCuda.Tensors;
using ElderCuda.Tests.Model;

namespace ElderCuda.Tests.Cuda;

/// <summary>
/// Whole-model forward and backward on the GPU against transformers' float64 goldens, mirroring
/// <see cref="GoldenParityTests"/>: F32 mode logits and every parameter gradient &lt; 1e-4;
/// BF16 mode: logits &lt; 1e-2, every parameter gradient &lt; 3e-2 (DESIGN.md §7), per tensor.
/// Known failure (H100, 2026-11-22): in BF16 mode OPT's q/k projection gradients reach 0.38 and Phi's
/// 0.17–0.24 (every tensor is under 1e-4 in F32 mode). In these random-weight fixtures the q/k biases
/// dominate the projections, so those gradients are small differences of large bf16-rounded
/// activations; storing q/k (and their gradients) in bf16 between ops loses them. The fix is a
/// mixed-storage policy (fp32 q/k around attention); until it lands these two cases fail on a GPU.
/// </summary>
[Collection("cuda")]
public class CudaGoldenParityTests
{
    public static TheoryData<string, DType> Cases()
    {
        var t = new TheoryData<string, DType>();
        foreach (var f in TestPaths.TinyFamilies) { t.Add(f, DType.F32); t.Add(f, DType.BF16); }
        return t;
    }

    [Theory, MemberData(nameof(Cases))]
    public void LogitsAndGradientsMatchTransformers(string family, DType d)
    {
        var be = CudaFixture.Get(d);
        double logitTol = d == DType.F32 ? 1e-4 : 1e-2, gradTol = d == DType.F32 ? 1e-4 : 3e-2;
        var (r, m, gold, _) = GoldenParityTests.Run(family, be);
        using var _g = gold; using var _m = m;
        double le = Parity.RelError(r.Logits!, gold.ReadFloat32("logits"));
        CudaFixture.Record($"model {family} logits", d, le);
        Assert.True(le < logitTol, $"{family} [{d}] logits rel err {le:E2}");
        double loss = gold.ReadFloat32("loss")[0];
        Assert.True(Math.Abs(r.Loss - loss) / loss < logitTol, $"{family} [{d}] loss {r.Loss} vs {loss}");

        double worst = 0; string worstName = "";
        double num = 0, den = 0;
        var failures = new List<string>();
        var loose = new List<string>();
        foreach (var g in gold.Tensors.Where(t => t.Name.StartsWith("grad.")))
        {
            var p = m.Get(g.Name[5..]);
            var mine = new float[p.Grad!.Count];
            m.Backend.ToHost(p.Grad, mine);
            var reference = gold.ReadFloat32(g.Name);
            if (m.Config.RotaryDim == 0 && g.Name.EndsWith("k_proj.bias"))
            {
                // analytically zero (softmax is shift-invariant): both sides are round-off
                if (mine.Max(Math.Abs) >= (d == DType.F32 ? 1e-5f : 1e-3f)) failures.Add($"{g.Name}: expected ~0, max |g| = {mine.Max(Math.Abs):E2}");
                continue;
            }
            double e = Parity.RelError(mine, reference);
            if (e > worst) { worst = e; worstName = g.Name; }
            // DESIGN.md §7's bound holds per tensor in both modes; a known BF16 failure stays a failure
            if (!(e < gradTol)) { failures.Add($"{g.Name}: rel err {e:E2}"); loose.Add($"{g.Name} {e:E2}"); }
            for (int i = 0; i < mine.Length; i++) { double dd = (double)mine[i] - reference[i]; num += dd * dd; den += (double)reference[i] * reference[i]; }
        }
        double all = Math.Sqrt(num / den);
        CudaFixture.Record($"model {family} grads, all together", d, all);
        CudaFixture.Record($"model {family} grads, worst tensor ({worstName})", d, worst);
        if (loose.Count > 0) CudaFixture.Record($"model {family} grads over 3e-2: {string.Join(", ", loose)}", d, 0);
        Assert.True(all < gradTol, $"{family} [{d}] all gradients together: rel err {all:E2}");
        Assert.True(failures.Count == 0, $"{family} [{d}]: " + string.Join("; ", failures));
    }
}
