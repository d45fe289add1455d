using ElderCuda.Backends.Cpu;
using ElderCuda.Model;
using ElderCuda.Training;
using ElderCuda.Tests.Model;

namespace ElderCuda.Tests.Training;

/// <summary>
/// The host-offloaded AdamW (the 7B memory plan) is the same optimiser: after several steps on the same
/// gradients, weights agree with the on-device path to float32 round-off, and a save/load round trip
/// of its state continues identically.
/// </summary>
public class HostOffloadTests
{
    static float[][] Train(bool offload, int steps, out AdamWOptimizer opt, out CausalLM m)
    {
        m = CausalLM.Load(TestPaths.HfTiny("llama-gqa"), new CpuBackend());
        var batch = GateGradientTests.Batch("llama-gqa");
        opt = new AdamWOptimizer(m.Backend, m.Parameters, offloadToHost: offload) { WeightDecay = 0.01f };
        Assert.Equal(offload, opt.OffloadedToHost);
        for (int i = 0; i < steps; i++)
        {
            m.ZeroGrads();
            m.Step(batch, new StepOptions { Backward = true, WeightGrads = true });
            opt.Step(1e-3f);
        }
        var mm = m;
        return m.Parameters.Select(p => mm.ReadParameter(p.Name)).ToArray();
    }

    [Fact]
    public void OffloadedAdamWMatchesOnDeviceAdamW()
    {
        var dev = Train(false, 3, out var o1, out var m1);
        var host = Train(true, 3, out var o2, out var m2);
        for (int i = 0; i < dev.Length; i++)
        {
            double e = Rel.Error(host[i], dev[i]);
            Assert.True(e < 1e-6, $"{m1.Parameters[i].Name}: rel err {e:E2}");
        }
        // the offloaded run accounted its three parts; the on-device one has none
        Assert.True(o2.HostTimes.Download > 0 && o2.HostTimes.Update > 0 && o2.HostTimes.Upload > 0, $"offloaded: {o2.HostTimes}");
        Assert.Equal(0, o1.HostTimes.Total);
        // and the weights moved (the comparison is not between two untouched models)
        var fresh = CausalLM.Load(TestPaths.HfTiny("llama-gqa"), new CpuBackend());
        Assert.True(Rel.Error(dev[1], fresh.ReadParameter(m1.Parameters[1].Name)) > 1e-5);
        o1.Dispose(); o2.Dispose(); m1.Dispose(); m2.Dispose(); fresh.Dispose();
    }

    [Fact]
    public void OffloadedStateRoundTripsThroughSaveAndLoad()
    {
        Train(true, 2, out var opt, out var m);
        var state = new Dictionary<string, float[]>();
        opt.SaveState(state);
        var before = m.Parameters.Select(p => m.ReadParameter(p.Name)).ToArray();
        var opt2 = new AdamWOptimizer(m.Backend, m.Parameters, offloadToHost: true);
        opt2.LoadState(state);
        var s2 = new Dictionary<string, float[]>();
        opt2.SaveState(s2);
        foreach (var (k, v) in state) Assert.Equal(v, s2[k]);
        var after = m.Parameters.Select(p => m.ReadParameter(p.Name)).ToArray();
        for (int i = 0; i < before.Length; i++) Assert.Equal(before[i], after[i]);
        opt.Dispose(); opt2.Dispose(); m.Dispose();
    }
}
