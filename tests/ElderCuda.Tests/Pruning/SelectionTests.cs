using ElderCuda.Model;
using ElderCuda.Pruning;
using ElderCuda.Training;

namespace ElderCuda.Tests.Pruning;

public class SelectionTests
{
    static readonly ElderOptions Opts = new() { AllowLast = true, GateBatch = 2, Lambda1 = 5e-2, GateLr = 5e-2, Seed = 11 };

    [Theory]
    [InlineData(GateForm.Output)]
    [InlineData(GateForm.Branch)]
    public void ElderRemovalOrderAndGatesAreDeterministicForASeed(GateForm form)
    {
        GateSelection Run()
        {
            using var m = PruneTestUtil.Tiny();
            return Elder.SelectLayers(m, PruneTestUtil.Calib(m.Config.VocabSize), 2, form, Opts);
        }
        var a = Run();
        var b = Run();
        Assert.Equal(a.Order, b.Order);
        Assert.Equal(2, a.Order.Count);
        Assert.DoesNotContain(0, a.Order); // the first layer is never eligible by default
        Assert.Equal(2, a.GatesPerRound.Count);
        for (int r = 0; r < 2; r++) Assert.Equal(a.GatesPerRound[r], b.GatesPerRound[r]);
        Assert.Equal(a.Steps.Select(s => s.Loss), b.Steps.Select(s => s.Loss));
        // the gates moved, and the removed layer had the smallest |gate| among the eligible ones
        Assert.Contains(a.GatesPerRound[0], g => Math.Abs(g - 1f) > 1e-4);
        var g0 = a.GatesPerRound[0];
        Assert.All(new[] { 1, 2, 3 }.Where(i => i != a.Order[0]), i => Assert.True(Math.Abs(g0[a.Order[0]]) <= Math.Abs(g0[i])));
    }

    [Fact]
    public void SelectionLeavesTheModelAsItWas()
    {
        using var m = PruneTestUtil.Tiny();
        var cal = PruneTestUtil.Calib(m.Config.VocabSize);
        var before = PruneUtil.MeanCE(m, cal.HeldBack, 4);
        Elder.SelectLayers(m, cal, 2, GateForm.Branch, Opts);
        Sleb.Select(m, cal.Train, 2, 4);
        Assert.All(m.Gates, g => Assert.Equal(1f, g));
        Assert.All(m.Skip, s => Assert.False(s));
        Assert.Equal(GateForm.Output, m.GateForm);
        Assert.Equal(before, PruneUtil.MeanCE(m, cal.HeldBack, 4));
    }

    [Fact]
    public void SlebPicksTheLayerWhoseRemovalCostsLeastNll()
    {
        using var m = PruneTestUtil.Tiny();
        var cal = PruneTestUtil.Calib(m.Config.VocabSize);
        var (order, rounds) = Sleb.Select(m, cal.Train, 1, 4);
        // independent check: skip each eligible layer by hand and take the argmin of total NLL
        var nll = new Dictionary<int, double>();
        foreach (var l in new[] { 1, 2 })
        {
            m.Skip[l] = true;
            nll[l] = PruneUtil.Nll(m, cal.Train, 4).Nll;
            m.Skip[l] = false;
        }
        Assert.Equal(nll.MinBy(kv => kv.Value).Key, order[0]);
        Assert.Equal(Sleb.Select(m, cal.Train, 2, 4).Order, Sleb.Select(m, cal.Train, 2, 4).Order);
    }

    [Fact]
    public void BlockInfluenceIsOneMinusMeanTokenCosine()
    {
        using var m = PruneTestUtil.Tiny();
        var cal = PruneTestUtil.Calib(m.Config.VocabSize);
        var bi = ShortGpt.BlockInfluence(m, cal.Train, 4);
        // independent: from HF-style hidden states, input of layer i = hs[i], output = hs[i+1] (raw) except the last
        var r = m.Step(PruneUtil.Batch(cal.Train, 0, cal.Train.Count), new StepOptions { KeepHiddenStates = true });
        int d = m.Config.HiddenSize;
        for (int l = 0; l < m.NumLayers - 1; l++)
        {
            var a = r.HiddenStates![l]; var b = r.HiddenStates[l + 1];
            double s = 0; int n = a.Length / d;
            for (int t = 0; t < n; t++)
            {
                double ab = 0, aa = 0, bb = 0;
                for (int j = 0; j < d; j++) { ab += a[t * d + j] * (double)b[t * d + j]; aa += a[t * d + j] * (double)a[t * d + j]; bb += b[t * d + j] * (double)b[t * d + j]; }
                s += ab / Math.Sqrt(aa * bb);
            }
            Assert.Equal(1 - s / n, bi[l], 6);
        }
    }

    [Fact]
    public void OneShotAndTrainAllVariantsRunAndTrainAllMovesTheWeights()
    {
        using var m = PruneTestUtil.Tiny();
        var cal = PruneTestUtil.Calib(m.Config.VocabSize);
        var w0 = m.ReadParameter("model.layers.1.mlp.up_proj.weight");
        var one = Elder.SelectLayers(m, cal, 2, GateForm.Output, Opts with { OneShot = true });
        Assert.Single(one.GatesPerRound); // one pass, the k smallest taken at once
        Assert.Equal(2, one.Order.Count);
        Assert.Equal(w0, m.ReadParameter("model.layers.1.mlp.up_proj.weight"));
        var all = Elder.SelectLayers(m, cal, 1, GateForm.Output, Opts with { TrainAllInStage1 = true, Stage1WeightLr = 1e-3 });
        Assert.Single(all.Order);
        Assert.NotEqual(w0, m.ReadParameter("model.layers.1.mlp.up_proj.weight"));
        Assert.All(m.Parameters, p => Assert.Null(p.Grad)); // gradients freed afterwards
    }
}
