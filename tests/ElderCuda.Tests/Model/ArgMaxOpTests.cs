using ElderCuda.Backends.Cpu;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Model;

/// <summary>
/// The row argmax greedy decoding uses (IBackend.ArgMax) on rows whose answers are known by construction: the
/// largest value, the lowest index among ties, the first NaN, +0 over −0, and a row of −inf.
/// </summary>
public class ArgMaxOpTests
{
    [Fact]
    public void PicksTheDocumentedIndexOnEachRow()
    {
        const float nan = float.NaN, inf = float.PositiveInfinity;
        float[][] rows =
        [
            [0.5f, 2f, -1f, 1.5f, 2f],        // tie between 1 and 4: 1
            [-3f, -2f, -7f, -2f, -9f],        // all negative, tie: 1
            [1f, nan, 3f, nan, inf],          // NaN beats +inf; the first NaN: 1
            [-0f, -0f, 0f, -0f, 0f],          // +0 over −0: 2
            [-inf, -inf, -inf, -inf, -inf],   // nothing beats the first: 0
            [1f, 1f, 1f, 1f, 9f],             // the last: 4
        ];
        int[] expected = [1, 1, 1, 2, 0, 4];
        var be = new CpuBackend();
        int N = rows.Length, V = rows[0].Length;
        var x = be.FromHost(rows.SelectMany(r => r).ToArray(), DType.F32, N, V);
        var o = be.Alloc(DType.I32, N);
        be.ArgMax(o, x);
        var got = new int[N];
        be.ToHostInt(o, got);
        Assert.Equal(expected, got);
    }

    [Fact]
    public void RejectsAnOutputOfTheWrongLength()
    {
        var be = new CpuBackend();
        var x = be.Alloc(DType.F32, 3, 5);
        var ex = Assert.Throws<ArgumentException>(() => be.ArgMax(be.Alloc(DType.I32, 2), x));
        Assert.Contains("one index per row", ex.Message);
    }
}
