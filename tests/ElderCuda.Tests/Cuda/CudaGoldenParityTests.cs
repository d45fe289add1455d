using ElderCuda.Tensors;
using ElderCuda.Tests.Model;

namespace ElderCuda.Tests.Cuda;

/// <summary>
/// Whole-model forward and backward on the GPU against transformers' float64 goldens, mirroring
/// <see cref="GoldenParityTests"/>: F32 mode logits and every parameter gradient &lt; 1e-4.
/// BF16 mode (DESIGN.md §7, "CUDA bf16 vs CPU"): logits &lt; 1e-2 and all gradients together &lt; 3e-2
/// against the goldens, and every gradient tensor &lt; 3e-2 against the CPU engine in float32 on the same
/// bf16-rounded weights. The fixtures' weights are float32; rounding them to bf16 alone moves OPT's
/// fc1/final_layer_norm gradients by up to 5% in exact arithmetic (Bf16PrecisionPolicyTests), which is
/// the model changing, not the engine's error.
/// Known failure: on the H100 (sixth session) OPT's worst gradient tensor was 0.17 and Phi's 0.059. The CPU emulation
/// (Bf16PrecisionPolicyTests, which models the tensor-core attention's rounding) gives 0.21 and 0.060 for those
/// kernels, and 0.079 and 0.054 for the eighth session's (dQ on centred keys; O normalised by the sums of the bf16
/// P): still over 3e-2, from the GEMMs' bf16 operands, so OPT and Phi are expected to fail here.
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
        // per-tensor reference in BF16 mode: the CPU engine on the same bf16-rounded weights
        Dictionary<string, float[]>? cpuRef = null;
        if (d != DType.F32)
        {
            var (_, mc, goldC, _) = GoldenParityTests.Run(family, new ElderCuda.Backends.Cpu.CpuBackend(), Bf16PrecisionPolicyTests.RoundWeightsToBf16);
            using (goldC) using (mc) cpuRef = Bf16PrecisionPolicyTests.Grads(mc);
        }
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
            var perTensorRef = cpuRef is null ? reference : cpuRef[g.Name[5..]];
            if (m.Config.RotaryDim == 0 && g.Name.EndsWith("k_proj.bias"))
            {
                // analytically zero (softmax is shift-invariant): both sides are round-off
                if (mine.Max(Math.Abs) >= (d == DType.F32 ? 1e-5f : 1e-3f)) failures.Add($"{g.Name}: expected ~0, max |g| = {mine.Max(Math.Abs):E2}");
                continue;
            }
            double e = Parity.RelError(mine, perTensorRef);
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
