using ElderCuda.Model;

namespace ElderCuda.Pruning;

/// <summary>
/// LaCo (arXiv 2402.11187), as PRUNING.md's reference ran it: top-down sweeps over base layers l; at each
/// l, merge the next m layers into l (groups of up to GroupSize layers, m = min(GroupSize − 1, layers
/// still to remove)) with θ_l + Σ_k (θ_{l+k} − θ_l); accept when the mean per-token cos between the final
/// hidden states (after the final norm) of the dense model (or, optionally, the model merged so far) and the merged one is ≥ threshold, then
/// continue the sweep below. When a whole sweep accepts nothing, the sweep's best group is taken.
/// </summary>
public static class LaCo
{
    public sealed record MergeStep(int BaseOriginal, List<int> MergedAwayOriginal, double Cos, bool Forced);

    /// <param name="compareToOriginal">
    /// true: a trial merge is compared with the dense model's final hidden states, as the paper's Algorithm 1 and
    /// its published code do; false: with the model as merged so far.
    /// </param>
    public static List<MergeStep> Run(CausalLM m, IReadOnlyList<int[]> windows, int k, double threshold = 0.6, int groupSize = 3,
        int batch = 8, Action<string>? log = null, CancellationToken ct = default, bool compareToOriginal = true)
    {
        var steps = new List<MergeStep>();
        int d = m.Config.HiddenSize;
        var original = compareToOriginal ? PruneUtil.FinalHidden(m, windows, batch) : null;
        while (steps.Sum(s => s.MergedAwayOriginal.Count) < k)
        {
            bool accepted = false;
            (int l, List<int> others, double cos) best = (-1, [], double.NegativeInfinity);
            var reference = original ?? PruneUtil.FinalHidden(m, windows, batch);
            int need = k - steps.Sum(s => s.MergedAwayOriginal.Count);
            int mm = Math.Min(groupSize - 1, need);
            for (int l = m.NumLayers - 1 - mm; l >= 0; l--)
            {
                ct.ThrowIfCancellationRequested();
                var others = Enumerable.Range(l + 1, mm).ToList();
                double cos = Trial(m, l, others, windows, batch, reference, d);
                if (cos > best.cos) best = (l, others, cos);
                if (cos >= threshold)
                {
                    steps.Add(Apply(m, l, others, cos, forced: false, log));
                    accepted = true;
                    need = k - steps.Sum(s => s.MergedAwayOriginal.Count);
                    if (need == 0) break;
                    mm = Math.Min(groupSize - 1, need);
                    reference = original ?? PruneUtil.FinalHidden(m, windows, batch);
                    // layers at or below l keep their numbers; the loop goes on with l − 1
                }
            }
            if (!accepted && best.l >= 0) steps.Add(Apply(m, best.l, best.others, best.cos, forced: true, log));
        }
        return steps;
    }

    /// <summary>cos(reference final hidden states, those of the model with others merged into l), the model left unchanged.</summary>
    internal static double Trial(CausalLM m, int l, List<int> others, IReadOnlyList<int[]> windows, int batch, List<float[]> reference, int d)
    {
        var saved = Merge.SaveLayer(m, l);
        var skip = (bool[])m.Skip.Clone();
        try
        {
            Merge.MergeInto(m, l, others);
            foreach (var o in others) m.Skip[o] = true;
            return PruneUtil.MeanCos(reference, PruneUtil.FinalHidden(m, windows, batch), d);
        }
        finally
        {
            Merge.Restore(m, saved);
            skip.CopyTo(m.Skip, 0);
        }
    }

    static MergeStep Apply(CausalLM m, int l, List<int> others, double cos, bool forced, Action<string>? log)
    {
        var step = new MergeStep(m.OriginalLayerIndex[l], others.Select(o => m.OriginalLayerIndex[o]).ToList(), cos, forced);
        Merge.MergeInto(m, l, others);
        m.RemoveLayers(others);
        log?.Invoke($"laco: merge [{string.Join(", ", step.MergedAwayOriginal)}] into {step.BaseOriginal} (cos {cos:F4}{(forced ? ", best of a sweep with none ≥ threshold" : "")})");
        return step;
    }
}
