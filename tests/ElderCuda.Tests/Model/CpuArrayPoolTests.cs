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
}
