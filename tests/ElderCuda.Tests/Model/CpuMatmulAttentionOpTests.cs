using CsCheck;
using ElderCuda.Backends.Cpu;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Model;

/// <summary>
/// The CPU backend's blocked matrix products (CpuKernels.Gemm, shared by Matmul, MatmulBackward and attention)
/// against float64 sums written out term by term, on shapes that hit every edge of the blocking: rows and columns
/// not a multiple of 4, inner lengths not a multiple of 8, and sequences that cross the attention's 64-row query
/// blocks.
/// </summary>
public class CpuMatmulAttentionOpTests
{
    static float[] Rand(Random r, int n) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = r.NextSingle() * 2 - 1; return a; }
    static float[] Host(CpuBackend be, Tensor t) { var a = new float[t.Count]; be.ToHost(t, a); return a; }

    static void Close(double[] want, float[] got, double tol, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
            Assert.True(Math.Abs(got[i] - want[i]) <= tol * (1 + Math.Abs(want[i])), $"{what}[{i}] = {got[i]}, float64 {want[i]}");
    }

    [Fact]
    public void MatmulForwardAndBackwardMatchFloat64Sums()
    {
        Gen.Select(Gen.Int[1, 19], Gen.Int[1, 41], Gen.Int[1, 23], Gen.Bool, Gen.Bool, Gen.Int)
           .Sample((N, In, Out, withBias, accumulate, seed) => CheckMatmul(N, In, Out, withBias, accumulate, seed), iter: 60);
        CheckMatmul(70, 300, 130, true, false, 1);   // several column slabs and row blocks, with a tail in each
        CheckMatmul(33, 4100, 9, false, true, 2);    // a long inner length: narrow slabs
    }

    static void CheckMatmul(int N, int In, int Out, bool withBias, bool accumulate, int seed)
    {
        var r = new Random(seed);
        var be = new CpuBackend();
        float[] x = Rand(r, N * In), w = Rand(r, Out * In), bias = Rand(r, Out), o0 = Rand(r, N * Out), g = Rand(r, N * Out);
        float[] dx0 = Rand(r, N * In), dw0 = Rand(r, Out * In), db0 = Rand(r, Out);
        Tensor tx = be.FromHost(x, DType.F32, N, In), tw = be.FromHost(w, DType.F32, Out, In), tb = be.FromHost(bias, DType.F32, Out);
        Tensor to = be.FromHost(o0, DType.F32, N, Out), tg = be.FromHost(g, DType.F32, N, Out);
        Tensor tdx = be.FromHost(dx0, DType.F32, N, In), tdw = be.FromHost(dw0, DType.F32, Out, In), tdb = be.FromHost(db0, DType.F32, Out);
        be.Matmul(to, tx, tw, withBias ? tb : null, accumulate);
        be.MatmulBackward(tdx, tdw, tdb, tg, tx, tw, accumulateDx: accumulate);

        var o = new double[N * Out]; var dx = new double[N * In]; var dw = new double[Out * In]; var db = new double[Out];
        for (int n = 0; n < N; n++)
            for (int j = 0; j < Out; j++)
            {
                double s = withBias ? bias[j] : 0;
                for (int k = 0; k < In; k++) s += (double)x[n * In + k] * w[j * In + k];
                o[n * Out + j] = (accumulate ? o0[n * Out + j] : 0) + s;
            }
        for (int n = 0; n < N; n++)
            for (int k = 0; k < In; k++)
            {
                double s = accumulate ? dx0[n * In + k] : 0;
                for (int j = 0; j < Out; j++) s += (double)g[n * Out + j] * w[j * In + k];
                dx[n * In + k] = s;
            }
        for (int j = 0; j < Out; j++)
        {
            double sb = db0[j];
            for (int n = 0; n < N; n++) sb += g[n * Out + j];
            db[j] = sb;
            for (int k = 0; k < In; k++)
            {
                double s = dw0[j * In + k];                          // dW always accumulates
                for (int n = 0; n < N; n++) s += (double)g[n * Out + j] * x[n * In + k];
                dw[j * In + k] = s;
            }
        }
        string shape = $"N {N}, In {In}, Out {Out}, bias {withBias}, accumulate {accumulate}";
        double tol = 2e-6 * Math.Sqrt(Math.Max(In, Math.Max(Out, N)));
        Close(o, Host(be, to), tol, $"out ({shape})");
        Close(dx, Host(be, tdx), tol, $"dx ({shape})");
        Close(dw, Host(be, tdw), tol, $"dW ({shape})");
        Close(db, Host(be, tdb), tol, $"db ({shape})");
    }

    /// <summary>Causal grouped-query attention in float64, straight from its definition: O, logsumexp.</summary>
    static (double[] O, double[] Lse) Reference(float[] q, float[] k, float[] v, int B, int T, int H, int KV, int hd, double scale)
    {
        int Wq = H * hd, Wk = KV * hd, group = H / KV;
        var O = new double[B * T * Wq]; var L = new double[B * H * T];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int t = 0; t < T; t++)
                {
                    int kh = h / group; var s = new double[t + 1];
                    for (int j = 0; j <= t; j++)
                    {
                        double d = 0;
                        for (int c = 0; c < hd; c++) d += (double)q[(b * T + t) * Wq + h * hd + c] * k[(b * T + j) * Wk + kh * hd + c];
                        s[j] = scale * d;
                    }
                    double m = s.Max(), z = s.Sum(x => Math.Exp(x - m));
                    L[(b * H + h) * T + t] = m + Math.Log(z);
                    for (int j = 0; j <= t; j++)
                        for (int c = 0; c < hd; c++)
                            O[(b * T + t) * Wq + h * hd + c] += Math.Exp(s[j] - m) / z * v[(b * T + j) * Wk + kh * hd + c];
                }
        return (O, L);
    }

    [Theory]
    [InlineData(1, 67, 2, 1, 4)]     // just past one query block; head size under one SIMD vector
    [InlineData(2, 130, 4, 2, 16)]   // GQA, three query blocks, the last one partial
    [InlineData(1, 64, 3, 3, 8)]     // exactly one block, multi-head without grouping
    public void AttentionForwardMatchesFloat64Definition(int B, int T, int H, int KV, int hd)
    {
        var r = new Random(T * 31 + hd);
        var be = new CpuBackend();
        float[] q = Rand(r, B * T * H * hd), k = Rand(r, B * T * KV * hd), v = Rand(r, B * T * KV * hd);
        float scale = 1f / MathF.Sqrt(hd);
        var tq = be.FromHost(q, DType.F32, B * T, H * hd); var tk = be.FromHost(k, DType.F32, B * T, KV * hd); var tv = be.FromHost(v, DType.F32, B * T, KV * hd);
        var to = be.Alloc(DType.F32, B * T, H * hd); var tl = be.Alloc(DType.F32, B * H * T);
        be.Attention(to, tl, tq, tk, tv, B, T, H, KV, hd, scale);
        var (O, L) = Reference(q, k, v, B, T, H, KV, hd, scale);
        Close(O, Host(be, to), 1e-5, "O");
        Close(L, Host(be, tl), 1e-5, "lse");
    }

    /// <summary>
    /// Gradients of ℓ = Σ O∘R (R random) against float64 central differences of the float64 definition above, for
    /// every element of Q, K and V.
    /// </summary>
    [Theory]
    [InlineData(1, 67, 2, 1, 4)]
    [InlineData(1, 70, 2, 2, 8)]
    public void AttentionBackwardMatchesFiniteDifferences(int B, int T, int H, int KV, int hd)
    {
        var r = new Random(T * 7 + H);
        var be = new CpuBackend();
        float[] q = Rand(r, B * T * H * hd), k = Rand(r, B * T * KV * hd), v = Rand(r, B * T * KV * hd), R = Rand(r, B * T * H * hd);
        float scale = 1f / MathF.Sqrt(hd);
        var tq = be.FromHost(q, DType.F32, B * T, H * hd); var tk = be.FromHost(k, DType.F32, B * T, KV * hd); var tv = be.FromHost(v, DType.F32, B * T, KV * hd);
        var to = be.Alloc(DType.F32, B * T, H * hd); var tl = be.Alloc(DType.F32, B * H * T);
        be.Attention(to, tl, tq, tk, tv, B, T, H, KV, hd, scale);
        var tg = be.FromHost(R, DType.F32, B * T, H * hd);
        var dq = be.Alloc(DType.F32, B * T, H * hd); var dk = be.Alloc(DType.F32, B * T, KV * hd); var dv = be.Alloc(DType.F32, B * T, KV * hd);
        be.AttentionBackward(dq, dk, dv, tg, tq, tk, tv, to, tl, B, T, H, KV, hd, scale);

        double Loss(float[] qq, float[] kk, float[] vv) { var (O, _) = Reference(qq, kk, vv, B, T, H, KV, hd, scale); double s = 0; for (int i = 0; i < O.Length; i++) s += O[i] * R[i]; return s; }
        FiniteDifference.Check(q, Host(be, dq), "dQ", () => Loss(q, k, v));
        FiniteDifference.Check(k, Host(be, dk), "dK", () => Loss(q, k, v));
        FiniteDifference.Check(v, Host(be, dv), "dV", () => Loss(q, k, v));
    }

    /// <summary>
    /// Decoding with a KV cache: B sequences go in as chunks (a prompt, single tokens, a few more); each chunk's
    /// output rows must equal those rows of the float64 definition over the whole sequences, and the cache must
    /// hold every k and v row in its sequence's block.
    /// </summary>
    [Theory]
    [InlineData(1, 2, 1, 8)]
    [InlineData(2, 4, 2, 16)]
    [InlineData(3, 3, 3, 5)]
    public void CachedAttentionMatchesFloat64DefinitionChunkByChunk(int B, int H, int KV, int hd)
    {
        var r = new Random(H * 100 + hd);
        var be = new CpuBackend();
        int[] chunks = [9, 1, 1, 4, 1, 70];
        int T = chunks.Sum(), Wq = H * hd, Wk = KV * hd, cap = T + 3;
        float[] q = Rand(r, B * T * Wq), k = Rand(r, B * T * Wk), v = Rand(r, B * T * Wk);
        float scale = 1f / MathF.Sqrt(hd);
        var (O, _) = Reference(q, k, v, B, T, H, KV, hd, scale);
        var kc = be.Alloc(DType.F32, B * cap, Wk); var vc = be.Alloc(DType.F32, B * cap, Wk);
        int past = 0;
        // rows [b, past .. past+n) of a [B·T, W] array, as one [B·n, W] block
        float[] Rows(float[] a, int W, int n) { var o = new float[B * n * W]; for (int b = 0; b < B; b++) a.AsSpan((b * T + past) * W, n * W).CopyTo(o.AsSpan(b * n * W)); return o; }
        foreach (var n in chunks)
        {
            var tq = be.FromHost(Rows(q, Wq, n), DType.F32, B * n, Wq);
            var tk = be.FromHost(Rows(k, Wk, n), DType.F32, B * n, Wk);
            var tv = be.FromHost(Rows(v, Wk, n), DType.F32, B * n, Wk);
            var to = be.Alloc(DType.F32, B * n, Wq);
            be.AttentionCached(to, tq, tk, tv, kc, vc, B, past, n, H, KV, hd, scale);
            var want = new double[B * n * Wq];
            for (int b = 0; b < B; b++) O.AsSpan((b * T + past) * Wq, n * Wq).CopyTo(want.AsSpan(b * n * Wq));
            Close(want, Host(be, to), 1e-5, $"O rows {past}..{past + n - 1}");
            past += n;
        }
        var hk = Host(be, kc); var hv = Host(be, vc);
        for (int b = 0; b < B; b++)
        {
            Assert.Equal(k.AsSpan(b * T * Wk, T * Wk).ToArray(), hk.AsSpan(b * cap * Wk, T * Wk).ToArray());
            Assert.Equal(v.AsSpan(b * T * Wk, T * Wk).ToArray(), hv.AsSpan(b * cap * Wk, T * Wk).ToArray());
        }
        var one = be.Alloc(DType.F32, B, Wq);
        Assert.Throws<ArgumentException>(() => be.AttentionCached(one, be.Alloc(DType.F32, B, Wq), be.Alloc(DType.F32, B, Wk), be.Alloc(DType.F32, B, Wk), kc, vc, B, cap, 1, H, KV, hd, scale));
    }
}
