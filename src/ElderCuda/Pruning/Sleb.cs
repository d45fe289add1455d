using System.Text.Json.Nodes;
using ElderCuda.Model;
using ElderCuda.Training;

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
        bool allowFirst = false, bool allowLast = false, Action<string>? log = null, CancellationToken ct = default, RunCheckpoint? ckpt = null)
    {
        var skipBefore = (bool[])m.Skip.Clone();
        var order = new List<int>();
        var rounds = new List<Round>();
        // resumable: the rounds already done (and their scores) are in the checkpoint
        if (ckpt?.TryLoad()?.Meta["sleb"] is JsonArray done)
            foreach (var x in done)
            {
                var sc = x!["scores"]!.AsObject().ToDictionary(kv => int.Parse(kv.Key), kv => kv.Value!.GetValue<double>());
                rounds.Add(new Round(x["removed"]!.GetValue<int>(), sc));
                order.Add(x["removed"]!.GetValue<int>());
            }
        try
        {
            foreach (var l in order) m.Skip[l] = true;
            for (int r = order.Count; r < k; r++)
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
                if (ckpt is not null)
                {
                    var st = ckpt.TryLoad();
                    var meta = st?.Meta ?? new JsonObject();
                    meta["sleb"] = new JsonArray(rounds.Select(rd => (JsonNode)new JsonObject
                    {
                        ["removed"] = rd.Removed,
                        ["scores"] = new JsonObject(rd.NllPerCandidate.Select(kv => KeyValuePair.Create(kv.Key.ToString(), (JsonNode?)kv.Value))),
                    }).ToArray());
                    ckpt.Save(meta, st?.Arrays ?? new Dictionary<string, float[]>());
                }
            }
        }
        finally { skipBefore.CopyTo(m.Skip, 0); }
        return (order, rounds);
    }
}
