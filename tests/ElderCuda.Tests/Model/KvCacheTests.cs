using ElderCuda.Backends.Cpu;
using ElderCuda.Eval;
using ElderCuda.IO.Safetensors;
using ElderCuda.Model;

namespace ElderCuda.Tests.Model;

/// <summary>A family's golden batch for the decoding tests, and the uneven chunks (half, one, one, the rest) they feed it in.</summary>
internal sealed record DecodeGolden(string Dir, int B, int T, int[] Ids, float[] Logits, int[] Chunks)
{
    internal static DecodeGolden Load(string family)
    {
        var dir = TestPaths.HfTiny(family);
        using var gold = SafetensorsFile.Open(Path.Combine(dir, "golden.safetensors"));
        var shape = gold.Info("input_ids").Shape;
        int B = (int)shape[0], T = (int)shape[1];
        Assert.True(T >= 6, $"golden sequence of {T} tokens is too short to chunk");
        return new(dir, B, T, gold.ReadInt64("input_ids").Select(x => (int)x).ToArray(), gold.ReadFloat32("logits"), [T / 2, 1, 1, T - T / 2 - 2]);
    }
}

/// <summary>
/// Incremental decoding with the KV cache (CausalLM.Extend) against transformers' float64 goldens: every family's
/// sequence goes in chunk by chunk (prompt, single tokens, a longer chunk), and the logits at each chunk's last
/// position must be those of the whole sequence at that position (DESIGN.md §7 CPU tolerance, 1e-5).
/// </summary>
public class KvCacheTests
{
    public static TheoryData<string> Families => new(TestPaths.TinyFamilies);

    [Theory, MemberData(nameof(Families))]
    public void ChunkedDecodingGivesTheGoldenLogitsAtEveryChunkEnd(string family)
    {
        var (dir, B, T, ids, logits, chunks) = DecodeGolden.Load(family);
        using var m = CausalLM.Load(dir, new CpuBackend());
        int V = m.Config.VocabSize;
        int checkedRows = 0;
        for (int b = 0; b < B; b++)
        {
            using var cache = m.NewKvCache(T);
            int pos = 0;
            foreach (var n in chunks)
            {
                var got = m.Extend(cache, ids.AsSpan(b * T + pos, n));
                pos += n;
                var want = logits.AsSpan((b * T + pos - 1) * V, V);
                double e = Rel.Error(got, want);
                Assert.True(e < 1e-5, $"{family} row {b}, position {pos - 1}: rel err {e:E2}");
                Assert.Equal(pos, cache.Length);
                checkedRows++;
            }
            Assert.Throws<ArgumentException>(() => m.Extend(cache, [ids[b * T]]));   // full
        }
        Assert.Equal(B * chunks.Length, checkedRows);

        // all sequences side by side in one cache
        Assert.True(B >= 2, $"the golden batch has {B} sequence(s); the batched check needs 2");
        // ExtendGreedy, on a second cache fed the same chunks, must give the golden logits' argmax wherever the golden
        // top two are clearly apart (the fp32 engine may order a near tie differently)
        using var batched = m.NewKvCache(T, B);
        using var greedy = m.NewKvCache(T, B);
        int at = 0, clear = 0;
        foreach (var n in chunks)
        {
            var chunk = new int[B * n];
            for (int b = 0; b < B; b++) ids.AsSpan(b * T + at, n).CopyTo(chunk.AsSpan(b * n));
            var got = m.Extend(batched, chunk);
            var next = m.ExtendGreedy(greedy, chunk);
            at += n;
            Assert.Equal(at, greedy.Length);
            for (int b = 0; b < B; b++)
            {
                var want = logits.AsSpan((b * T + at - 1) * V, V).ToArray();
                double e = Rel.Error(got.AsSpan(b * V, V), want);
                Assert.True(e < 1e-5, $"{family} batched, row {b}, position {at - 1}: rel err {e:E2}");
                var order = Enumerable.Range(0, V).OrderByDescending(j => want[j]).ToArray();
                if (want[order[0]] - want[order[1]] > 1e-4 * Math.Abs(want[order[0]]) + 1e-6)
                {
                    Assert.True(order[0] == next[b], $"{family} greedy, row {b}, position {at - 1}: {next[b]}, golden argmax {order[0]}");
                    clear++;
                }
            }
        }
        Assert.True(clear >= B * chunks.Length / 2, $"{family}: only {clear} of {B * chunks.Length} golden rows have a clear argmax");
    }

    /// <summary>
    /// On the bundled trained model, whose greedy continuation depends on every position (the tiny random fixtures'
    /// argmax barely does: a cache that ignored positions still passed there), 40 new tokens.
    /// </summary>
    [Fact]
    public void GreedyWithTheCacheEqualsGreedyRecomputingThePrefix()
    {
        using var m = CausalLM.Load(TestPaths.BundledModel, new CpuBackend());
        var tok = ElderCuda.IO.Tokenization.TokenizerLoader.Load(TestPaths.BundledModel);
        var prompt = tok.Encode("The history of the city begins");
        var cached = Generation.Greedy(m, prompt, 40);
        var recomputed = Generation.Greedy(m, prompt, 40, kvCache: false);
        Assert.Equal(prompt.Length + 40, cached.Length);
        Assert.Equal(recomputed, cached);
    }

    [Fact]
    public void ACacheLongerThanTheModelsPositionsIsRefused()
    {
        using var m = CausalLM.Load(TestPaths.HfTiny("opt"), new CpuBackend());
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => m.NewKvCache(m.MaxPositions + 1));
        Assert.Contains("attends over", e.Message);
    }
}
