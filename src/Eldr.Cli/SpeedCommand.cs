using System.CommandLine;
using System.Text.Json;
using ElderCuda.Backends;
using ElderCuda.Eval;
using ElderCuda.Model;

namespace Eldr.Cli;

/// <summary>
/// `eldr speed`: prefill latency of a model and, with --baseline, of another (the dense one), and their ratio; with
/// --generate, also generation throughput with the KV cache.
/// </summary>
public static class SpeedCommand
{
    public static Command Create()
    {
        var dir = Cli.DirArgument();
        var baseline = new Option<string?>("--baseline") { Description = "a second model folder (e.g. the dense model) timed the same way; the ratio is baseline / this" };
        var seq = new Option<int?>("--seqlen") { Description = "tokens per sequence (default: min(max_position_embeddings, 2048), SLEB's 2048)" };
        var batch = new Option<int>("--batch") { Description = "sequences per pass", DefaultValueFactory = _ => 1 };
        var runs = new Option<int>("--runs") { Description = "timed passes (SLEB: 50)", DefaultValueFactory = _ => 50 };
        var warmup = new Option<int>("--warmup") { Description = "untimed passes first", DefaultValueFactory = _ => 5 };
        var json = new Option<bool>("--json") { Description = "print the result as JSON" };
        var generate = new Option<bool>("--generate") { Description = "also time generation with the KV cache (SLEB's protocol: batch 64, prompt 64, 128 new tokens)" };
        var genBatch = new Option<int>("--gen-batch") { Description = "generation: sequences decoded side by side", DefaultValueFactory = _ => 64 };
        var genPrompt = new Option<int>("--gen-prompt") { Description = "generation: prompt tokens", DefaultValueFactory = _ => 64 };
        var genTokens = new Option<int>("--gen-tokens") { Description = "generation: new tokens per sequence", DefaultValueFactory = _ => 128 };
        var genRuns = new Option<int>("--gen-runs") { Description = "generation: timed runs", DefaultValueFactory = _ => 5 };
        var genWarmup = new Option<int>("--gen-warmup") { Description = "generation: untimed runs first", DefaultValueFactory = _ => 1 };
        var profile = new Option<bool>("--profile") { Description = "print time per op for each model (synchronises after every op, so the timings above slow down)" };
        var cmd = new Command("speed", "prefill latency (SLEB's protocol: 1 × 2048 tokens, 50 timed passes after warm-up), with --generate generation "
                                       + "throughput (batch 64, prompt 64, 128 new tokens), and the speed-ups over --baseline")
            { dir, baseline, seq, batch, runs, warmup, json, generate, genBatch, genPrompt, genTokens, genRuns, genWarmup, profile, Cli.DeviceOption, Cli.Fp32Option };
        cmd.SetAction(pr => Cli.Guard(() =>
        {
            var dirs = new List<string> { pr.GetValue(dir)! };
            if (pr.GetValue(baseline) is { } b) dirs.Add(b);
            if (pr.GetValue(generate))
                // the generation settings are checked before anything is timed, not after the first model's prefill runs
                foreach (var d in dirs)
                    Speed.CheckGeneration(pr.GetValue(genBatch), pr.GetValue(genPrompt), pr.GetValue(genTokens), pr.GetValue(genRuns), pr.GetValue(genWarmup),
                        ModelConfig.Load(d).MaxPositionEmbeddings, $"{d}'s max_position_embeddings");
            IBackend be = Cli.OpenBackend(pr);
            var prof = pr.GetValue(profile) ? new ProfilingBackend(be) : null;
            if (prof is not null) be = prof;
            using var _be = be;
            var results = new List<(string Dir, int Layers, SpeedResult R, GenerationSpeedResult? G)>();
            foreach (var d in dirs)
            {
                var cfg = ModelConfig.Load(d);
                int T = pr.GetValue(seq) ?? Cli.DefaultSeqLen(cfg);
                Cli.CheckMemory(prof?.Inner ?? be, d, T, pr.GetValue(batch), training: false);
                using var model = CausalLM.Load(d, be);
                prof?.Reset();   // the table is about the timed work, not the weights' upload
                string name = Path.GetFileName(Path.GetFullPath(d).TrimEnd('/'));
                SpeedResult r = null!;
                Cli.WithProgress($"speed {name}", p => r = Speed.Prefill(model, pr.GetValue(batch), T, pr.GetValue(runs), pr.GetValue(warmup), progress: p));
                GenerationSpeedResult? g = null;
                if (pr.GetValue(generate))
                    Cli.WithProgress($"generation {name}", p => g = Speed.Generation(model, pr.GetValue(genBatch), pr.GetValue(genPrompt), pr.GetValue(genTokens),
                        pr.GetValue(genRuns), pr.GetValue(genWarmup), progress: p));
                results.Add((d, model.NumLayers, r, g));
                if (prof is not null)
                {
                    Console.Error.WriteLine($"time per op, {name} (prefill{(g is null ? "" : " and generation")} runs, warm-up included):");
                    Cli.WriteProfile(prof);
                    prof.Reset();
                }
            }
            double? speedup = results.Count == 2 ? results[1].R.MedianMs / results[0].R.MedianMs : null;
            double? genSpeedup = results.Count == 2 && results[0].G is { } g0 && results[1].G is { } g1 ? g1.MedianMs / g0.MedianMs : null;
            if (pr.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    backend = be.Name,
                    models = results.Select(x => new
                    {
                        dir = x.Dir, layers = x.Layers, batch = x.R.Batch, seqlen = x.R.SeqLen, runs = x.R.Runs,
                        median_ms = x.R.MedianMs, mean_ms = x.R.MeanMs, min_ms = x.R.MinMs, tokens_per_second = x.R.TokensPerSecond,
                        generation = x.G is { } g ? new
                        {
                            batch = g.Batch, prompt = g.Prompt, new_tokens = g.NewTokens, runs = g.Runs,
                            median_ms = g.MedianMs, mean_ms = g.MeanMs, min_ms = g.MinMs, tokens_per_second = g.TokensPerSecond,
                        } : null,
                    }),
                    speedup,
                    generation_speedup = genSpeedup,
                }));
            else
            {
                foreach (var (d, layers, r, g) in results)
                {
                    Console.WriteLine($"{d}: {layers} layers, {r.Batch}×{r.SeqLen} prefill median {r.MedianMs:F2} ms (mean {r.MeanMs:F2}, min {r.MinMs:F2}; {r.Runs} runs), {r.TokensPerSecond:F0} tokens/s on {be.Name}");
                    if (g is not null)
                        Console.WriteLine($"{d}: generation of {g.Batch} × {g.NewTokens} tokens after a {g.Prompt}-token prompt, median {g.MedianMs:F1} ms (mean {g.MeanMs:F1}, min {g.MinMs:F1}; {g.Runs} runs), {g.TokensPerSecond:F0} tokens/s");
                }
                if (speedup is { } s) Console.WriteLine($"prefill speed-up over the baseline: {s:F3}×");
                if (genSpeedup is { } gs) Console.WriteLine($"generation speed-up over the baseline: {gs:F3}×");
            }
            return 0;
        }));
        return cmd;
    }
}
