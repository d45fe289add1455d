using ElderCuda.Pruning;

namespace ElderCuda.Tests.Pruning;

/// <summary>
/// LaCo's similarity reference: the paper's Algorithm 1 compares every trial merge with the dense model; the
/// alternative compares with the model merged so far. Checked by rebuilding each accepted merge on a fresh
/// copy of the model and measuring its cos against both references directly.
/// </summary>
public class LaCoTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void EachAcceptedMergeIsMeasuredAgainstTheChosenReference(bool compareToOriginal)
    {
        using var m = PruneTestUtil.Tiny("llama-gqa");
        var windows = PruneTestUtil.Calib(m.Config.VocabSize).Train.Take(4).ToList();
        int d = m.Config.HiddenSize;
        // threshold −1 accepts the first group of every sweep: two merges of one layer each
        var steps = LaCo.Run(m, windows, 2, threshold: -1, groupSize: 2, batch: 4, compareToOriginal: compareToOriginal);
        Assert.Equal(2, steps.Count);

        using var fresh = PruneTestUtil.Tiny("llama-gqa");
        var dense = PruneUtil.FinalHidden(fresh, windows, 4);
        var before = dense;
        List<float[]>? afterFirst = null;
        foreach (var s in steps)
        {
            int b = fresh.OriginalLayerIndex.ToList().IndexOf(s.BaseOriginal);
            var others = s.MergedAwayOriginal.Select(o => fresh.OriginalLayerIndex.ToList().IndexOf(o)).ToList();
            Merge.MergeInto(fresh, b, others);
            fresh.RemoveLayers(others);
            var after = PruneUtil.FinalHidden(fresh, windows, 4);
            double expected = PruneUtil.MeanCos(compareToOriginal ? dense : before, after, d);
            Assert.True(Math.Abs(s.Cos - expected) < 1e-6, $"step into {s.BaseOriginal}: cos {s.Cos} vs {expected}");
            afterFirst ??= after;
            before = after;
        }
        // the two references differ for the second merge, so the test tells them apart
        double otherReference = PruneUtil.MeanCos(compareToOriginal ? afterFirst! : dense, before, d);
        Assert.True(Math.Abs(steps[1].Cos - otherReference) > 1e-4, $"the references coincide on this fixture ({otherReference})");
    }
}
