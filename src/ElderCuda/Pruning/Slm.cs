using ElderCuda.Model;

namespace ElderCuda.Pruning;

/// <summary>
/// SLM / sliding-window merging (arXiv 2502.19159; DESIGN.md §5). Windows grow from the top down; the
/// last layer is never merged. A window [b, e] starts with e = b = L − 2 and extends b downward while
/// cos(final hidden of the ORIGINAL model, final hidden with the window merged into b) ≥ threshold; on
/// failure the window without the failing layer is merged and a new window starts below it. Merging
/// uses LaCo's formula θ_b + Σ_{j∈(b,e]} (θ_j − θ_b) over linear weights, norms from the base layer b.
/// The published code collapses that sum to copying the top layer (an in-place add inside the loop);
/// this implements the formula as written. Stops once k layers are merged away; if a sweep reaches the
/// bottom with fewer, the threshold is lowered by ThresholdStep and the sweep repeats on the merged model.
/// </summary>
public static class Slm
{
    public sealed record Window(int BaseOriginal, List<int> MergedAwayOriginal, double Cos, double Threshold);

    public static List<Window> Run(CausalLM m, IReadOnlyList<int[]> windows, int k, double threshold = 0.9, double thresholdStep = 0.05,
        int batch = 8, Action<string>? log = null, CancellationToken ct = default)
    {
        int d = m.Config.HiddenSize;
        var original = PruneUtil.FinalHidden(m, windows, batch);
        var done = new List<Window>();
        int Removed() => done.Sum(w => w.MergedAwayOriginal.Count);
        double th = threshold;
        while (Removed() < k)
        {
            int e = m.NumLayers - 2; // the last layer is never merged
            bool any = false;
            while (e >= 1 && Removed() < k)
            {
                int b = e; double lastCos = 1.0;
                // try extending the window [b, e] to [b−1, e]
                while (b - 1 >= 0 && (e - (b - 1)) + Removed() <= k)
                {
                    ct.ThrowIfCancellationRequested();
                    var others = Enumerable.Range(b, e - b + 1).ToList();
                    double cos = LaCo.Trial(m, b - 1, others, windows, batch, original, d);
                    if (cos < th) break;
                    b--; lastCos = cos;
                }
                if (b < e)
                {
                    var others = Enumerable.Range(b + 1, e - b).ToList();
                    var w = new Window(m.OriginalLayerIndex[b], others.Select(o => m.OriginalLayerIndex[o]).ToList(), lastCos, th);
                    Merge.MergeInto(m, b, others);
                    m.RemoveLayers(others);
                    done.Add(w);
                    any = true;
                    log?.Invoke($"slm: merge [{string.Join(", ", w.MergedAwayOriginal)}] into {w.BaseOriginal} (cos {lastCos:F4} ≥ {th:F2})");
                }
                e = b - 1;
            }
            if (Removed() < k)
            {
                th -= thresholdStep;
                log?.Invoke($"slm: sweep ended with {Removed()} of {k} merged; threshold lowered to {th:F2}{(any ? "" : " (nothing merged in that sweep)")}");
                if (th < -1) throw new InvalidOperationException("slm: could not reach the target count");
            }
        }
        return done;
    }
}
