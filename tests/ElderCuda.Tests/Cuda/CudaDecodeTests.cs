using ElderCuda.IO.Safetensors;
using ElderCuda.Model;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Cuda;

/// <summary>
/// KV-cached decoding on the CUDA backend (KvCacheTests holds the CPU's): the prompt in uneven chunks (half, then one
/// position, one more, the rest) through <see cref="CausalLM.Extend"/>, whose last-position logits must match
/// transformers' goldens at that position (fp32 mode under 1e-4, bf16 under DESIGN.md §7's 1e-2 for logits), and
/// through <see cref="CausalLM.ExtendGreedy"/>, whose device argmax must pick what IndexOfMax picks from those logits.
/// This is the path with the uninitialised decode activations (NaN-filled in the tests), the head run on each
/// sequence's last position only, and the argmax kernel.
/// </summary>
[Collection("cuda")]
public class CudaDecodeTests
{
    public static TheoryData<string, DType> Cases()
    {
        var d = new TheoryData<string, DType>();
        foreach (var f in TestPaths.TinyFamilies) { d.Add(f, DType.F32); d.Add(f, DType.BF16); }
        return d;
    }

    [Theory, MemberData(nameof(Cases))]
    public void ChunkedDecodeMatchesTheGoldensAndTheHostArgMax(string family, DType d)
    {
        var be = CudaFixture.Get(d);
        var dir = TestPaths.HfTiny(family);
        using var gold = SafetensorsFile.Open(Path.Combine(dir, "golden.safetensors"));
        var shape = gold.Info("input_ids").Shape;
        int B = (int)shape[0], T = (int)shape[1];
        var ids = gold.ReadInt64("input_ids").Select(x => (int)x).ToArray();
        var logits = gold.ReadFloat32("logits");
        using var m = CausalLM.Load(dir, be);
        int V = m.Config.VocabSize;
        double tol = d == DType.F32 ? 1e-4 : 1e-2, worst = 0;
        using var cache = m.NewKvCache(T, B);
        using var greedyCache = m.NewKvCache(T, B);
        int at = 0;
        foreach (var n in new[] { T / 2, 1, 1, T - T / 2 - 2 })
        {
            var chunk = new int[B * n];
            for (int b = 0; b < B; b++) ids.AsSpan(b * T + at, n).CopyTo(chunk.AsSpan(b * n));
            var got = m.Extend(cache, chunk);
            var next = m.ExtendGreedy(greedyCache, chunk);
            at += n;
            for (int b = 0; b < B; b++)
            {
                var row = got.AsSpan(b * V, V);
                double e = Rel.Error(row, logits.AsSpan((b * T + at - 1) * V, V));
                worst = Math.Max(worst, e);
                Assert.True(e < tol, $"{family} [{d}] sequence {b}, position {at - 1}: logits rel err {e:E2}");
                int host = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row);
                Assert.True(host == next[b], $"{family} [{d}] sequence {b}, position {at - 1}: device argmax {next[b]}, host {host}");
            }
        }
        CudaFixture.Record($"decode {family} logits, chunked", d, worst);
    }
}
