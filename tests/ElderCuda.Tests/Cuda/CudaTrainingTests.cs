using ElderCuda.Backends;
using ElderCuda.Backends.Cpu;
using ElderCuda.Model;
using ElderCuda.Tensors;
using ElderCuda.Tests.Model;
using ElderCuda.Training;

namespace ElderCuda.Tests.Cuda;

/// <summary>
/// Training paths written after the last GPU session, run on the GPU against references that do not
/// depend on it: the host-offloaded AdamW against the on-device AdamW on the same GPU, and the
/// distillation gradient against the CPU engine (DESIGN.md §7: CUDA F32 vs CPU &lt; 1e-4).
/// </summary>
[Collection("cuda")]
public class CudaTrainingTests
{
    static float[][] Train(IBackend be, bool offload, int steps)
    {
        using var m = CausalLM.Load(TestPaths.HfTiny("llama-gqa"), be);
        var batch = GateGradientTests.Batch("llama-gqa");
        using var opt = new AdamWOptimizer(be, m.Parameters, offloadToHost: offload) { WeightDecay = 0.01f };
        Assert.Equal(offload, opt.OffloadedToHost);
        for (int i = 0; i < steps; i++)
        {
            m.ZeroGrads();
            m.Step(batch, new StepOptions { Backward = true, WeightGrads = true });
            opt.Step(1e-3f);
        }
        return m.Parameters.Select(p => m.ReadParameter(p.Name)).ToArray();
    }

    [Theory]
    [InlineData(DType.F32, 1e-6)]
    [InlineData(DType.BF16, 1e-2)]
    public void HostOffloadedAdamWMatchesOnDeviceAdamW(DType d, double tol)
    {
        var be = CudaFixture.Get(d);
        var dev = Train(be, offload: false, steps: 3);
        var host = Train(be, offload: true, steps: 3);
        for (int i = 0; i < dev.Length; i++)
        {
            double e = Rel.Error(host[i], dev[i]);
            CudaFixture.Record("adamw host offload vs device", d, e);
            Assert.True(e < tol, $"parameter {i}: rel err {e:E2}");
        }
        using var fresh = CausalLM.Load(TestPaths.HfTiny("llama-gqa"), new CpuBackend());
        Assert.True(Rel.Error(dev[1], fresh.ReadParameter(fresh.Parameters[1].Name)) > 1e-4, "the weights did not move");
    }

    [Theory]
    [InlineData(1f)]
    [InlineData(2f)]
    public void DistillationGradientMatchesTheCpu(float temperature)
    {
        var gpu = CudaFixture.Get(DType.F32);
        var batch = GateGradientTests.Batch("llama-gqa");
        Dictionary<string, float[]> Run(IBackend be)
        {
            using var m = CausalLM.Load(TestPaths.HfTiny("llama-gqa"), be);
            int N = batch.Ids.Length, V = m.Config.VocabSize;
            using var teacher = be.FromHost(DistillationTests.RandomLogits(N, V, 5), DType.F32, N, V);
            m.Step(batch, new StepOptions { Backward = true, WeightGrads = true, TeacherLogits = teacher, SoftTargetWeight = 0.6f, SoftTargetTemperature = temperature });
            return Bf16PrecisionPolicyTests.Grads(m);
        }
        var cpu = Run(new CpuBackend());
        var cuda = Run(gpu);
        foreach (var (name, g) in cpu)
        {
            double e = Rel.Error(cuda[name], g);
            CudaFixture.Record($"distillation gradient vs cpu T={temperature}", DType.F32, e);
            Assert.True(e < 1e-4, $"{name}: rel err {e:E2}");
        }
    }
}
