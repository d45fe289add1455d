using ElderCuda.Backends.Cpu;
using ElderCuda.Model;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Model;

/// <summary>
/// Stage 2 `distill`: the logits gradient of (1 − α)·CE(hard) + α·T²·KL(softmax(teacher/T) ‖ softmax(z/T)), checked
/// against closed forms (a one-hot teacher is the hard targets; a teacher equal to the student leaves only the hard
/// term) and against finite differences of the mixed loss computed here on the host in float64 from the model's
/// logits and the teacher's.
/// </summary>
public class DistillationTests
{
    static float[] Grad(CausalLM m, string name)
    {
        var g = new float[m.Get(name).Grad!.Count];
        m.Backend.ToHost(m.Get(name).Grad!, g);
        return g;
    }

    [Fact]
    public void OneHotSoftTargetsGiveTheCrossEntropyGradient()
    {
        using var m = CausalLM.Load(TestPaths.HfTiny("llama-gqa"), new CpuBackend());
        var batch = GateGradientTests.Batch("llama-gqa");
        int V = m.Config.VocabSize, N = batch.Ids.Length;
        m.Step(batch, new StepOptions { Backward = true, WeightGrads = true });
        var plain = Grad(m, "model.layers.1.mlp.up_proj.weight");
        // teacher logits 0 at the next token and −1e9 elsewhere: softmax gives exactly the one-hot hard targets
        var onehot = new float[(long)N * V];
        Array.Fill(onehot, -1e9f);
        for (int b = 0; b < batch.B; b++)
            for (int t = 0; t < batch.T - 1; t++) onehot[(long)(b * batch.T + t) * V + batch.Ids[b * batch.T + t + 1]] = 0f;
        m.ZeroGrads();
        using var teacher = m.Backend.FromHost(onehot, DType.F32, N, V);
        m.Step(batch, new StepOptions { Backward = true, WeightGrads = true, TeacherLogits = teacher, SoftTargetWeight = 0.7f });
        var mixed = Grad(m, "model.layers.1.mlp.up_proj.weight");
        Assert.True(Rel.Error(mixed, plain) < 1e-6, $"rel err {Rel.Error(mixed, plain):E2}");
    }

    [Fact]
    public void MixedLossGradientMatchesFiniteDifferences()
    {
        using var m = CausalLM.Load(TestPaths.HfTiny("llama-gqa"), new CpuBackend());
        var batch = GateGradientTests.Batch("llama-gqa");
        int V = m.Config.VocabSize, N = batch.Ids.Length;
        const float alpha = 0.6f;
        // an arbitrary teacher (fixed random logits per row); its probabilities at T = 1, in float64, for the loss below
        var teacherLogits = RandomLogits(N, V, 3);
        var soft = Softmax(teacherLogits, V, 1.0);
        // the mixed loss from logits, in float64: mean over predicted rows of −(1−α)·log q[y] − α·Σ p log q
        double Loss() => MeanOverPredictedRows(m, batch, (lg, n, y) =>
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < V; j++) max = Math.Max(max, lg[n * V + j]);
            double z = 0; for (int j = 0; j < V; j++) z += Math.Exp(lg[n * V + j] - max);
            double lse = max + Math.Log(z), softCe = 0;
            for (int j = 0; j < V; j++) softCe -= soft[n * V + j] * (lg[n * V + j] - lse);
            return (1 - alpha) * (lse - lg[n * V + y]) + alpha * softCe;
        });
        using var teacher = m.Backend.FromHost(teacherLogits, DType.F32, N, V);
        m.Step(batch, new StepOptions { Backward = true, WeightGrads = true, TeacherLogits = teacher, SoftTargetWeight = alpha });
        AssertMatchesFiniteDifferences(m, Loss, [("model.layers.2.mlp.down_proj.weight", 11), ("model.layers.0.self_attn.q_proj.weight", 40)], "");
    }

    /// <summary>
    /// The gradient already in the model against Richardson-extrapolated central differences of
    /// <paramref name="loss"/> (see GateGradientTests for the error budget), at the given parameter entries.
    /// </summary>
    static void AssertMatchesFiniteDifferences(CausalLM m, Func<double> loss, (string name, int idx)[] entries, string label)
    {
        foreach (var (name, idx) in entries)
        {
            if (!m.TryGet(name, out _)) continue;
            var g = Grad(m, name);
            var w = m.ReadParameter(name);
            float w0 = w[idx];
            double D(double h)
            {
                w[idx] = (float)(w0 + h); m.WriteParameter(name, w); double lp = loss();
                w[idx] = (float)(w0 - h); m.WriteParameter(name, w); double lm = loss();
                return (lp - lm) / (2 * h);
            }
            double numeric = (4 * D(1e-2) - D(2e-2)) / 3;
            w[idx] = w0; m.WriteParameter(name, w);
            double scale = Math.Max(Math.Abs(g[idx]), 1e-2);
            Assert.True(Math.Abs(g[idx] - numeric) / scale < 1e-3, $"{label}{name}[{idx}]: analytic {g[idx]:G6} vs finite difference {numeric:G6}");
        }
    }

    /// <summary>The mean over predicted rows (every position but each sequence's last) of a per-row loss of the logits.</summary>
    static double MeanOverPredictedRows(CausalLM m, TokenBatch batch, Func<float[], long, int, double> rowLoss)
    {
        var lg = m.Step(batch, new StepOptions { KeepLogits = true }).Logits!;
        double total = 0; int count = 0;
        for (int b = 0; b < batch.B; b++)
            for (int t = 0; t < batch.T - 1; t++)
            {
                int n = b * batch.T + t;
                total += rowLoss(lg, n, batch.Ids[n + 1]);
                count++;
            }
        return total / count;
    }

    /// <summary>Random logits in [−4, 4), a stand-in for a teacher's.</summary>
    internal static float[] RandomLogits(int N, int V, int seed)
    {
        var rng = new Random(seed);
        var t = new float[(long)N * V];
        for (long i = 0; i < t.Length; i++) t[i] = (float)(8 * rng.NextDouble() - 4);
        return t;
    }

    /// <summary>softmax(logits/T) of every row [N, V], in float64.</summary>
    internal static double[] Softmax(float[] logits, int V, double temp)
    {
        var p = new double[logits.Length];
        for (long n = 0; n < logits.Length / V; n++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < V; j++) max = Math.Max(max, logits[n * V + j]);
            for (int j = 0; j < V; j++) sum += p[n * V + j] = Math.Exp((logits[n * V + j] - max) / temp);
            for (int j = 0; j < V; j++) p[n * V + j] /= sum;
        }
        return p;
    }

    [Theory]
    [InlineData(2.0f, 0.6f)]
    [InlineData(0.5f, 1.0f)]
    public void TemperatureLossGradientMatchesFiniteDifferences(float temp, float alpha)
    {
        using var m = CausalLM.Load(TestPaths.HfTiny("llama-gqa"), new CpuBackend());
        var batch = GateGradientTests.Batch("llama-gqa");
        int V = m.Config.VocabSize, N = batch.Ids.Length;
        var teacherLogits = RandomLogits(N, V, 5);
        var soft = Softmax(teacherLogits, V, temp);
        // the loss written out here in float64: mean over predicted rows of
        // (1−α)·(−log softmax(z)[y]) + α·T²·Σ_j p_j·(log p_j − log softmax(z/T)_j)
        double Loss() => MeanOverPredictedRows(m, batch, (lg, n, y) =>
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < V; j++) max = Math.Max(max, lg[n * V + j]);
            double z1 = 0, zT = 0;
            for (int j = 0; j < V; j++) { z1 += Math.Exp(lg[n * V + j] - max); zT += Math.Exp((lg[n * V + j] - max) / temp); }
            double lse1 = max + Math.Log(z1), kl = 0;
            for (int j = 0; j < V; j++)
            {
                double p = soft[n * V + j], logqT = (lg[n * V + j] - max) / temp - Math.Log(zT);
                kl += p * (Math.Log(p) - logqT);
            }
            return (1 - alpha) * (lse1 - lg[n * V + y]) + alpha * temp * temp * kl;
        });
        using var teacher = m.Backend.FromHost(teacherLogits, DType.F32, N, V);
        m.Step(batch, new StepOptions { Backward = true, WeightGrads = true, TeacherLogits = teacher, SoftTargetWeight = alpha, SoftTargetTemperature = temp });
        AssertMatchesFiniteDifferences(m, Loss, [("model.layers.2.mlp.down_proj.weight", 11), ("model.layers.0.self_attn.q_proj.weight", 40), ("lm_head.weight", 77)], $"T={temp} ");
    }

    [Fact]
    public void TeacherEqualToStudentAtTemperatureLeavesOnlyTheHardTerm()
    {
        // closed form: when the teacher is the student itself, p = softmax(z/T) and KL(p ‖ softmax(z/T)) is at its
        // minimum, so its gradient vanishes and the mixed gradient is (1 − α) times the plain CE gradient
        using var m = CausalLM.Load(TestPaths.HfTiny("llama-gqa"), new CpuBackend());
        var batch = GateGradientTests.Batch("llama-gqa");
        int V = m.Config.VocabSize, N = batch.Ids.Length;
        const float temp = 3f, alpha = 0.25f;
        var lg = m.Step(batch, new StepOptions { KeepLogits = true }).Logits!;
        using var self = m.Backend.FromHost(lg, DType.F32, N, V);
        m.Step(batch, new StepOptions { Backward = true, WeightGrads = true });
        var plain = Grad(m, "model.layers.1.mlp.up_proj.weight");
        m.ZeroGrads();
        m.Step(batch, new StepOptions { Backward = true, WeightGrads = true, TeacherLogits = self, SoftTargetWeight = alpha, SoftTargetTemperature = temp });
        var mixed = Grad(m, "model.layers.1.mlp.up_proj.weight");
        var expected = plain.Select(x => (1 - alpha) * x).ToArray();
        Assert.True(Rel.Error(mixed, expected) < 1e-5, $"rel err {Rel.Error(mixed, expected):E2}");
    }
}
