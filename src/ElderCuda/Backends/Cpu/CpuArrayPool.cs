using System.Collections.Concurrent;

namespace ElderCuda.Backends.Cpu;

/// <summary>
/// The CPU backend's caching allocator, the host twin of CudaAllocator: a disposed tensor's float array goes
/// back here and the next tensor of exactly that length takes it (zeroed). A training step allocates and
/// frees the same activations every time, so after the first step it allocates nothing. Without it each
/// step left about 2 GB of large-object garbage, and a distillation run on llama-12L reached 9.6 GB RSS before
/// the GC caught up.
///
/// Small arrays (under 16 K floats) are left to the GC. The pool holds at most <see cref="CapBytes"/>; past
/// that, returned arrays are dropped for the GC, and so are the arrays of a length no one has asked for lately
/// (<see cref="ArrayCache"/>): before, variable-length work such as zero-shot scoring or generation could fill the
/// pool up to the cap with lengths never reused, memory the GC could not take back even when it needed it. (That
/// work's peak RSS is set by the GC's own pace, and did not change: 1.7 and 2.2 GB for 200 zero-shot items on
/// llama-12L, before and after.)
///
/// <see cref="PoisonFreed"/> (the tests set it) fills every returned array with NaN and never reuses it, so
/// that a read of a tensor after its Dispose shows up as NaN instead of silently reading another tensor.
/// </summary>
public static class CpuArrayPool
{
    const int MinPooled = 16 * 1024;

    /// <summary>Most bytes the pool keeps: a quarter of the memory the GC may use.</summary>
    public static long CapBytes { get; } = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4;

    /// <summary>
    /// Rents of pooled sizes after which an unused length is let go: about 20 training steps of llama-12L, far less
    /// than it takes variable-length work (zero-shot items, generation) to fill the pool with lengths never asked again.
    /// </summary>
    const long IdleRents = 8192;

    static readonly ArrayCache Shared = new(CapBytes, MinPooled, IdleRents);

    /// <summary>Test switch: poison returned arrays with NaN and do not reuse them.</summary>
    public static bool PoisonFreed { get; set; }

    /// <summary>A zero-filled array of exactly <paramref name="length"/> floats.</summary>
    public static float[] Rent(int length) => Shared.TryRent(length) ?? new float[length];

    /// <summary>Give an array back; the caller must not touch it again.</summary>
    public static void Return(float[] a)
    {
        if (a.Length < MinPooled) return;
        if (PoisonFreed) { Array.Fill(a, float.NaN); return; }
        Shared.Return(a);
    }
}

/// <summary>
/// Free float arrays by exact length, at most capBytes in all. A length not rented for idleRents rents (of arrays
/// of at least minLength) has its arrays dropped for the GC at the next miss, so work whose shapes keep changing
/// does not keep a pool full of lengths it will not ask for again, while a training loop, which asks for the same
/// lengths every step, never misses after its first step.
/// </summary>
internal sealed class ArrayCache(long capBytes, int minLength, long idleRents)
{
    sealed class SizeClass
    {
        public readonly ConcurrentBag<float[]> Arrays = new();
        public long LastUse;
    }

    readonly ConcurrentDictionary<int, SizeClass> _free = new();
    long _bytes, _tick, _lastSweep;

    public long PooledBytes => Interlocked.Read(ref _bytes);

    /// <summary>A zeroed array of exactly this length from the cache, or null (the caller allocates).</summary>
    public float[]? TryRent(int length)
    {
        if (length < minLength) return null;
        long t = Interlocked.Increment(ref _tick);
        if (_free.TryGetValue(length, out var sc))
        {
            Volatile.Write(ref sc.LastUse, t);
            if (sc.Arrays.TryTake(out var a))
            {
                Interlocked.Add(ref _bytes, -4L * length);
                Array.Clear(a);
                return a;
            }
        }
        if (t - Interlocked.Read(ref _lastSweep) >= Math.Max(1, idleRents / 4))
        {
            Interlocked.Exchange(ref _lastSweep, t);
            foreach (var (len, cls) in _free)
                if (t - Volatile.Read(ref cls.LastUse) > idleRents)
                    while (cls.Arrays.TryTake(out _)) Interlocked.Add(ref _bytes, -4L * len);
        }
        return null;
    }

    /// <summary>Keep an array for a later rent of its length (false: too small, or the cache is full; left to the GC).</summary>
    public bool Return(float[] a)
    {
        if (a.Length < minLength) return false;
        long bytes = 4L * a.Length;
        if (Interlocked.Add(ref _bytes, bytes) > capBytes) { Interlocked.Add(ref _bytes, -bytes); return false; }
        var sc = _free.GetOrAdd(a.Length, _ => new SizeClass());
        Volatile.Write(ref sc.LastUse, Interlocked.Read(ref _tick));
        sc.Arrays.Add(a);
        return true;
    }
}
