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
/// Generation of Batch sequences: a Prompt-token prefill into the KV cache, then NewTokens decoding steps of one token
/// per sequence; latency of a whole run in milliseconds, after warm-up.
/// </summary>
public sealed record GenerationSpeedResult(int Batch, int Prompt, int NewTokens, int Runs, double MedianMs, double MeanMs, double MinMs)
{
    /// <summary>Generated tokens per second: Batch · NewTokens over the median run (prefill included).</summary>
    public double TokensPerSecond => Batch * (double)NewTokens / (MedianMs / 1000);
}

/// <summary>
/// Speed, SLEB's protocol (DESIGN.md §6).
/// - Prefill: a forward pass over random token ids of Batch × SeqLen (logits of every position, as transformers'
///   forward computes them).
/// - Generation: batch 64, prompt 64, 128 new tokens, with the KV cache (<see cref="CausalLM.Extend"/>); each step
///   feeds the argmax of the last logits, as greedy decoding does (taken on the device: <see cref="CausalLM.ExtendGreedy"/>).
/// Warm-up runs first, then timed runs. Each run ends when its results reach the host, so the clock covers the
/// device's work; the timing is host wall-clock around synchronised passes, not device events.
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
        var (median, mean, min) = Stats(ms);
        return new SpeedResult(batch, seqLen, runs, median, mean, min);
    }

    public static GenerationSpeedResult Generation(CausalLM model, int batch, int prompt, int newTokens, int runs, int warmup, int seed = 0,
        IProgress<double>? progress = null, CancellationToken ct = default)
    {
        CheckGeneration(batch, prompt, newTokens, runs, warmup, model.MaxPositions, "the model's positions");
        var rng = new Random(seed);
        var ids = new int[batch * prompt];
        for (int i = 0; i < ids.Length; i++) ids[i] = rng.Next(model.Config.VocabSize);
        var ms = new double[runs];
        for (int i = 0; i < warmup + runs; i++)
        {
            ct.ThrowIfCancellationRequested();
            var sw = Stopwatch.StartNew();
            using (var cache = model.NewKvCache(prompt + newTokens, batch))
            {
                // the prompt gives the first new token; each further one costs a one-position step
                var next = model.ExtendGreedy(cache, ids);
                for (int s = 1; s < newTokens; s++) next = model.ExtendGreedy(cache, next);
            }
            if (i >= warmup) ms[i - warmup] = sw.Elapsed.TotalMilliseconds;
            progress?.Report((i + 1.0) / (warmup + runs));
        }
        var (median, mean, min) = Stats(ms);
        return new GenerationSpeedResult(batch, prompt, newTokens, runs, median, mean, min);
    }

    /// <summary>
    /// Throws unless the generation settings are usable: counts ≥ 1 (warm-up ≥ 0) and prompt + new tokens within
    /// <paramref name="maxPositions"/> (<paramref name="limitName"/> names that limit in the message).
    /// </summary>
    public static void CheckGeneration(int batch, int prompt, int newTokens, int runs, int warmup, int maxPositions, string limitName)
    {
        if (batch < 1 || prompt < 1 || newTokens < 1 || runs < 1 || warmup < 0)
            throw new ArgumentException($"generation speed: batch {batch}, prompt {prompt}, new tokens {newTokens}, runs {runs}, warm-up {warmup}: need each ≥ 1 (warm-up ≥ 0)");
        if (prompt + newTokens > maxPositions)
            throw new ArgumentException($"generation speed: prompt {prompt} + {newTokens} new tokens exceed {limitName} ({maxPositions})");
    }

    static (double median, double mean, double min) Stats(double[] ms)
    {
        var sorted = ms.Order().ToArray();
        int n = sorted.Length;
        return (n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2, ms.Average(), sorted[0]);
    }
}
