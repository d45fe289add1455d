using ElderCuda.Tensors;

namespace ElderCuda.Backends;

public enum Activation { Silu, GeluNew, Relu }

/// <summary>Which norm of a difference a regulariser uses (ELDeR stage 2, DReSS).</summary>
public enum NormKind { L1, L2 }

/// <summary>
/// The op set the model is written against once. The CPU backend is the plain float32 reference;
/// the CUDA backend implements the same ops with NVRTC kernels and cuBLAS.
///
/// Conventions (after llm.c): outputs first, then inputs, then sizes. Activations are 2-D
/// [N = B·T, C] row-major. Linear weights are Hugging Face's [out, in]. Backward ops ADD into
/// parameter gradients (dW, db, dNormWeight); for activation gradients the flag says whether to add or
/// overwrite. Statistics saved for backward (rstd, mean, lse) are always F32.
/// </summary>
public interface IBackend : IDisposable
{
    string Name { get; }

    /// <summary>The dtype this backend computes activations in (F32 on CPU; BF16 or F32 on CUDA).</summary>
    DType ComputeType { get; }

    // ---- memory -----------------------------------------------------------------------------------
    /// <summary>A zero-filled tensor.</summary>
    Tensor Alloc(DType dtype, params int[] shape);
    /// <summary>
    /// A tensor whose contents are unspecified, for outputs an op overwrites whole (decoding allocates a dozen per layer
    /// per token, and on the GPU each zero fill is one more call). With <see cref="BackendOptions.PoisonUninitialized"/> set
    /// (the tests set it) float tensors come filled with NaN, so reading an element nobody wrote shows.
    /// </summary>
    Tensor AllocUninitialized(DType dtype, params int[] shape);
    /// <summary>A tensor holding <paramref name="data"/>, converted to <paramref name="dtype"/>.</summary>
    Tensor FromHost(ReadOnlySpan<float> data, DType dtype, params int[] shape);
    /// <summary>An I32 tensor (token ids, targets).</summary>
    Tensor FromHostInt(ReadOnlySpan<int> data, params int[] shape);
    /// <summary>dst = data, converted to dst's dtype, into an existing tensor (no new host or device buffer).</summary>
    void CopyFromHost(Tensor dst, ReadOnlySpan<float> data);
    /// <summary>Copy to host as float32 (converting from the tensor's dtype).</summary>
    void ToHost(Tensor t, Span<float> dst);
    /// <summary>Copy an I32 tensor to the host.</summary>
    void ToHostInt(Tensor t, Span<int> dst);
    void Zero(Tensor t);
    /// <summary>dst = src, converting dtype if they differ. Same element count.</summary>
    void Copy(Tensor dst, Tensor src);
    void Synchronize();

    // ---- embedding (token table, optional learned positions as in OPT) ----------------------------
    /// <summary>out[n] = table[ids[n]] (+ positions[(n mod T) + posOffset]).</summary>
    void Embedding(Tensor output, Tensor ids, Tensor table, Tensor? positions, int T, int posOffset);
    /// <summary>dTable[ids[n]] += dOut[n]; dPositions[(n mod T)+posOffset] += dOut[n].</summary>
    void EmbeddingBackward(Tensor dTable, Tensor? dPositions, Tensor dOut, Tensor ids, int T, int posOffset);

    // ---- linear -----------------------------------------------------------------------------------
    /// <summary>out[N,O] = x[N,I]·W[O,I]ᵀ + b (accumulate: out +=).</summary>
    void Matmul(Tensor output, Tensor x, Tensor w, Tensor? bias, bool accumulate = false);
    /// <summary>dx (=, or += when accumulateDx) dOut·W; dW += dOutᵀ·x; db += Σ_n dOut. Any output may be null.</summary>
    void MatmulBackward(Tensor? dx, Tensor? dw, Tensor? db, Tensor dOut, Tensor x, Tensor w, bool accumulateDx = false);

    // ---- norms (fp32 math) -------------------------------------------------------------------------
    /// <summary>out = x·rsqrt(mean(x²)+eps)·w; rstd[N] saved.</summary>
    void RmsNorm(Tensor output, Tensor rstd, Tensor x, Tensor w, float eps);
    /// <summary>dx += ..., dw += ...</summary>
    void RmsNormBackward(Tensor dx, Tensor dw, Tensor dOut, Tensor x, Tensor w, Tensor rstd);
    /// <summary>out = (x−mean)·rstd·w + b; mean[N], rstd[N] saved.</summary>
    void LayerNorm(Tensor output, Tensor mean, Tensor rstd, Tensor x, Tensor w, Tensor b, float eps);
    /// <summary>dx += ..., dw += ..., db += ...</summary>
    void LayerNormBackward(Tensor dx, Tensor dw, Tensor db, Tensor dOut, Tensor x, Tensor w, Tensor mean, Tensor rstd);

    // ---- rotary position embedding (rotate_half pairs j, j + rotaryDim/2) ---------------------------
    /// <summary>
    /// In place on x[B·T, nHeads·headDim]: the first rotaryDim dims of each head are rotated by the
    /// angle table cos/sin[T, rotaryDim/2] (position = n mod T); the rest pass through.
    /// inverse = true rotates by −angle, which is the backward of the forward rotation.
    /// </summary>
    void Rope(Tensor x, Tensor cos, Tensor sin, int T, int nHeads, int headDim, int rotaryDim, bool inverse);

    // ---- causal attention with grouped-query heads ------------------------------------------------
    /// <summary>
    /// q[B·T, nH·hd], k/v[B·T, nKv·hd] → out[B·T, nH·hd]; lse[B, nH, T] (F32) saved for backward.
    /// softmax(scale·q·kᵀ) with a causal mask, computed in fp32.
    /// </summary>
    void Attention(Tensor output, Tensor lse, Tensor q, Tensor k, Tensor v, int B, int T, int nHeads, int nKvHeads, int headDim, float scale);
    /// <summary>Overwrites dq, dk, dv.</summary>
    void AttentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse,
        int B, int T, int nHeads, int nKvHeads, int headDim, float scale);

    /// <summary>
    /// Attention for incremental decoding of B sequences of equal length with a KV cache. kCache/vCache are
    /// [B·capacity, nKv·hd], sequence b in rows b·capacity .. (b+1)·capacity−1. k, v [B·T, nKv·hd] hold each
    /// sequence's new positions past .. past+T−1 (after RoPE); they are first written into the cache rows of those
    /// positions. Then out[B·T, nH·hd] (F32, or BF16 with BF16 q on the GPU) = softmax(scale·q·kᵀ)·v over positions 0 .. past+t of the query's own
    /// sequence: the last T rows of <see cref="Attention"/> over each whole sequence. No backward.
    /// </summary>
    void AttentionCached(Tensor output, Tensor q, Tensor k, Tensor v, Tensor kCache, Tensor vCache, int B, int past, int T, int nHeads, int nKvHeads, int headDim, float scale);

    // ---- activations -------------------------------------------------------------------------------
    /// <summary>out = silu(gate) ⊙ up (Llama MLP).</summary>
    void SwiGlu(Tensor output, Tensor gate, Tensor up);
    /// <summary>Overwrites dGate, dUp.</summary>
    void SwiGluBackward(Tensor dGate, Tensor dUp, Tensor dOut, Tensor gate, Tensor up);
    void Act(Activation kind, Tensor output, Tensor x);
    /// <summary>Overwrites dx.</summary>
    void ActBackward(Activation kind, Tensor dx, Tensor dOut, Tensor x);

    // ---- elementwise and reductions (fp32 accumulation) --------------------------------------------
    /// <summary>out = a + b (out may alias a or b).</summary>
    void Add(Tensor output, Tensor a, Tensor b);
    /// <summary>y += alpha·x.</summary>
    void Axpy(Tensor y, float alpha, Tensor x);
    /// <summary>out = s·x (out may alias x). This is the ELDeR layer gate's forward.</summary>
    void Scale(Tensor output, Tensor x, float s);
    /// <summary>Σ a⊙b in fp64 on the host side. The gate gradient dS = Σ dOut ⊙ y.</summary>
    double Dot(Tensor a, Tensor b);
    /// <summary>R = ‖a − b‖₁ or ‖a − b‖₂ (Frobenius).</summary>
    double DiffNorm(Tensor a, Tensor b, NormKind kind);
    /// <summary>dA += coef·∂R/∂a, dB −= coef·∂R/∂a (dB may be null). norm = the R from DiffNorm.</summary>
    void DiffNormBackward(Tensor dA, Tensor? dB, Tensor a, Tensor b, NormKind kind, double norm, float coef);

    // ---- loss --------------------------------------------------------------------------------------
    /// <summary>
    /// Fused softmax cross-entropy over logits[N, V]. losses[N] (F32) = −log p[target]; rows whose
    /// target is negative are ignored (loss 0, gradient 0). If dLogits is given it is overwritten with
    /// gradScale·(softmax − onehot) (dLogits may alias logits).
    /// </summary>
    void CrossEntropy(Tensor losses, Tensor? dLogits, Tensor logits, Tensor targets, float gradScale);
    /// <summary>
    /// Cross-entropy with knowledge distillation (Hinton et al.), fused like <see cref="CrossEntropy"/>: losses as
    /// there (hard targets). With q = softmax(z), q_T = softmax(z/T) and p = softmax(t/T) from the teacher's logits
    /// teacher[N, V] (F32; p is computed on the fly, never stored), dLogits (may alias logits) is overwritten with the gradient of
    /// (1 − α)·CE + α·T²·KL(p ‖ q_T): gradScale·[(1 − α)·(q − onehot) + α·T·(q_T − p)]. Rows whose target is
    /// negative get loss 0 and gradient 0.
    /// </summary>
    void CrossEntropyDistill(Tensor losses, Tensor dLogits, Tensor logits, Tensor teacher, Tensor targets, float gradScale, float alpha, float temperature);

    // ---- decoding ----------------------------------------------------------------------------------
    /// <summary>
    /// output[n] (I32) = the index of the largest value in row n of x[N, V], in TensorPrimitives.IndexOfMax's order: a
    /// NaN beats every number (the first NaN wins), +0 beats −0, and among equal values the lowest index wins. Greedy
    /// decoding brings back these N ints instead of N·V logits. No backward.
    /// </summary>
    void ArgMax(Tensor output, Tensor x);

    // ---- optimiser ---------------------------------------------------------------------------------
    /// <summary>
    /// Fused AdamW step on an fp32 master copy; param (any dtype, may be the master itself) receives the
    /// updated value. m, v are F32. step is 1-based (bias correction).
    /// </summary>
    void AdamW(Tensor param, Tensor master, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step);
}

/// <summary>Switches shared by the backends.</summary>
public static class BackendOptions
{
    /// <summary>Test switch: <see cref="IBackend.AllocUninitialized"/> fills tensors with a poison value (NaN; int.MinValue for integer dtypes) instead of leaving them as they come.</summary>
    public static bool PoisonUninitialized { get; set; }
}
