using ElderCuda.Tensors;

namespace ElderCuda.Backends;

/// <summary>The KV-cache layout both backends' <see cref="IBackend.AttentionCached"/> share, and its one shape check.</summary>
internal static class KvCacheLayout
{
    /// <summary>
    /// Positions per sequence of kCache/vCache [B·capacity, kvWidth]; throws unless T new positions after
    /// <paramref name="past"/> fit every sequence's block.
    /// </summary>
    public static int Capacity(Tensor kCache, Tensor vCache, int B, int past, int T, int kvWidth)
    {
        int cap = B < 1 ? 0 : kCache.Rows / B;
        if (B < 1 || kCache.Cols != kvWidth || vCache.Cols != kvWidth || kCache.Rows % B != 0 || vCache.Rows != kCache.Rows || past < 0 || past + T > cap)
            throw new ArgumentException($"attention (cached): {past} + {T} positions of {B} sequence(s) do not fit the cache {kCache}/{vCache}");
        return cap;
    }
}
