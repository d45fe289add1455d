using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cpu;

public sealed partial class CpuBackend
{
    // Causal attention as matrix products over one (batch, head) at a time, with the T × T scores held per task
    // (this is the host reference; the CUDA kernels are the fused, flash-style ones). Query rows go in blocks of
    // QBlock, and a block's products stop at its last key, so the work above the diagonal is at most one block wide.
    const int QBlock = 64;

    /// <summary>row = softmax(row) in place; returns its logsumexp.</summary>
    static float SoftmaxInPlace(Span<float> row)
    {
        float max = TensorPrimitives.Max(row);
        TensorPrimitives.Subtract(row, max, row);
        TensorPrimitives.Exp(row, row);
        float sum = TensorPrimitives.Sum(row);
        TensorPrimitives.Multiply(row, 1f / sum, row);
        return max + MathF.Log(sum);
    }

    public unsafe void Attention(Tensor output, Tensor lse, Tensor q, Tensor k, Tensor v, int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        var o = F(output); var L = F(lse); var qs = F(q); var ks = F(k); var vs = F(v);
        int Wq = nHeads * headDim, Wk = nKvHeads * headDim, group = nHeads / nKvHeads;
        var pool = System.Buffers.ArrayPool<float>.Shared;
        Parallel.For(0, B * nHeads, bh =>
        {
            int b = bh / nHeads, h = bh % nHeads, kh = h / group;
            var P = pool.Rent(QBlock * T); var Vt = pool.Rent(headDim * T);
            fixed (float* qp = qs, kp = ks, vp = vs, op = o, Pp = P, Vtp = Vt)
            {
                float* qb = qp + (long)b * T * Wq + h * headDim, kb = kp + (long)b * T * Wk + kh * headDim;
                float* vb = vp + (long)b * T * Wk + kh * headDim, ob = op + (long)b * T * Wq + h * headDim;
                CpuKernels.TransposeTile(vb, Wk, T, headDim, Vtp, T);                                      // Vᵀ [headDim, T]
                for (int t0 = 0; t0 < T; t0 += QBlock)
                {
                    int nq = Math.Min(QBlock, T - t0), nk = t0 + nq;                                        // keys 0 .. nk-1
                    CpuKernels.GemmTile(qb + (long)t0 * Wq, Wq, kb, Wk, Pp, nk, nq, nk, headDim, null, false); // S = Q·Kᵀ
                    for (int r = 0; r < nq; r++)
                    {
                        int t = t0 + r;
                        var row = new Span<float>(Pp + (long)r * nk, nk);
                        var live = row[..(t + 1)];
                        TensorPrimitives.Multiply(live, scale, live);
                        L[(b * nHeads + h) * T + t] = SoftmaxInPlace(live);
                        row[(t + 1)..].Clear();
                    }
                    CpuKernels.GemmTile(Pp, nk, Vtp, T, ob + (long)t0 * Wq, Wq, nq, headDim, nk, null, false); // O = P·V
                }
            }
            pool.Return(P); pool.Return(Vt);
        });
    }

    // Backward of the above, one (batch, kv-head) group per task, so that GQA's shared dK/dV rows are written by
    // one thread. Per head: P = exp(scale·Q·Kᵀ − lse) (causal), dP = dO·Vᵀ, dS = P∘(dP − rowsum(dO∘O))·scale, and
    // dQ = dS·K, dK += dSᵀ·Q, dV += Pᵀ·dO. Each product runs on contiguous rows, so Pᵀ, dSᵀ, Kᵀ, Qᵀ and dOᵀ are
    // transposed first; the products of Pᵀ and dSᵀ start at their key block's first query, where the causal
    // zeros end.
    public unsafe void AttentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse,
        int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        var dqs = F(dq); var dks = F(dk); var dvs = F(dv); var g = F(dOut); var qs = F(q); var ks = F(k); var vs = F(v); var o = F(output); var L = F(lse);
        int Wq = nHeads * headDim, Wk = nKvHeads * headDim, group = nHeads / nKvHeads;
        Array.Clear(dqs); Array.Clear(dks); Array.Clear(dvs);
        var pool = System.Buffers.ArrayPool<float>.Shared;
        long TT = (long)T * T;
        Parallel.For(0, B * nKvHeads, bk =>
        {
            int b = bk / nKvHeads, kh = bk % nKvHeads;
            var P = pool.Rent(checked((int)TT)); var dS = pool.Rent(checked((int)TT)); var Xt = pool.Rent(checked((int)TT));
            var Kt = pool.Rent(headDim * T); var Qt = pool.Rent(headDim * T); var Gt = pool.Rent(headDim * T);
            fixed (float* qp = qs, kp = ks, vp = vs, op = o, gp = g, dqp = dqs, dkp = dks, dvp = dvs, Pp = P, dSp = dS, Xtp = Xt,
                   Ktp = Kt, Qtp = Qt, Gtp = Gt)
            {
                float* kb = kp + (long)b * T * Wk + kh * headDim, vb = vp + (long)b * T * Wk + kh * headDim;
                float* dkb = dkp + (long)b * T * Wk + kh * headDim, dvb = dvp + (long)b * T * Wk + kh * headDim;
                CpuKernels.TransposeTile(kb, Wk, T, headDim, Ktp, T);                                        // Kᵀ [headDim, T]
                for (int h = kh * group; h < (kh + 1) * group; h++)
                {
                    long ho = (long)b * T * Wq + h * headDim;
                    float* qb = qp + ho, gb = gp + ho, ob = op + ho, dqb = dqp + ho;
                    int lo = (b * nHeads + h) * T;
                    for (int t0 = 0; t0 < T; t0 += QBlock)
                    {
                        int nq = Math.Min(QBlock, T - t0), nk = t0 + nq;
                        float* Pb = Pp + (long)t0 * T, dSb = dSp + (long)t0 * T;
                        CpuKernels.GemmTile(qb + (long)t0 * Wq, Wq, kb, Wk, Pb, T, nq, nk, headDim, null, false);  // S
                        CpuKernels.GemmTile(gb + (long)t0 * Wq, Wq, vb, Wk, dSb, T, nq, nk, headDim, null, false); // dP = dO·Vᵀ
                        for (int r = 0; r < nq; r++)
                        {
                            int t = t0 + r;
                            var pr = new Span<float>(Pb + (long)r * T, T); var sr = new Span<float>(dSb + (long)r * T, T);
                            var pl = pr[..(t + 1)]; var sl = sr[..(t + 1)];
                            TensorPrimitives.Multiply(pl, scale, pl);
                            TensorPrimitives.Subtract(pl, L[lo + t], pl);
                            TensorPrimitives.Exp(pl, pl);                                                       // P
                            float Dt = TensorPrimitives.Dot(new ReadOnlySpan<float>(gb + (long)t * Wq, headDim), new ReadOnlySpan<float>(ob + (long)t * Wq, headDim));
                            TensorPrimitives.Subtract(sl, Dt, sl);
                            TensorPrimitives.Multiply(sl, pl, sl);
                            TensorPrimitives.Multiply(sl, scale, sl);                                           // dS
                            pr[(t + 1)..].Clear(); sr[(t + 1)..].Clear();
                        }
                        CpuKernels.GemmTile(dSb, T, Ktp, T, dqb + (long)t0 * Wq, Wq, nq, headDim, nk, null, false); // dQ = dS·K
                    }
                    CpuKernels.TransposeTile(qb, Wq, T, headDim, Qtp, T);                                    // Qᵀ
                    CpuKernels.TransposeTile(gb, Wq, T, headDim, Gtp, T);                                    // dOᵀ
                    CpuKernels.TransposeTile(Pp, T, T, T, Xtp, T);                                           // Pᵀ
                    for (int j0 = 0; j0 < T; j0 += QBlock)                                                   // dV += Pᵀ·dO
                    {
                        int nj = Math.Min(QBlock, T - j0);
                        CpuKernels.GemmTile(Xtp + (long)j0 * T + j0, T, Gtp + j0, T, dvb + (long)j0 * Wk, Wk, nj, headDim, T - j0, null, true);
                    }
                    CpuKernels.TransposeTile(dSp, T, T, T, Xtp, T);                                          // dSᵀ
                    for (int j0 = 0; j0 < T; j0 += QBlock)                                                   // dK += dSᵀ·Q
                    {
                        int nj = Math.Min(QBlock, T - j0);
                        CpuKernels.GemmTile(Xtp + (long)j0 * T + j0, T, Qtp + j0, T, dkb + (long)j0 * Wk, Wk, nj, headDim, T - j0, null, true);
                    }
                }
            }
            pool.Return(P); pool.Return(dS); pool.Return(Xt); pool.Return(Kt); pool.Return(Qt); pool.Return(Gt);
        });
    }

    // Decoding with a KV cache: append the new rows, then one query row at a time against its sequence's cache
    // (T is 1 when decoding, so there is nothing to block).
    public unsafe void AttentionCached(Tensor output, Tensor q, Tensor k, Tensor v, Tensor kCache, Tensor vCache, int B, int past, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        int Wq = nHeads * headDim, Wk = nKvHeads * headDim, group = nHeads / nKvHeads;
        if (q.Count != (long)B * T * Wq || k.Count != (long)B * T * Wk || v.Count != k.Count || output.Count != q.Count)
            throw new ArgumentException($"attention (cached): q {q}, k {k}, v {v}, out {output} are not [{B}·{T}, {nHeads}·{headDim}] / [{B}·{T}, {nKvHeads}·{headDim}]");
        int cap = KvCacheLayout.Capacity(kCache, vCache, B, past, T, Wk);
        var o = F(output); var qs = F(q); var kc = F(kCache); var vc = F(vCache); var ks = F(k); var vs = F(v);
        for (int b = 0; b < B; b++)
        {
            Array.Copy(ks, (long)b * T * Wk, kc, ((long)b * cap + past) * Wk, (long)T * Wk);
            Array.Copy(vs, (long)b * T * Wk, vc, ((long)b * cap + past) * Wk, (long)T * Wk);
        }
        Parallel.For(0, B * T * nHeads, bth =>
        {
            int h = bth % nHeads, n = bth / nHeads, b = n / T, t = n % T, kh = h / group, L = past + t + 1;
            var p = new float[L];
            fixed (float* qp = qs, kp = kc, vp = vc, op = o)
            {
                float* qr = qp + (long)n * Wq + h * headDim, orow = op + (long)n * Wq + h * headDim;
                float* kb = kp + (long)b * cap * Wk + kh * headDim, vb = vp + (long)b * cap * Wk + kh * headDim;
                for (int j = 0; j < L; j++) p[j] = scale * CpuKernels.Dot(qr, kb + (long)j * Wk, headDim);
                SoftmaxInPlace(p);
                new Span<float>(orow, headDim).Clear();
                for (int j = 0; j < L; j++) CpuKernels.Axpy(orow, p[j], vb + (long)j * Wk, headDim);
            }
        });
    }
}
