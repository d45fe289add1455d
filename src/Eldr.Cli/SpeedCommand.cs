using System.CommandLine;
using System.Text.Json;
using ElderCuda.Backends;
using ElderCuda.Eval;
using ElderCuda.Model;

namespace Eldr.Cli;

/// <summary>`eldr speed`: prefill latency of a model and, with --baseline, of another (the dense one), and their ratio.</summary>
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
        var cmd = new Command("speed", "prefill latency (SLEB's protocol: 1 × 2048 tokens, 50 timed passes after warm-up), and the speed-up over --baseline")
            { dir, baseline, seq, batch, runs, warmup, json, Cli.DeviceOption, Cli.Fp32Option };
        cmd.SetAction(pr => Cli.Guard(() =>
        {
            var dirs = new List<string> { pr.GetValue(dir)! };
            if (pr.GetValue(baseline) is { } b) dirs.Add(b);
            using IBackend be = Cli.OpenBackend(pr);
            var results = new List<(string Dir, int Layers, SpeedResult R)>();
            foreach (var d in dirs)
            {
                var cfg = ModelConfig.Load(d);
                int T = pr.GetValue(seq) ?? Cli.DefaultSeqLen(cfg);
                Cli.CheckMemory(be, d, T, pr.GetValue(batch), training: false);
                using var model = CausalLM.Load(d, be);
                SpeedResult r = null!;
                Cli.WithProgress($"speed {Path.GetFileName(Path.GetFullPath(d).TrimEnd('/'))}",
                    p => r = Speed.Prefill(model, pr.GetValue(batch), T, pr.GetValue(runs), pr.GetValue(warmup), progress: p));
                results.Add((d, model.NumLayers, r));
            }
            double? speedup = results.Count == 2 ? results[1].R.MedianMs / results[0].R.MedianMs : null;
            if (pr.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    backend = be.Name,
                    models = results.Select(x => new
                    {
                        dir = x.Dir, layers = x.Layers, batch = x.R.Batch, seqlen = x.R.SeqLen, runs = x.R.Runs,
                        median_ms = x.R.MedianMs, mean_ms = x.R.MeanMs, min_ms = x.R.MinMs, tokens_per_second = x.R.TokensPerSecond,
                    }),
                    speedup,
                }));
            else
            {
                foreach (var (d, layers, r) in results)
                    Console.WriteLine($"{d}: {layers} layers, {r.Batch}×{r.SeqLen} prefill median {r.MedianMs:F2} ms (mean {r.MeanMs:F2}, min {r.MinMs:F2}; {r.Runs} runs), {r.TokensPerSecond:F0} tokens/s on {be.Name}");
                if (speedup is { } s) Console.WriteLine($"speed-up over the baseline: {s:F3}×");
            }
            return 0;
        }));
        return cmd;
    }
}
