using System.Diagnostics;
using ElderCuda.Model;

namespace ElderCuda.Eval;

/// <summary>Prefill latency of Runs timed forward passes of Batch × SeqLen tokens (milliseconds), after warm-up.</summary>
public sealed record SpeedResult(int Batch, int SeqLen, int Runs, double MedianMs, double MeanMs, double MinMs)
{
    /// <summary>Prompt tokens per second at the median latency.</summary>
    public double TokensPerSecond => Batch * (double)SeqLen / (MedianMs / 1000);
}

/// <summary>
/// Prefill speed, SLEB's protocol (DESIGN.md §6): a forward pass over random token ids of Batch × SeqLen (logits of
/// every position, as transformers' forward computes them), warm-up runs first, then timed runs. Each run ends
/// when its losses reach the host, so the clock covers the device's work; the timing is host wall-clock around
/// synchronised passes, not device events. Generation speed is not measured: decoding here recomputes the whole
/// prefix per token (no KV cache), so its timings would not say what a deployed model does.
/// </summary>
public static class Speed
{
    public static SpeedResult Prefill(CausalLM model, int batch, int seqLen, int runs, int warmup, int seed = 0,
        IProgress<double>? progress = null, CancellationToken ct = default)
    {
        if (batch < 1 || seqLen < 2 || runs < 1 || warmup < 0)
            throw new ArgumentException($"speed: batch {batch}, seqlen {seqLen}, runs {runs}, warm-up {warmup}: need batch ≥ 1, seqlen ≥ 2, runs ≥ 1, warm-up ≥ 0");
        if (seqLen > model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"speed: seqlen {seqLen} exceeds the model's max_position_embeddings {model.Config.MaxPositionEmbeddings}");
        var rng = new Random(seed);
        var ids = new int[batch * seqLen];
        for (int i = 0; i < ids.Length; i++) ids[i] = rng.Next(model.Config.VocabSize);
        var tb = new TokenBatch(ids, batch, seqLen);
        var ms = new double[runs];
        for (int i = 0; i < warmup + runs; i++)
        {
            ct.ThrowIfCancellationRequested();
            var sw = Stopwatch.StartNew();
            model.Step(tb, new StepOptions());
            model.Backend.Synchronize();
            if (i >= warmup) ms[i - warmup] = sw.Elapsed.TotalMilliseconds;
            progress?.Report((i + 1.0) / (warmup + runs));
        }
        var sorted = ms.Order().ToArray();
        double median = runs % 2 == 1 ? sorted[runs / 2] : (sorted[runs / 2 - 1] + sorted[runs / 2]) / 2;
        return new SpeedResult(batch, seqLen, runs, median, ms.Average(), sorted[0]);
    }
}
