using ElderCuda.Model;

namespace ElderCuda.Pruning;

/// <summary>
/// SLEB (arXiv 2402.09025): greedy. In each round, try removing every eligible alive layer, measure the
/// total NLL on the scoring windows (default 32), and remove the one that costs least; repeat k times.
/// The first and last layers are never removed (as the reference does).
/// </summary>
public static class Sleb
{
    public sealed record Round(int Removed, Dictionary<int, double> NllPerCandidate);

    public static (List<int> Order, List<Round> Rounds) Select(CausalLM m, IReadOnlyList<int[]> windows, int k, int batch,
        bool allowFirst = false, bool allowLast = false, Action<string>? log = null, CancellationToken ct = default)
    {
        var skipBefore = (bool[])m.Skip.Clone();
        var order = new List<int>();
        var rounds = new List<Round>();
        try
        {
            for (int r = 0; r < k; r++)
            {
                var elig = Elder.Eligible(m, allowFirst, allowLast);
                var scores = new Dictionary<int, double>();
                for (int l = 0; l < m.NumLayers; l++)
                {
                    if (!elig[l]) continue;
                    m.Skip[l] = true;
                    scores[l] = PruneUtil.Nll(m, windows, batch, ct).Nll;
                    m.Skip[l] = false;
                }
                int best = scores.OrderBy(kv => kv.Value).ThenBy(kv => kv.Key).First().Key;
                m.Skip[best] = true;
                order.Add(best);
                rounds.Add(new Round(best, scores));
                log?.Invoke($"sleb round {r + 1}/{k}: remove {m.OriginalLayerIndex[best]} (NLL {scores[best]:F1})");
            }
        }
        finally { skipBefore.CopyTo(m.Skip, 0); }
        return (order, rounds);
    }
}
