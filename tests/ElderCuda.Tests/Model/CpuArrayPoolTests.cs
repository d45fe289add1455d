using ElderCuda.Backends.Cpu;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Model;

/// <summary>The CPU backend's caching allocator: reuse, zeroing, one return per tensor, poisoning.</summary>
public class CpuArrayPoolTests
{
    [Fact]
    public void ADisposedTensorsStorageComesBackZeroedForTheSameLengthOnly()
    {
        var be = new CpuBackend();
        const int n = 16411;   // a length no other test allocates, so the pool's bag for it is ours alone
        var poison = CpuArrayPool.PoisonFreed;
        try
        {
            CpuArrayPool.PoisonFreed = false;
            var t = (CpuTensor)be.Alloc(DType.F32, n);
            t.Span.Fill(3f);
            t.Dispose();
            t.Dispose();   // a second Dispose must not hand the array out twice
            var other = (CpuTensor)be.Alloc(DType.F32, n + 1);
            var a = (CpuTensor)be.Alloc(DType.F32, n);
            var b = (CpuTensor)be.Alloc(DType.F32, n);
            Assert.All(a.Span.ToArray(), v => Assert.Equal(0f, v));
            Assert.True(a.Span.Length == n && b.Span.Length == n && other.Span.Length == n + 1);
            a.Span[0] = 1f;
            Assert.Equal(0f, b.Span[0]);   // a and b do not share storage
        }
        finally { CpuArrayPool.PoisonFreed = poison; }
    }

    [Fact]
    public void PoisonedStorageReadsAsNaN()
    {
        var be = new CpuBackend();
        var t = (CpuTensor)be.FromHost(new float[20000], DType.F32, 20000);
        Assert.True(CpuArrayPool.PoisonFreed, "the test assembly runs with poisoning on (TestSetup)");
        t.Dispose();
        Assert.True(float.IsNaN(t.Span[123]));
    }

    /// <summary>Decoding's uninitialized activations read as NaN in the tests (TestSetup), and as zero otherwise.</summary>
    [Fact]
    public void UninitializedTensorsArePoisonedInTests()
    {
        var be = new CpuBackend();
        Assert.True(ElderCuda.Backends.BackendOptions.PoisonUninitialized, "the test assembly runs with poisoning on (TestSetup)");
        using var t = (CpuTensor)be.AllocUninitialized(DType.F32, 3, 7);
        Assert.All(t.Span[..21].ToArray(), v => Assert.True(float.IsNaN(v)));
        using var z = (CpuTensor)be.Alloc(DType.F32, 3, 7);
        Assert.All(z.Span[..21].ToArray(), v => Assert.Equal(0f, v));
        using var ids = (CpuTensor)be.AllocUninitialized(DType.I32, 5);   // integer tensors: int.MinValue
        Assert.All(ids.Ints[..5].ToArray(), v => Assert.Equal(int.MinValue, v));
    }

    [Fact]
    public void LengthsNotAskedForLatelyAreLetGoWhileASteadyLoopKeepsHitting()
    {
        var cache = new ArrayCache(capBytes: 1L << 30, minLength: 16, idleRents: 8);
        // variable-length work: each length once, never again
        for (int len = 100; len < 140; len++) Assert.True(cache.Return(new float[len]));
        long stale = cache.PooledBytes;
        Assert.Equal(4L * Enumerable.Range(100, 40).Sum(), stale);
        int hits = 0;
        for (int i = 0; i < 20; i++)
        {
            // a training step: the same length rented and returned every time, plus a length never seen before
            var a = cache.TryRent(500);
            if (a is not null) { hits++; Assert.All(a, v => Assert.Equal(0f, v)); a[0] = 7f; }
            Assert.True(cache.Return(a ?? new float[500]));
            Assert.Null(cache.TryRent(1000 + i));
        }
        Assert.Equal(19, hits);                         // every step after the first found its array
        Assert.Equal(4L * 500, cache.PooledBytes);      // the 40 stale lengths are gone, the loop's array stays
        Assert.Null(cache.TryRent(120));
        Assert.Equal(0f, cache.TryRent(500)![0]);       // and comes back zeroed
    }

    [Fact]
    public void TheCacheKeepsNoMoreThanItsCap()
    {
        var cache = new ArrayCache(capBytes: 4 * 1000, minLength: 16, idleRents: 1000);
        Assert.True(cache.Return(new float[600]));
        Assert.False(cache.Return(new float[600]));     // 4800 bytes > 4000
        Assert.False(cache.Return(new float[8]));       // under minLength: left to the GC
        Assert.Equal(2400, cache.PooledBytes);
    }
}
