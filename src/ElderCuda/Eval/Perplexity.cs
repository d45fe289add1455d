using ElderCuda.Model;

namespace ElderCuda.Eval;

public sealed record PerplexityResult(double Perplexity, double TotalNll, long Predicted, int Windows, int SeqLen)
{
    public double MeanNll => TotalNll / Predicted;
}

/// <summary>DESIGN.md §6: non-overlapping windows of seqLen, partial last window dropped, ppl = exp(ΣNLL / predicted).</summary>
public static class Perplexity
{
    public static int WindowCount(int tokens, int seqLen) => tokens / seqLen;

    public static PerplexityResult Evaluate(CausalLM model, int[] tokens, int seqLen, int? maxWindows = null, int batchSize = 1,
        IProgress<double>? progress = null, CancellationToken ct = default)
    {
        if (seqLen < 2) throw new ArgumentException($"evaluation length {seqLen} is too short (need ≥ 2)");
        int windows = WindowCount(tokens.Length, seqLen);
        if (maxWindows is { } mw) windows = Math.Min(windows, mw);
        if (windows == 0) throw new ArgumentException($"the text has {tokens.Length} tokens, fewer than one window of {seqLen}");
        double nll = 0; long predicted = 0;
        for (int w0 = 0; w0 < windows; w0 += batchSize)
        {
            ct.ThrowIfCancellationRequested();
            int b = Math.Min(batchSize, windows - w0);
            var ids = new int[b * seqLen];
            Array.Copy(tokens, (long)w0 * seqLen, ids, 0, ids.Length);
            var r = model.Step(new TokenBatch(ids, b, seqLen), new StepOptions());
            nll += r.TotalNll; predicted += r.Predicted;
            progress?.Report((double)(w0 + b) / windows);
        }
        return new PerplexityResult(Math.Exp(nll / predicted), nll, predicted, windows, seqLen);
    }
}
