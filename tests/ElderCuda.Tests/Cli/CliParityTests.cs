using System.Text.Json;

namespace ElderCuda.Tests.Cli;

/// <summary>The `eldr` commands against numbers transformers produced (reference.json, golden files).</summary>
public class CliParityTests
{
    [Fact]
    public void GenerateReproducesTransformersGreedyIds()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.BundledModel, "reference.json")));
        var prompt = doc.RootElement.GetProperty("greedy_prompt").GetString()!;
        var expected = doc.RootElement.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        // greedy_ids holds the prompt and the generated tokens; ask for exactly as many new tokens
        var r = EldrProcess.Run("generate", TestPaths.BundledModel, "--prompt", prompt, "--ids", "--device", "cpu", "--max-new-tokens", "64");
        Assert.Equal(0, r.ExitCode);
        var line = r.Stdout.Split('\n').Single(l => l.StartsWith("ids: "));
        var got = line[6..^1].Split(", ").Select(int.Parse).ToArray();
        Assert.Equal(expected, got[..expected.Length]);
        Assert.StartsWith(doc.RootElement.GetProperty("greedy_text").GetString()!, r.Stdout);
    }

    [Theory]
    [InlineData("llama3-tied")]
    [InlineData("opt")]
    [InlineData("phi")]
    public void TraceWritesWhatTransformersComputes(string family)
    {
        var dir = TestPaths.HfTiny(family);
        var tmp = Path.Combine(Path.GetTempPath(), $"eldr-trace-{family}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        var gold = Path.Combine(dir, "golden.safetensors");
        var outFile = Path.Combine(tmp, "trace.safetensors");
        // the golden file itself holds input_ids, so it serves as the --tokens input
        var r = EldrProcess.Run("trace", dir, "--tokens", gold, "--out", outFile, "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.Stderr);
        TraceGolden.AssertMatches(gold, outFile, outputTol: 1e-5, gradTol: 1e-4);
        Directory.Delete(tmp, true);
    }
}

public class GenerationTests
{
    /// <summary>
    /// Greedy decoding is self-consistent: each generated token is the argmax of the full forward pass
    /// over the tokens before it, including from a one-token prompt.
    /// </summary>
    [Fact]
    public void EachGreedyTokenIsTheArgmaxOfItsPrefix()
    {
        using var m = ElderCuda.Model.CausalLM.Load(TestPaths.HfTiny("llama-gqa"), new ElderCuda.Backends.Cpu.CpuBackend());
        var ids = ElderCuda.Eval.Generation.Greedy(m, [17], 5);
        Assert.Equal(6, ids.Length);
        int V = m.Config.VocabSize;
        for (int t = 1; t < ids.Length; t++)
        {
            var r = m.Step(ElderCuda.Model.TokenBatch.Single(ids[..t]), new ElderCuda.Model.StepOptions { KeepLogits = true });
            var row = r.Logits.AsSpan((t - 1) * V, V);
            int best = 0; for (int j = 1; j < V; j++) if (row[j] > row[best]) best = j;
            Assert.Equal(best, ids[t]);
        }
    }
}
