using ElderCuda.Backends;
using ElderCuda.Model;

namespace ElderCuda.Eval;

public static class Generation
{
    /// <summary>
    /// Greedy decoding: the prompt plus up to maxNewTokens argmax tokens (stops at eosId or at the model's last
    /// position). With <paramref name="kvCache"/> (the default) the prompt runs once and each new token runs alone
    /// against the cached keys and values; without it every step recomputes the whole prefix with the training
    /// forward pass (slow; kept as the reference the cached path is tested against).
    /// </summary>
    public static int[] Greedy(CausalLM model, IReadOnlyList<int> prompt, int maxNewTokens, int? eosId = null, Action<int>? onToken = null, bool kvCache = true)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt encodes to no tokens");
        var ids = new List<int>(prompt);
        int limit = model.MaxPositions;
        if (maxNewTokens <= 0 || ids.Count >= limit) return ids.ToArray();
        using var cache = kvCache ? model.NewKvCache(Math.Min(limit, ids.Count + maxNewTokens)) : null;
        int best = cache is not null ? model.ExtendGreedy(cache, ids.ToArray())[0] : NextByRecompute(model, ids);
        for (int step = 0; ; step++)
        {
            ids.Add(best);
            onToken?.Invoke(best);
            if (eosId == best || step + 1 >= maxNewTokens || ids.Count >= limit) break;
            best = cache is not null ? model.ExtendGreedy(cache, [best])[0] : NextByRecompute(model, ids);
        }
        return ids.ToArray();
    }

    /// <summary>The argmax of the last position's logits from a forward pass over the whole prefix (host-side, same order as <see cref="IBackend.ArgMax"/>).</summary>
    static int NextByRecompute(CausalLM model, List<int> ids)
    {
        int V = model.Config.VocabSize;
        var r = model.Step(TokenBatch.Single(ids.ToArray()), new StepOptions { KeepLogits = true });
        return System.Numerics.Tensors.TensorPrimitives.IndexOfMax(r.Logits.AsSpan((ids.Count - 1) * V, V));
    }
}
