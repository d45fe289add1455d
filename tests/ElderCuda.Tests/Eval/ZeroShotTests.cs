using ElderCuda.Backends.Cpu;
using ElderCuda.Eval;
using ElderCuda.IO.Safetensors;
using ElderCuda.IO.Tokenization;
using ElderCuda.Model;
using ElderCuda.Tests.Cli;
using ElderCuda.Tests.IO;

namespace ElderCuda.Tests.Eval;

/// <summary>
/// Zero-shot scoring. The log-likelihood of a continuation is checked against transformers' float64 logits in the
/// hf-tiny golden files (Σ log_softmax over the continuation's positions, computed here); the harness's token split
/// and the acc / acc_norm rules against closed forms.
/// </summary>
public class ZeroShotTests
{
    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("opt")]
    [InlineData("phi")]
    public void LogLikelihoodMatchesTransformersLogits(string family)
    {
        string dir = TestPaths.HfTiny(family);
        using var gold = SafetensorsFile.Open(Path.Combine(dir, "golden.safetensors"));
        var shape = gold.Info("input_ids").Shape;
        int T = (int)shape[1];
        var ids = gold.ReadInt64("input_ids").Select(v => (int)v).ToArray();
        var logits = gold.ReadFloat32("logits");
        using var m = CausalLM.Load(dir, new CpuBackend());
        int V = m.Config.VocabSize;
        Assert.Equal((long)ids.Length * V, logits.Length);

        // the log-probability of sequence 0's token t given its tokens before t, from the golden logits at t − 1
        double LogP(int t)
        {
            long row = (long)(t - 1) * V;
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < V; j++) max = Math.Max(max, logits[row + j]);
            for (int j = 0; j < V; j++) sum += Math.Exp(logits[row + j] - max);
            return logits[row + ids[t]] - max - Math.Log(sum);
        }
        // two requests of different lengths from sequence 0, in one padded batch
        int k1 = T / 3, k2 = T / 2, end2 = T - 3;
        var requests = new List<(int[], int[])> { (ids[..k1], ids[k1..T]), (ids[..k2], ids[k2..end2]) };
        var ll = ZeroShot.LogLikelihoods(m, requests, 4096);
        double e1 = Enumerable.Range(k1, T - k1).Sum(LogP), e2 = Enumerable.Range(k2, end2 - k2).Sum(LogP);
        Assert.True(Math.Abs(ll[0] - e1) < 1e-4 * Math.Abs(e1), $"{ll[0]} vs {e1}");
        Assert.True(Math.Abs(ll[1] - e2) < 1e-4 * Math.Abs(e2), $"{ll[1]} vs {e2}");

        // a window shorter than the sequence keeps its last tokens: only those condition the continuation
        int w = T - 4;
        var cut = ZeroShot.LogLikelihoods(m, [(ids[..k2], ids[k2..T])], w);
        var direct = ZeroShot.LogLikelihoods(m, [(ids[4..k2], ids[k2..T])], 4096);
        Assert.Equal(direct[0], cut[0], 9);
    }

    [Fact]
    public void SplitIsTheHarnesss()
    {
        var tok = TokenizerLoader.Load(TokenizerRepo.Llama12L);
        var (ctx, cont) = ZeroShot.Split(tok, "It is a truth universally", " acknowledged, that");
        Assert.Equal(tok.Encode("It is a truth universally acknowledged, that"), ctx.Concat(cont).ToArray());
        Assert.Equal(tok.Encode("It is a truth universally"), ctx);
        // the context's trailing spaces belong to the continuation
        Assert.Equal(ZeroShot.Split(tok, "It is a truth", " universally"), ZeroShot.Split(tok, "It is a truth ", "universally"), new SplitComparer());
    }

    sealed class SplitComparer : IEqualityComparer<(int[], int[])>
    {
        public bool Equals((int[], int[]) a, (int[], int[]) b) => a.Item1.SequenceEqual(b.Item1) && a.Item2.SequenceEqual(b.Item2);
        public int GetHashCode((int[], int[]) a) => a.Item1.Length;
    }

    [Fact]
    public void AccPicksTheLikeliestAndAccNormThePerCharacterLikeliest()
    {
        // item 1: raw log-likelihoods prefer the short wrong choice, per character the long right one
        var items = new List<ZeroShotItem>
        {
            new("c", ["aaaa", "b"], 0),
            new("c", ["xx", "yyyyyyyyyy"], 1),
            new("c", ["p", "q", "r"], 2),
        };
        var scores = new Dictionary<ZeroShotItem, double[]>
        {
            [items[0]] = [-2, -3],      // acc right; per char −0.5 vs −3: right
            [items[1]] = [-4, -10],     // acc wrong; per char −2 vs −1: right
            [items[2]] = [-1, -2, -3],  // both wrong
        };
        var r = ZeroShot.Evaluate(items, i => scores[i]);
        Assert.Equal(3, r.Items);
        Assert.Equal(1.0 / 3, r.Acc, 12);
        Assert.Equal(2.0 / 3, r.AccNorm, 12);
        Assert.Equal(Math.Sqrt(1.0 / 3 * 2.0 / 3 / 2), r.AccStderr, 12);
    }

    [Fact]
    public void ReadsBothSchemasAndNamesTheBadLine()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(path, [
                """{"ctx": "a", "endings": ["b", "c"], "label": 1}""",
                "",
                """{"query": "d", "choices": ["e", "f", "g"], "gold": "2"}""",
            ]);
            var items = ZeroShot.ReadJsonl(path);
            Assert.Equal(2, items.Count);
            Assert.Equal(("a", 1, 2), (items[0].Context, items[0].Label, items[0].Choices.Count));
            Assert.Equal(("d", 2, 3), (items[1].Context, items[1].Label, items[1].Choices.Count));
            Assert.Equal("a", Assert.Single(ZeroShot.ReadJsonl(path, maxItems: 1)).Context);
            Assert.Contains("≥ 1", Assert.Throws<ArgumentException>(() => ZeroShot.ReadJsonl(path, maxItems: 0)).Message);
            File.AppendAllLines(path, ["""{"ctx": "a", "endings": ["b", "c"], "label": 2}"""]);
            var e = Assert.Throws<InvalidDataException>(() => ZeroShot.ReadJsonl(path));
            Assert.Contains("line 4", e.Message);
            Assert.Contains("label 2", e.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void CommandScoresTheBundledModel()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(path, [
                """{"ctx": "It is a truth universally acknowledged, that a single man in possession of a good fortune,", "endings": ["must be in want of a wife.", "the the the the.", "Mr. Darcy said nothing."], "label": 0}""",
                """{"ctx": "She was the youngest of the two daughters of a most affectionate,", "endings": ["indulgent father.", "of the of of.", "zebra crossing."], "label": 0}""",
            ]);
            var r = EldrProcess.Run("zeroshot", TokenizerRepo.Llama12L, "--data", path, "--device", "cpu", "--json");
            Assert.True(r.ExitCode == 0, r.Stderr);
            using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
            Assert.Equal(2, doc.RootElement.GetProperty("items").GetInt32());
            double acc = doc.RootElement.GetProperty("acc").GetDouble();
            Assert.True(acc is 0 or 0.5 or 1, $"acc {acc}");
            var bad = EldrProcess.Run("zeroshot", TokenizerRepo.Llama12L, "--data", path + ".missing", "--device", "cpu");
            Assert.Equal(2, bad.ExitCode);
            Assert.Contains("no such JSONL file", bad.Stderr);
        }
        finally { File.Delete(path); }
    }
}
