using ElderCuda.Model;

namespace ElderCuda.Pruning;

/// <summary>
/// Angular distance ("The Unreasonable Ineffectiveness of the Deeper Layers", arXiv 2403.17887):
/// d(l, l+n) = arccos(cos(x_l, x_{l+n}))/π on the last token of each window, averaged over windows,
/// where x_l is the input of layer l and x_{l+n} the raw output of layer l+n−1 (before the final norm).
/// The contiguous block of n layers at the argmin is dropped.
/// </summary>
public static class Angular
{
    /// <summary>Distance for every block start l = 0 … L−n.</summary>
    public static double[] Distances(CausalLM m, IReadOnlyList<int[]> windows, int n, int batch, CancellationToken ct = default)
    {
        int L = m.NumLayers, d = m.Config.HiddenSize;
        var acc = new double[L - n + 1];
        int count = 0;
        float[]? buf = null;
        for (int i = 0; i < windows.Count; i += batch)
        {
            ct.ThrowIfCancellationRequested();
            int c = Math.Min(batch, windows.Count - i);
            int T = windows[i].Length;
            // states[l][b] = last-token residual of window b entering layer l (l = L: the last layer's output)
            var states = new float[L + 1][][];
            m.Step(PruneUtil.Batch(windows, i, c), new StepOptions
            {
                LayerHook = (l, x, y) =>
                {
                    var a = PruneUtil.ToHost(m.Backend, x, ref buf);
                    states[l] = LastTokens(a, c, T, d);
                    if (l == L - 1) states[L] = LastTokens(PruneUtil.ToHost(m.Backend, y, ref buf), c, T, d);
                },
            });
            for (int b = 0; b < c; b++)
                for (int l = 0; l + n <= L; l++)
                {
                    double cos = Math.Clamp(PruneUtil.RowCos(states[l][b], states[l + n][b]), -1, 1);
                    acc[l] += Math.Acos(cos) / Math.PI;
                }
            count += c;
        }
        return acc.Select(x => x / count).ToArray();
    }

    static float[][] LastTokens(float[] a, int B, int T, int d)
    {
        var r = new float[B][];
        for (int b = 0; b < B; b++) r[b] = a.AsSpan(((b + 1) * T - 1) * d, d).ToArray();
        return r;
    }

    /// <summary>The block start with the smallest distance (lowest index on ties).</summary>
    public static int BestStart(double[] dist)
    {
        int best = 0;
        for (int l = 1; l < dist.Length; l++) if (dist[l] < dist[best]) best = l;
        return best;
    }
}
