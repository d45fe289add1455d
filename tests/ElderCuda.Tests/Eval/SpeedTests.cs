using ElderCuda.Backends.Cpu;
using ElderCuda.Eval;
using ElderCuda.Model;
using ElderCuda.Tests.Cli;

namespace ElderCuda.Tests.Eval;

/// <summary>
/// The speed benchmark's bookkeeping (no timing is asserted: speed targets belong in benchmark commands): the
/// summary statistics are those of the runs, tokens/s follows from the median, the speed-up is the ratio of medians,
/// and bad settings are clear errors.
/// </summary>
public class SpeedTests
{
    [Fact]
    public void StatisticsAreConsistent()
    {
        using var m = CausalLM.Load(TestPaths.HfTiny("llama-gqa"), new CpuBackend());
        var r = Speed.Prefill(m, batch: 2, seqLen: 16, runs: 5, warmup: 1);
        Assert.Equal((2, 16, 5), (r.Batch, r.SeqLen, r.Runs));
        Assert.True(r.MinMs > 0 && r.MinMs <= r.MedianMs && r.MinMs <= r.MeanMs, $"{r}");
        Assert.Equal(2 * 16 / (r.MedianMs / 1000), r.TokensPerSecond, 9);
        Assert.Throws<ArgumentException>(() => Speed.Prefill(m, 1, m.Config.MaxPositionEmbeddings + 1, 1, 0));
        Assert.Throws<ArgumentException>(() => Speed.Prefill(m, 1, 16, 0, 0));
    }

    [Fact]
    public void GenerationStatisticsAreConsistent()
    {
        using var m = CausalLM.Load(TestPaths.HfTiny("llama-gqa"), new CpuBackend());
        var g = Speed.Generation(m, batch: 3, prompt: 5, newTokens: 4, runs: 3, warmup: 1);
        Assert.Equal((3, 5, 4, 3), (g.Batch, g.Prompt, g.NewTokens, g.Runs));
        Assert.True(g.MinMs > 0 && g.MinMs <= g.MedianMs && g.MinMs <= g.MeanMs, $"{g}");
        Assert.Equal(3 * 4 / (g.MedianMs / 1000), g.TokensPerSecond, 9);
        Assert.Throws<ArgumentException>(() => Speed.Generation(m, 1, m.MaxPositions, 1, 1, 0));
        Assert.Throws<ArgumentException>(() => Speed.Generation(m, 0, 4, 4, 1, 0));
    }

    [Fact]
    public void CommandReportsTheRatioOfMedians()
    {
        var r = EldrProcess.Run("speed", TestPaths.HfTiny("opt"), "--baseline", TestPaths.HfTiny("llama-gqa"), "--seqlen", "16",
            "--runs", "3", "--warmup", "1", "--generate", "--gen-batch", "2", "--gen-prompt", "4", "--gen-tokens", "3", "--gen-runs", "2",
            "--device", "cpu", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        var models = doc.RootElement.GetProperty("models");
        Assert.Equal(2, models.GetArrayLength());
        double expected = models[1].GetProperty("median_ms").GetDouble() / models[0].GetProperty("median_ms").GetDouble();
        Assert.Equal(expected, doc.RootElement.GetProperty("speedup").GetDouble(), 9);
        double genExpected = models[1].GetProperty("generation").GetProperty("median_ms").GetDouble()
                           / models[0].GetProperty("generation").GetProperty("median_ms").GetDouble();
        Assert.Equal(genExpected, doc.RootElement.GetProperty("generation_speedup").GetDouble(), 9);
        Assert.Equal(3, models[0].GetProperty("generation").GetProperty("new_tokens").GetInt32());
        var bad = EldrProcess.Run("speed", TestPaths.HfTiny("opt"), "--runs", "0", "--device", "cpu");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("runs ≥ 1", bad.Stderr);
        var badGen = EldrProcess.Run("speed", TestPaths.HfTiny("opt"), "--generate", "--gen-tokens", "100000", "--device", "cpu");
        Assert.Equal(2, badGen.ExitCode);
        Assert.Contains("max_position_embeddings", badGen.Stderr);
        Assert.DoesNotContain("prefill median", badGen.Stdout);   // refused before any timing
    }

    /// <summary>
    /// --profile prints each op's calls: generation runs one Extend for the prompt and one per further new token, each
    /// through every layer's cached attention, so 2 runs of 3 new tokens make 2 · 3 · layers calls, no more and no fewer.
    /// </summary>
    [Fact]
    public void ProfileCountsEachOpCall()
    {
        var dir = TestPaths.HfTiny("opt");
        using var cfg = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        int layers = cfg.RootElement.GetProperty("num_hidden_layers").GetInt32();
        var r = EldrProcess.Run("speed", dir, "--seqlen", "16", "--runs", "2", "--warmup", "0", "--generate", "--gen-batch", "2",
            "--gen-prompt", "4", "--gen-tokens", "3", "--gen-runs", "2", "--gen-warmup", "0", "--device", "cpu", "--profile");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("time per op", r.Stderr);
        var row = r.Stderr.Split('\n').Single(l => l.TrimStart().StartsWith("attention_cached "));
        Assert.Equal(2 * 3 * layers, long.Parse(row.Split(' ', StringSplitOptions.RemoveEmptyEntries)[^2]));
    }
}
