using ElderCuda.Backends.Cuda.Interop;

namespace ElderCuda.Backends.Cuda;

/// <summary>
/// A caching device allocator: sizes are rounded up to buckets (512 B steps up to 1 MiB, 2 MiB steps
/// above), freed blocks go back to their bucket's free list, and <see cref="Trim"/> returns cached
/// blocks to the driver. When cuMemAlloc fails, the cache is trimmed and the allocation retried once;
/// if it still fails the error says how much was needed and how much is free on the device.
/// Not thread-safe beyond a lock around the lists (the backend runs one stream).
/// </summary>
public sealed class CudaAllocator : IDisposable
{
    readonly Dictionary<long, Stack<ulong>> _free = new();
    readonly string _deviceName;
    readonly object _lock = new();

    public CudaAllocator(string deviceName) { _deviceName = deviceName; }

    /// <summary>Bytes in live tensors (bucket sizes).</summary>
    public long CurrentBytes { get; private set; }
    /// <summary>The most <see cref="CurrentBytes"/> has been.</summary>
    public long PeakBytes { get; private set; }
    /// <summary>Bytes held in free lists, allocated from the driver but not in use.</summary>
    public long CachedBytes { get; private set; }
    public long AllocCalls { get; private set; }
    public long CacheHits { get; private set; }

    public static long BucketSize(long bytes)
    {
        if (bytes <= 0) return 512;
        if (bytes <= 1 << 20) return (bytes + 511) & ~511L;
        const long step = 2L << 20;
        return (bytes + step - 1) / step * step;
    }

    public ulong Allocate(long bytes, out long bucket)
    {
        bucket = BucketSize(bytes);
        lock (_lock)
        {
            AllocCalls++;
            if (_free.TryGetValue(bucket, out var st) && st.Count > 0)
            {
                CacheHits++;
                CachedBytes -= bucket;
                Account(bucket);
                return st.Pop();
            }
            int r = Driver.TryMemAlloc(out var p, (ulong)bucket);
            if (r == 2 /* CUDA_ERROR_OUT_OF_MEMORY */)
            {
                TrimLocked();
                r = Driver.TryMemAlloc(out p, (ulong)bucket);
            }
            if (r == 2)
            {
                var (free, total) = Driver.MemGetInfo();
                throw new CudaOutOfMemoryException(
                    $"out of GPU memory: needs {Gib(bucket)} GiB, {Gib((long)free)} GiB free on {_deviceName} " +
                    $"({Gib((long)total)} GiB total, {Gib(CurrentBytes)} GiB in live tensors of this process)", bucket, (long)free);
            }
            Driver.Check(r, "cuMemAlloc_v2");
            Account(bucket);
            return p;
        }
    }

    void Account(long bucket)
    {
        CurrentBytes += bucket;
        if (CurrentBytes > PeakBytes) PeakBytes = CurrentBytes;
    }

    /// <summary>Return a block to its free list (the device memory stays allocated, for reuse).</summary>
    public void Release(ulong ptr, long bucket)
    {
        lock (_lock)
        {
            if (!_free.TryGetValue(bucket, out var st)) _free[bucket] = st = new Stack<ulong>();
            st.Push(ptr);
            CurrentBytes -= bucket;
            CachedBytes += bucket;
        }
    }

    /// <summary>Free every cached block back to the driver.</summary>
    public void Trim() { lock (_lock) TrimLocked(); }

    void TrimLocked()
    {
        foreach (var st in _free.Values)
            while (st.Count > 0) Driver.MemFree(st.Pop());
        _free.Clear();
        CachedBytes = 0;
    }

    public void ResetPeak() { lock (_lock) PeakBytes = CurrentBytes; }

    public void Dispose() => Trim();

    static string Gib(long b) => (b / (double)(1L << 30)).ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
}
