using ElderCuda.Model;

namespace ElderCuda.Eval;

public static class Generation
{
    /// <summary>
    /// Greedy decoding: the prompt plus up to maxNewTokens argmax tokens (stops at eosId). Recomputes the
    /// whole prefix each step (no KV cache): simple, and exact with respect to the training forward pass.
    /// </summary>
    public static int[] Greedy(CausalLM model, IReadOnlyList<int> prompt, int maxNewTokens, int? eosId = null, Action<int>? onToken = null)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt encodes to no tokens");
        var ids = new List<int>(prompt);
        int V = model.Config.VocabSize;
        int limit = model.Config.MaxPositionEmbeddings;
        for (int step = 0; step < maxNewTokens && ids.Count < limit; step++)
        {
            var seq = ids.ToArray();
            var r = model.Step(TokenBatch.Single(seq), new StepOptions { KeepLogits = true });
            int last = seq.Length - 1;
            var row = r.Logits.AsSpan(last * V, V);
            int best = 0;
            for (int j = 1; j < V; j++) if (row[j] > row[best]) best = j;
            ids.Add(best);
            onToken?.Invoke(best);
            if (eosId == best) break;
        }
        return ids.ToArray();
    }
}
