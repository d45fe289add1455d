using ElderCuda.Model;
using ElderCuda.Training;

namespace ElderCuda.Pruning;

/// <summary>
/// ShortGPT (arXiv 2403.03853): Block Influence BI_i = 1 − mean_t cos(x_in_i, x_out_i) over every
/// calibration token, from each layer's raw input and output (residual stream, before the final norm);
/// the k layers with the lowest BI are dropped at once.
/// </summary>
public static class ShortGpt
{
    public static double[] BlockInfluence(CausalLM m, IReadOnlyList<int[]> windows, int batch, CancellationToken ct = default)
    {
        int L = m.NumLayers, d = m.Config.HiddenSize;
        var sum = new double[L];
        var cnt = new long[L];
        float[]? xin = null, xout = null;
        for (int i = 0; i < windows.Count; i += batch)
        {
            ct.ThrowIfCancellationRequested();
            int c = Math.Min(batch, windows.Count - i);
            m.Step(PruneUtil.Batch(windows, i, c), new StepOptions
            {
                LayerHook = (l, x, y) =>
                {
                    var a = PruneUtil.ToHost(m.Backend, x, ref xin);
                    var b = PruneUtil.ToHost(m.Backend, y, ref xout);
                    int rows = a.Length / d;
                    for (int r = 0; r < rows; r++) sum[l] += PruneUtil.RowCos(a.AsSpan(r * d, d), b.AsSpan(r * d, d));
                    cnt[l] += rows;
                },
            });
        }
        return Enumerable.Range(0, L).Select(l => cnt[l] == 0 ? double.NaN : 1 - sum[l] / cnt[l]).ToArray();
    }

    /// <summary>The k alive layers with the lowest BI (ties to the lower index), in ascending BI order.</summary>
    public static List<int> Select(double[] bi, int k, bool[]? eligible = null)
        => Enumerable.Range(0, bi.Length).Where(i => !double.IsNaN(bi[i]) && (eligible?[i] ?? true))
            .OrderBy(i => bi[i]).ThenBy(i => i).Take(k).ToList();
}
