using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ElderCuda.Backends.Cpu;

/// <summary>
/// SIMD loops for the CPU backend's two hot spots (matmul and attention). TensorPrimitives has per-call overhead
/// that dominates on 32–192-element rows; these inline Vector256 loops avoid it.
/// </summary>
internal static class CpuKernels
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float Dot(float* a, float* b, int n)
    {
        int k = 0;
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero;
        for (; k + 16 <= n; k += 16)
        {
            acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(b + k), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 8), Vector256.Load(b + k + 8), acc1);
        }
        for (; k + 8 <= n; k += 8) acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(b + k), acc0);
        float s = Vector256.Sum(acc0 + acc1);
        for (; k < n; k++) s += a[k] * b[k];
        return s;
    }

    /// <summary>y += alpha·x</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Axpy(float* y, float alpha, float* x, int n)
    {
        int k = 0;
        var va = Vector256.Create(alpha);
        for (; k + 8 <= n; k += 8) Vector256.Store(Vector256.FusedMultiplyAdd(Vector256.Load(x + k), va, Vector256.Load(y + k)), y + k);
        for (; k < n; k++) y[k] += alpha * x[k];
    }

    /// <summary>
    /// C[n, m] = Σ_k A[n, k]·B[m, k] (+ bias[m]), or C += that when <paramref name="accumulate"/>: both operands
    /// row-major with k contiguous, so every output is the dot product of two contiguous rows (x·Wᵀ of a linear
    /// layer). C has row stride M. Each float32 output is summed in 8 lanes and then across lanes.
    ///
    /// Work is cut into tiles of 4 rows of A × a slab of B rows that fits in L2 (~256 KB), one tile per task, numbered
    /// so that a thread's consecutive tiles share their slab of B while rows of A stream past it; inside a tile,
    /// 4 × 4 outputs at a time: 8 row loads feed 16 independent FMA chains, where one dot at a time does 2
    /// loads per FMA. Edges (N or M not a multiple of 4) fall back to single dots.
    /// </summary>
    public static unsafe void Gemm(float* a, float* b, float* c, int N, int M, int K, float* bias, bool accumulate)
    {
        int slab = Math.Clamp(256 * 1024 / (4 * Math.Max(K, 1)) / 4 * 4, 4, 64);
        int rowBlocks = (N + 3) / 4, colBlocks = (M + slab - 1) / slab;
        nint ap = (nint)a, bp = (nint)b, cp = (nint)c, biasp = (nint)bias;
        Parallel.For(0, rowBlocks * colBlocks, blk =>
        {
            int n0 = blk % rowBlocks * 4, j0 = blk / rowBlocks * slab;
            float* bias_ = (float*)biasp;
            GemmTile((float*)ap + (long)n0 * K, K, (float*)bp + (long)j0 * K, K, (float*)cp + (long)n0 * M + j0, M,
                Math.Min(4, N - n0), Math.Min(slab, M - j0), K, bias_ is null ? null : bias_ + j0, accumulate);
        });
    }

    /// <summary>
    /// The serial core of <see cref="Gemm"/>, on strided rows: C[n, m] (+)= Σ_k A[n, k]·B[m, k] (+ bias[m]), where row
    /// n of A starts at a + n·lda, row m of B at b + m·ldb and row n of C at c + n·ldc. Attention calls it from
    /// inside its own parallel loop.
    /// </summary>
    public static unsafe void GemmTile(float* a, int lda, float* b, int ldb, float* c, int ldc, int N, int M, int K, float* bias, bool accumulate)
    {
        var s = stackalloc float[16];
        int n = 0;
        for (; n + 4 <= N; n += 4)
        {
            int j = 0;
            for (; j + 4 <= M; j += 4)
            {
                Dot4x4(a + (long)n * lda, lda, b + (long)j * ldb, ldb, K, s);
                for (int r = 0; r < 4; r++)
                    for (int q = 0; q < 4; q++)
                        Store(c + (long)(n + r) * ldc + j + q, s[r * 4 + q] + (bias is null ? 0f : bias[j + q]), accumulate);
            }
            for (int r = n; r < n + 4; r++)
                for (int jj = j; jj < M; jj++)
                    Store(c + (long)r * ldc + jj, Dot(a + (long)r * lda, b + (long)jj * ldb, K) + (bias is null ? 0f : bias[jj]), accumulate);
        }
        for (; n < N; n++)
            for (int j = 0; j < M; j++)
                Store(c + (long)n * ldc + j, Dot(a + (long)n * lda, b + (long)j * ldb, K) + (bias is null ? 0f : bias[j]), accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Store(float* dst, float v, bool accumulate) => *dst = accumulate ? *dst + v : v;

    /// <summary>s[r·4 + q] = a_r · b_q for the 4 rows a_r = a + r·lda and the 4 rows b_q = b + q·ldb, each of length K.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Dot4x4(float* a, int lda, float* b, int ldb, int K, float* s)
    {
        float* a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda, b1 = b + ldb, b2 = b1 + ldb, b3 = b2 + ldb;
        Vector256<float> c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default,
                         c20 = default, c21 = default, c22 = default, c23 = default, c30 = default, c31 = default, c32 = default, c33 = default;
        int k = 0;
        for (; k + 8 <= K; k += 8)
        {
            var w0 = Vector256.Load(b + k); var w1 = Vector256.Load(b1 + k); var w2 = Vector256.Load(b2 + k); var w3 = Vector256.Load(b3 + k);
            var x = Vector256.Load(a + k);
            c00 = Vector256.FusedMultiplyAdd(x, w0, c00); c01 = Vector256.FusedMultiplyAdd(x, w1, c01);
            c02 = Vector256.FusedMultiplyAdd(x, w2, c02); c03 = Vector256.FusedMultiplyAdd(x, w3, c03);
            x = Vector256.Load(a1 + k);
            c10 = Vector256.FusedMultiplyAdd(x, w0, c10); c11 = Vector256.FusedMultiplyAdd(x, w1, c11);
            c12 = Vector256.FusedMultiplyAdd(x, w2, c12); c13 = Vector256.FusedMultiplyAdd(x, w3, c13);
            x = Vector256.Load(a2 + k);
            c20 = Vector256.FusedMultiplyAdd(x, w0, c20); c21 = Vector256.FusedMultiplyAdd(x, w1, c21);
            c22 = Vector256.FusedMultiplyAdd(x, w2, c22); c23 = Vector256.FusedMultiplyAdd(x, w3, c23);
            x = Vector256.Load(a3 + k);
            c30 = Vector256.FusedMultiplyAdd(x, w0, c30); c31 = Vector256.FusedMultiplyAdd(x, w1, c31);
            c32 = Vector256.FusedMultiplyAdd(x, w2, c32); c33 = Vector256.FusedMultiplyAdd(x, w3, c33);
        }
        s[0] = Vector256.Sum(c00); s[1] = Vector256.Sum(c01); s[2] = Vector256.Sum(c02); s[3] = Vector256.Sum(c03);
        s[4] = Vector256.Sum(c10); s[5] = Vector256.Sum(c11); s[6] = Vector256.Sum(c12); s[7] = Vector256.Sum(c13);
        s[8] = Vector256.Sum(c20); s[9] = Vector256.Sum(c21); s[10] = Vector256.Sum(c22); s[11] = Vector256.Sum(c23);
        s[12] = Vector256.Sum(c30); s[13] = Vector256.Sum(c31); s[14] = Vector256.Sum(c32); s[15] = Vector256.Sum(c33);
        for (; k < K; k++)
        {
            float x0 = a[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];
            for (int q = 0; q < 4; q++)
            {
                float w = b[q * ldb + k];
                s[q] += x0 * w; s[4 + q] += x1 * w; s[8 + q] += x2 * w; s[12 + q] += x3 * w;
            }
        }
    }

    /// <summary>dst[c·ldd + r] = src[r·lds + c] for r &lt; rows, c &lt; cols, serially, in 32 × 32 blocks (8 × 8 in registers where AVX is there).</summary>
    public static unsafe void TransposeTile(float* src, int lds, int rows, int cols, float* dst, int ldd)
    {
        for (int r0 = 0; r0 < rows; r0 += 32)
            for (int c0 = 0; c0 < cols; c0 += 32)
            {
                int r1 = Math.Min(rows, r0 + 32), c1 = Math.Min(cols, c0 + 32);
                int r8 = Avx.IsSupported ? r0 + (r1 - r0) / 8 * 8 : r0, c8 = Avx.IsSupported ? c0 + (c1 - c0) / 8 * 8 : c0;
                for (int r = r0; r < r8; r += 8)
                    for (int cc = c0; cc < c8; cc += 8)
                        Transpose8x8(src + (long)r * lds + cc, lds, dst + (long)cc * ldd + r, ldd);
                for (int r = r0; r < r1; r++)                 // the edges: columns past c8, then rows past r8
                    for (int cc = r < r8 ? c8 : c0; cc < c1; cc++)
                        dst[(long)cc * ldd + r] = src[(long)r * lds + cc];
            }
    }

    /// <summary>One 8 × 8 block: unpack pairs, shuffle quads, swap 128-bit halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Transpose8x8(float* s, int lds, float* d, int ldd)
    {
        var r0 = Avx.LoadVector256(s); var r1 = Avx.LoadVector256(s + lds); var r2 = Avx.LoadVector256(s + 2 * lds); var r3 = Avx.LoadVector256(s + 3 * lds);
        var r4 = Avx.LoadVector256(s + 4 * lds); var r5 = Avx.LoadVector256(s + 5 * lds); var r6 = Avx.LoadVector256(s + 6 * lds); var r7 = Avx.LoadVector256(s + 7 * lds);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1); var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5); var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE); var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE); var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20)); Avx.Store(d + ldd, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(d + 2 * ldd, Avx.Permute2x128(u2, u6, 0x20)); Avx.Store(d + 3 * ldd, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(d + 4 * ldd, Avx.Permute2x128(u0, u4, 0x31)); Avx.Store(d + 5 * ldd, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(d + 6 * ldd, Avx.Permute2x128(u2, u6, 0x31)); Avx.Store(d + 7 * ldd, Avx.Permute2x128(u3, u7, 0x31));
    }

    /// <summary>dst[c, r] = src[r, c] for a rows × cols row-major src, parallel over bands of 32 rows.</summary>
    public static unsafe void Transpose(float* src, int rows, int cols, float* dst)
    {
        nint sp = (nint)src, dp = (nint)dst;
        Parallel.For(0, (rows + 31) / 32, rb =>
        {
            int r0 = rb * 32;
            TransposeTile((float*)sp + (long)r0 * cols, cols, Math.Min(32, rows - r0), cols, (float*)dp + r0, rows);
        });
    }
}
