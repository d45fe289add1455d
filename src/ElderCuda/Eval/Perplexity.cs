using ElderCuda.Model;

namespace ElderCuda.Eval;

public sealed record PerplexityResult(double Perplexity, double TotalNll, long Predicted, int Windows, int SeqLen);

/// <summary>DESIGN.md §6: non-overlapping windows of seqLen, partial last window dropped, ppl = exp(ΣNLL / predicted).</summary>
public static class Perplexity
{
    public static PerplexityResult Evaluate(CausalLM model, int[] tokens, int seqLen, int? maxWindows = null, int batchSize = 1, IProgress<double>? progress = null)
        => throw new NotImplementedException();
}
