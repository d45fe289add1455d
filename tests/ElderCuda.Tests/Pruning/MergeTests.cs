using ElderCuda.Pruning;

namespace ElderCuda.Tests.Pruning;

public class MergeTests
{
    [Fact]
    public void CombineIsBasePlusSumOfDifferences()
    {
        // θ* = θ_l + Σ_k (θ_k − θ_l): by hand, 1 + (3 − 1) + (0 − 1) = 2 and 2 + (5 − 2) + (−4 − 2) = −1
        var r = Merge.Combine([1f, 2f], [[3f, 5f], [0f, -4f]]);
        Assert.Equal([2f, -1f], r);
        // with one other layer the formula is just that layer (θ_l + θ_k − θ_l)
        Assert.Equal([7f, 8f], Merge.Combine([1f, 2f], [[7f, 8f]]));
    }

    [Fact]
    public void MergeIntoWritesTheFormulaToLinearWeightsAndKeepsTheBaseNorms()
    {
        using var m = PruneTestUtil.Tiny("phi"); // 4 layers, biases everywhere, LayerNorm weights and biases
        var before = m.Parameters.ToDictionary(p => p.Name, p => m.ReadParameter(p.Name));
        Merge.MergeInto(m, 1, [2, 3]);
        foreach (var p in m.LayerParameters(1))
        {
            var got = m.ReadParameter(p.Name);
            var b = before[p.Name];
            if (p.LocalName.Contains("norm"))
            {
                Assert.Equal(b, got);
                continue;
            }
            var t2 = before[m.LayerPrefix(2) + p.LocalName];
            var t3 = before[m.LayerPrefix(3) + p.LocalName];
            for (int i = 0; i < b.Length; i++)
            {
                double want = b[i] + (t2[i] - (double)b[i]) + (t3[i] - (double)b[i]);
                Assert.True(Math.Abs(got[i] - want) <= 1e-6 * Math.Max(1, Math.Abs(want)), $"{p.Name}[{i}]: {got[i]} vs {want}");
            }
        }
        // other layers untouched
        foreach (var l in new[] { 0, 2, 3 })
            foreach (var p in m.LayerParameters(l)) Assert.Equal(before[p.Name], m.ReadParameter(p.Name));
    }
}
