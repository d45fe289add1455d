using ElderCuda.Backends.Cuda;
using ElderCuda.Backends.Cuda.Interop;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Cuda;

/// <summary>Errors, memory accounting and kernel loading of the CUDA backend.</summary>
[Collection("cuda")]
public class CudaRuntimeTests
{
    [Fact]
    public void WithoutADriverTheErrorSuggestsTheCpu()
    {
        if (CudaBackend.IsAvailable(out _)) Assert.Skip("a CUDA driver and device are present");
        var ex = Assert.ThrowsAny<CudaException>(() => new CudaBackend(DType.F32));
        Assert.Contains("--device cpu", ex.Message);
    }

    [Fact]
    public void OutOfMemorySaysHowMuchIsNeededAndFree()
    {
        var be = CudaFixture.Get(DType.F32);
        var (free, total) = be.FreeAndTotalBytes();
        Assert.True(free > 0 && total >= free);
        // 2^36 floats = 256 GiB, more than any current GPU holds
        var ex = Assert.Throws<CudaOutOfMemoryException>(() => be.Alloc(DType.F32, 1 << 30, 64));
        Assert.Contains("needs 256.00 GiB", ex.Message);
        Assert.Contains("free on " + be.DeviceName, ex.Message);
    }

    /// <summary>
    /// Transfers larger than the pinned staging buffer go through it in chunks: 70 M values (280 MB of fp32, two
    /// 256 MB downloads; 140 MB of bf16, three 64 MB uploads) come back bit for bit, the last partial chunk included.
    /// Values are index patterns exact in bf16, so a chunk written at the wrong offset shows.
    /// </summary>
    [Fact]
    public void LargeTransfersGoThroughThePinnedBufferInChunks()
    {
        var be = CudaFixture.Get(DType.F32);
        const int n = 70_000_000;
        var src = new float[n];
        for (int i = 0; i < n; i++) src[i] = (i % 61) - 30 + (i / 61 % 4) * 0.25f;   // ≤ 8 significant bits: exact in bf16
        foreach (var d in new[] { DType.F32, DType.BF16 })
        {
            using var t = be.Alloc(d, n);
            be.CopyFromHost(t, src);
            var back = new float[n];
            be.ToHost(t, back);
            int bad = Enumerable.Range(0, n).FirstOrDefault(i => BitConverter.SingleToUInt32Bits(back[i]) != BitConverter.SingleToUInt32Bits(src[i]), -1);
            Assert.True(bad < 0, $"{d}: element {bad} came back as {(bad < 0 ? 0 : back[bad])}, sent {(bad < 0 ? 0 : src[bad])}");
        }
    }

    /// <summary>
    /// With poisoning on (as in every test run, TestSetup), an uninitialised tensor of any dtype reads back as the
    /// poison value: NaN for F32, BF16 and F16, int.MinValue for I32. Each comes from a reused allocator block that
    /// held zeros, so a dtype left unpoisoned would read back as 0.
    /// </summary>
    [Fact]
    public void UninitialisedTensorsOfEveryDtypeArePoisoned()
    {
        Assert.True(ElderCuda.Backends.BackendOptions.PoisonUninitialized, "the test assembly runs with poisoning on (TestSetup)");
        var be = CudaFixture.Get(DType.F32);
        const int n = 1000;   // 2000 and 4000 bytes: buckets of 2048 and 4096
        foreach (var d in new[] { DType.F32, DType.BF16, DType.F16, DType.I32 })
        {
            be.Alloc(d, n).Dispose();   // a zeroed block of this size, back in the allocator's cache
            using var t = be.AllocUninitialized(d, n);
            if (d == DType.I32)
            {
                var back = new int[n];
                be.ToHostInt(t, back);
                Assert.All(back, v => Assert.Equal(int.MinValue, v));
            }
            else
            {
                var back = new float[n];
                be.ToHost(t, back);
                Assert.True(back.All(float.IsNaN), $"{d}: {back.Count(v => !float.IsNaN(v))} of {n} elements are not NaN");
            }
        }
    }

    [Fact]
    public void AllocatorReusesBlocksAndTracksPeak()
    {
        var be = CudaFixture.Get(DType.F32);
        var a = be.Allocator;
        long before = a.CurrentBytes;
        a.ResetPeak();
        var t1 = be.Alloc(DType.F32, 1000, 1000);                // 4 MB → one 4 MiB bucket
        Assert.Equal(before + CudaAllocator.BucketSize(4_000_000), a.CurrentBytes);
        t1.Dispose();
        Assert.Equal(before, a.CurrentBytes);
        long hits = a.CacheHits;
        var t2 = be.Alloc(DType.F32, 999, 1001);                 // same bucket: served from the cache
        Assert.Equal(hits + 1, a.CacheHits);
        Assert.True(a.PeakBytes >= before + CudaAllocator.BucketSize(4_000_000));
        t2.Dispose();
        a.Trim();
        Assert.Equal(0, a.CachedBytes);
        Assert.Throws<ObjectDisposedException>(() => ((CudaTensor)t2).Ptr);
    }

    [Fact]
    public void KernelsComeFromCacheOrNvrtcAndMissingNamesAreNamed()
    {
        var be = CudaFixture.Get(DType.F32);
        var ex = Assert.Throws<CudaException>(() => be.Launch("act", "no_such_kernel", (1, 1, 1), (32, 1, 1), 0));
        Assert.Contains("no_such_kernel", ex.Message);
        Assert.Contains("CUDA_ERROR_NOT_FOUND", ex.Message);
        Assert.True(be.KernelOrigins.ContainsKey("act"));
    }
}
