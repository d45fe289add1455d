using ElderCuda.Backends;
using ElderCuda.Tensors;

namespace ElderCuda.Model;

/// <summary>
/// The keys and values (after RoPE) of the past positions of <see cref="Batch"/> sequences of equal length, per layer,
/// on the model's backend, so that decoding a token costs one position's forward pass instead of the whole prefix's.
/// Made by <see cref="CausalLM.NewKvCache"/>, filled by <see cref="CausalLM.Extend"/>; it holds
/// 2 · layers · batch · capacity · kv-dim values in the compute dtype.
/// </summary>
public sealed class KvCache : IDisposable
{
    internal readonly Tensor?[] K, V;
    internal (Tensor cos, Tensor sin) StepRope;
    internal readonly CausalLM Owner;
    internal readonly int Layers;

    /// <summary>Sequences decoded side by side.</summary>
    public int Batch { get; }
    /// <summary>Most positions the cache can hold per sequence.</summary>
    public int Capacity { get; }
    /// <summary>Positions cached so far.</summary>
    public int Length { get; internal set; }

    internal KvCache(CausalLM owner, int batch, int capacity)
    {
        Owner = owner; Batch = batch; Capacity = capacity; Layers = owner.NumLayers;
        K = new Tensor?[Layers]; V = new Tensor?[Layers];
        var be = owner.Backend; var c = owner.Config;
        try
        {
            for (int i = 0; i < Layers; i++)
            {
                if (owner.Skip[i]) continue;
                K[i] = be.Alloc(be.ComputeType, batch * capacity, c.KvDim);
                V[i] = be.Alloc(be.ComputeType, batch * capacity, c.KvDim);
            }
        }
        catch { Dispose(); throw; }
    }

    public void Dispose()
    {
        for (int i = 0; i < Layers; i++) { K[i]?.Dispose(); V[i]?.Dispose(); K[i] = V[i] = null; }
    }
}

public sealed partial class CausalLM
{
    /// <summary>Most positions this model can attend over: max_position_embeddings, or OPT's learned position table.</summary>
    public int MaxPositions => PositionsName is { } pn ? Math.Min(Config.MaxPositionEmbeddings, Get(pn).Shape[0] - 2) : Config.MaxPositionEmbeddings;

    /// <summary>An empty KV cache for <paramref name="batch"/> sequences of up to <paramref name="capacity"/> positions each.</summary>
    public KvCache NewKvCache(int capacity, int batch = 1)
    {
        if (capacity < 1 || capacity > MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(capacity), $"a KV cache of {capacity} positions: the model attends over 1 .. {MaxPositions}");
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), $"a KV cache for {batch} sequences");
        return new KvCache(this, batch, capacity);
    }

    /// <summary>
    /// Runs <paramref name="ids"/> (B·T, sequence by sequence, B = cache.Batch) as the next T positions of the cached
    /// sequences (cache.Length .. cache.Length+T−1), appends their keys and values to the cache, and returns the
    /// logits [B·V] of each sequence's last new position: the same as <see cref="Step"/> over the whole sequences,
    /// at those rows. A prompt goes in as one call; each decoded token as one more.
    /// </summary>
    public float[] Extend(KvCache cache, ReadOnlySpan<int> ids)
    {
        using var outer = new Scope(Backend, uninitialized: true);
        var logits = ExtendLogits(cache, ids, outer);
        var last = GC.AllocateUninitializedArray<float>(cache.Batch * Config.VocabSize);   // every element is written next
        Backend.ToHost(logits, last);
        return last;
    }

    /// <summary>
    /// <see cref="Extend"/>, returning each sequence's greedy next token instead of its logits: the argmax is taken on
    /// the backend (<see cref="IBackend.ArgMax"/>, TensorPrimitives.IndexOfMax's order), so B ints come back instead of
    /// B·V floats.
    /// </summary>
    public int[] ExtendGreedy(KvCache cache, ReadOnlySpan<int> ids)
    {
        using var outer = new Scope(Backend, uninitialized: true);
        var logits = ExtendLogits(cache, ids, outer);
        var next = outer.A(DType.I32, cache.Batch);
        Backend.ArgMax(next, logits);
        var r = new int[cache.Batch];
        Backend.ToHostInt(next, r);
        return r;
    }

    /// <summary>
    /// Extend's work up to the logits [B, V] on the backend (owned by <paramref name="outer"/>). Activations are allocated
    /// uninitialized: the forward ops overwrite every output, and the tests poison such tensors with NaN to prove it.
    /// </summary>
    Tensor ExtendLogits(KvCache cache, ReadOnlySpan<int> ids, Scope outer)
    {
        int B = cache.Batch;
        if (cache.Owner != this || cache.Layers != NumLayers) throw new ArgumentException("the KV cache belongs to another model (or to this one before layers were removed)");
        if (ids.Length == 0 || ids.Length % B != 0) throw new ArgumentException($"{ids.Length} ids for {B} sequence(s): need T ≥ 1 per sequence");
        int T = ids.Length / B, N = B * T;
        if (cache.Length + T > cache.Capacity)
            throw new ArgumentException($"{cache.Length} cached + {T} new positions exceed the cache's capacity of {cache.Capacity}");
        var be = Backend; var c = Config;
        var idsT = outer.Track(be.FromHostInt(ids, N));
        var (x, _, _) = Embed(idsT, N, T, cache.Length, outer);
        if (c.RotaryDim > 0)
        {
            var (cos, sin) = RopeTableAt(cache.Length, T);
            outer.Track(cos); outer.Track(sin);
            cache.StepRope = (cos, sin);
        }
        for (int i = 0; i < NumLayers; i++)
        {
            if (Skip[i]) continue;
            if (cache.K[i] is null) throw new InvalidOperationException($"layer {i} was skipped when the KV cache was made");
            using var ls = new Scope(be, uninitialized: true);   // decoding is forward only: every op overwrites its output
            var y = LayerForward(i, x, new LayerAct { Scope = ls }, ls, outer, B, T, cache);
            x = ApplyGate(i, x, y, outer);
        }
        cache.StepRope = default;
        cache.Length += T;
        if (T > 1)
        {
            // only each sequence's last position goes through the head: a 64 × 64 prompt at V = 32000 would otherwise
            // make, copy back and convert 131 M logits to use 2 M of them. The row gather is the embedding op with
            // the hidden states as its table.
            var lastRows = new int[B];
            for (int b = 0; b < B; b++) lastRows[b] = b * T + T - 1;
            var xl = outer.A(be.ComputeType, B, x.Cols);
            be.Embedding(xl, outer.Track(be.FromHostInt(lastRows, B)), x, null, 1, 0);
            x = xl;
        }
        return HeadForward(x, B, outer).Logits;
    }
}
