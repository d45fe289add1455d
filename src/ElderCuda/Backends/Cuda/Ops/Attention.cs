using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/attention.cu: tiled flash attention, forward and backward, lse saved. Two implementations:
// fp32 CUDA-core tiles (any dtype, head dims up to 256; the F32 parity path) and, for BF16 with a head
// dim in {16, 32, 64, 80, 96, 128}, tensor-core tiles (mma.sync bf16 → fp32), as FlashAttention-2; the
// tensor-core kernels also come pipelined (cp.async, ldmatrix), opt-in until measured on a GPU.
public sealed partial class CudaBackend
{
    /// <summary>
    /// Use the tensor-core attention kernels in BF16 mode where they exist (default true; the
    /// environment variable ELDR_ATTENTION=simt turns them off).
    /// </summary>
    public bool TensorCoreAttention { get; set; } = Environment.GetEnvironmentVariable("ELDR_ATTENTION") != "simt";

    /// <summary>
    /// Use the pipelined tensor-core kernels (attention_fwd_bf16_tc2, attention_bwd_bf16_tc2: cp.async and ldmatrix) where
    /// the tensor-core path runs and the tensors they copy are 16-byte aligned. Off by default until a GPU run has
    /// checked and timed them; the environment variable ELDR_ATTENTION=tc2 turns them on.
    /// </summary>
    public bool PipelinedAttention { get; set; } = Environment.GetEnvironmentVariable("ELDR_ATTENTION") == "tc2";

    /// <summary>cp.async moves 16-byte chunks: the pipelined kernels need every tensor they copy 16-byte aligned.</summary>
    static bool Aligned16(params Tensor[] ts) => ts.All(t => Cu(t).Ptr % 16 == 0);

    bool UseTc(DType d, int headDim) =>
        TensorCoreAttention && d == DType.BF16 && Arch >= 80 && TensorCoreHeadDims.Contains(headDim);

    /// <summary>The compiled head-dim bound and tile sizes for a head dim.</summary>
    static (int hdMax, int br, int bc) AttentionTiles(int headDim) => headDim switch
    {
        <= 64 => (64, 64, 64),
        <= 128 => (128, 64, 64),
        <= 256 => (256, 32, 32),
        _ => throw new NotSupportedException($"attention kernels support head dims up to 256, not {headDim}"),
    };

    /// <summary>Head dims the tensor-core kernels are instantiated for.</summary>
    internal static readonly int[] TensorCoreHeadDims = [16, 32, 64, 80, 96, 128];

    // Kernel names, in one place so that a test can check each against the compiled PTX without a GPU.
    internal static string AttentionForwardKernel(DType q, bool f32Out, bool tensorCores, int headDim, bool pipelined = false) => tensorCores
        ? $"attention_fwd_bf16_tc{(pipelined ? "2" : "")}{(f32Out ? "_f32out" : "")}_hd{headDim}"
        : $"attention_fwd_{Sfx(q)}{(f32Out ? "_f32out" : "")}_hd{AttentionTiles(headDim).hdMax}";
    internal static string AttentionBackwardPrepKernel(DType d, bool f32Out) => $"attention_bwd_prep_{Sfx(d)}{(f32Out ? "_f32out" : "")}";
    internal static string AttentionBackwardKernel(DType d, bool tensorCores, int headDim, bool pipelined = false) => tensorCores
        ? $"attention_bwd_bf16_tc{(pipelined ? "2" : "")}_hd{headDim}"
        : $"attention_bwd_{Sfx(d)}_hd{AttentionTiles(headDim).hdMax}";

    static void CheckAttention(Tensor q, Tensor k, Tensor v, int B, int T, int nHeads, int nKvHeads, int headDim)
    {
        if (nKvHeads <= 0 || nHeads % nKvHeads != 0) throw new ArgumentException($"attention: {nHeads} heads are not a multiple of {nKvHeads} kv heads");
        if (q.Count != (long)B * T * nHeads * headDim) throw new ArgumentException($"attention: q {q} is not [{B}·{T}, {nHeads}·{headDim}]");
        if (k.Count != (long)B * T * nKvHeads * headDim || v.Count != k.Count) throw new ArgumentException($"attention: k {k}/v {v} are not [{B}·{T}, {nKvHeads}·{headDim}]");
    }

    public void Attention(Tensor output, Tensor lse, Tensor q, Tensor k, Tensor v, int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        CheckAttention(q, k, v, B, T, nHeads, nKvHeads, headDim);
        NeedFloat(q, "Attention", "q"); Need(lse, DType.F32, "Attention", "lse");
        // bf16 inputs may write an fp32 output (the model's BF16 policy: see kernels/attention.cu)
        bool f32Out = q.DType == DType.BF16 && output.DType == DType.F32;
        if (!f32Out) Need(output, q.DType, "Attention", "output");
        if (B == 0 || T == 0) return;
        var temps = new List<Tensor>();
        var kk = As(k, q.DType, temps); var vv = As(v, q.DType, temps);
        if (UseTc(q.DType, headDim))
        {
            bool pipelined = PipelinedAttention && Aligned16(q, kk, vv);
            Launch("attention", AttentionForwardKernel(q.DType, f32Out, true, headDim, pipelined), ((uint)((T + 63) / 64), (uint)nHeads, (uint)B), (128, 1, 1), 0,
                P(output), P(lse), P(q), P(kk), P(vv), B, T, nHeads, nKvHeads, headDim, scale);
            Free(temps);
            return;
        }
        var (hdMax, br, bc) = AttentionTiles(headDim);
        uint smem = (uint)(((br + bc) * (headDim + 1) + br * (bc + 1)) * 4);
        Launch("attention", AttentionForwardKernel(q.DType, f32Out, false, headDim), ((uint)((T + br - 1) / br), (uint)nHeads, (uint)B), (256, 1, 1), smem,
            P(output), P(lse), P(q), P(kk), P(vv), B, T, nHeads, nKvHeads, headDim, scale);
        Free(temps);
    }

    public void AttentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse,
        int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        CheckAttention(q, k, v, B, T, nHeads, nKvHeads, headDim);
        NeedFloat(q, "AttentionBackward", "q");
        var d = q.DType;
        Need(dk, d, "AttentionBackward", "dk"); Need(dv, d, "AttentionBackward", "dv"); Need(lse, DType.F32, "AttentionBackward", "lse");
        SameCount(dq, q, "AttentionBackward");
        if (B == 0 || T == 0) return;
        var temps = new List<Tensor>();
        var kk = As(k, d, temps); var vv = As(v, d, temps); var g = As(dOut, d, temps);
        // an fp32 output (BF16 policy) is read as it is: D is computed from the unrounded O
        bool f32Out = d == DType.BF16 && output.DType == DType.F32;
        var o = f32Out ? output : As(output, d, temps);
        var D = Temp(DType.F32, temps, B, nHeads, T);
        long rows = (long)B * T * nHeads;
        Launch("attention", AttentionBackwardPrepKernel(d, f32Out), ((uint)((rows * 32 + 255) / 256), 1, 1), (256, 1, 1), 0,
            P(D), P(g), P(o), B, T, nHeads, headDim);
        var dqAcc = dq.DType == DType.F32 ? dq : Temp(DType.F32, temps, dq.Shape);
        Zero(dqAcc);
        if (UseTc(d, headDim))
        {
            int ld = headDim + 8;
            bool pipelined = PipelinedAttention && Aligned16(q, kk, vv, g);
            uint tsmem = pipelined
                // Ks, Vs [64][hd+8], two buffers of Qs, dOs [32][hd+8], dSᵀ [64][40] (bf16); two buffers of lse, D [32], c [hd] (f32)
                ? (uint)((2 * 64 * ld + 4 * 32 * ld + 64 * 40) * 2 + (4 * 32 + headDim) * 4)
                // Ks, Vs [64][hd+8], Kᵀ [hd][72], Qs, dOs [32][hd+8], Qᵀ, dOᵀ [hd][40], dS [32][72] (bf16); lse, D [32], c [hd] (f32)
                : (uint)((2 * 64 * ld + headDim * 72 + 2 * 32 * ld + 2 * headDim * 40 + 32 * 72) * 2 + (2 * 32 + headDim) * 4);
            var grid = ((uint)((T + 63) / 64), (uint)nKvHeads, (uint)B);
            var name = AttentionBackwardKernel(d, true, headDim, pipelined);
            if (!pipelined)
                Launch("attention", name, grid, (128, 1, 1), tsmem, P(dqAcc), P(dk), P(dv), P(g), P(q), P(kk), P(vv), P(lse), P(D), B, T, nHeads, nKvHeads, headDim, scale);
            else
            {
                // grouped-query heads: one block per query head (not per kv head), so a group's heads run in parallel;
                // their dK, dV shares meet in fp32 accumulators (none for MHA: each block stores its own rows)
                bool split = nHeads != nKvHeads;
                Tensor? dkAcc = null, dvAcc = null;
                if (split)
                {
                    dkAcc = Temp(DType.F32, temps, dk.Shape); dvAcc = Temp(DType.F32, temps, dv.Shape);
                    Zero(dkAcc); Zero(dvAcc);
                    grid.Item2 = (uint)nHeads;
                }
                Launch("attention", name, grid, (128, 1, 1), tsmem,
                    P(dqAcc), P(dk), P(dv), P(dkAcc), P(dvAcc), P(g), P(q), P(kk), P(vv), P(lse), P(D), B, T, nHeads, nKvHeads, headDim, scale);
                if (split) { Cast(dk, dkAcc!); Cast(dv, dvAcc!); }
            }
        }
        else
        {
            var (hdMax, br, bc) = AttentionTiles(headDim);
            uint smem = (uint)(((2 * bc + 2 * br) * (headDim + 1) + 2 * br * (bc + 1) + 2 * br) * 4);
            Launch("attention", AttentionBackwardKernel(d, false, headDim), ((uint)((T + bc - 1) / bc), (uint)nKvHeads, (uint)B), (256, 1, 1), smem,
                P(dqAcc), P(dk), P(dv), P(g), P(q), P(kk), P(vv), P(lse), P(D), B, T, nHeads, nKvHeads, headDim, scale);
        }
        if (!ReferenceEquals(dqAcc, dq)) Cast(dq, dqAcc);
        Free(temps);
    }

    /// <summary>The cached-attention kernel for q's dtype, writing fp32, or bf16 when <paramref name="output"/> is bf16.</summary>
    internal static string AttentionCachedKernel(DType d, DType output = DType.F32) =>
        output == DType.F32 ? $"attention_cached_{Sfx(d)}" : $"attention_cached_{Sfx(d)}_{Sfx(output)}out";
    internal static string AttentionCacheAppendKernel(DType d) => $"attention_cache_append_{Sfx(d)}";

    public void AttentionCached(Tensor output, Tensor q, Tensor k, Tensor v, Tensor kCache, Tensor vCache, int B, int past, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        int Wk = nKvHeads * headDim, cap = KvCacheLayout.Capacity(kCache, vCache, B, past, T, Wk);
        CheckAttention(q, k, v, B, T, nHeads, nKvHeads, headDim);
        NeedFloat(q, "AttentionCached", "q");
        if (!(output.DType == DType.F32 || (output.DType == DType.BF16 && q.DType == DType.BF16)))
            throw new ArgumentException($"AttentionCached: output must be F32, or BF16 with BF16 q (got {output.DType}, q {q.DType})");
        Need(k, q.DType, "AttentionCached", "k"); Need(v, q.DType, "AttentionCached", "v");
        Need(kCache, q.DType, "AttentionCached", "kCache"); Need(vCache, q.DType, "AttentionCached", "vCache");
        SameCount(output, q, "AttentionCached");
        if (T == 0) return;
        LaunchN("attention", AttentionCacheAppendKernel(q.DType), (long)B * T * Wk, P(kCache), P(vCache), P(k), P(v), B, cap, past, T, Wk);
        uint smem = (uint)((headDim + past + T) * 4);
        Launch("attention", AttentionCachedKernel(q.DType, output.DType), ((uint)(B * T), (uint)nHeads, 1), (128, 1, 1), smem,
            P(output), P(q), P(kCache), P(vCache), cap, past, T, nHeads, nKvHeads, headDim, scale);
    }
}
