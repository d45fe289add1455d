using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ElderCuda.Backends.Cpu;

/// <summary>
/// Small SIMD helpers for the CPU backend's two hot loops (matmul and attention). TensorPrimitives has
/// per-call overhead that dominates on 32–192-element rows; these inline Vector256 loops avoid it.
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
    /// out[r, j] for 4 rows of x at once against one row of W: W is read once per 4 rows, and the four
    /// accumulators are independent FMA chains.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Dot4(float* x0, float* x1, float* x2, float* x3, float* w, int n, out float s0, out float s1, out float s2, out float s3)
    {
        var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero; var a2 = Vector256<float>.Zero; var a3 = Vector256<float>.Zero;
        int k = 0;
        for (; k + 8 <= n; k += 8)
        {
            var wv = Vector256.Load(w + k);
            a0 = Vector256.FusedMultiplyAdd(Vector256.Load(x0 + k), wv, a0);
            a1 = Vector256.FusedMultiplyAdd(Vector256.Load(x1 + k), wv, a1);
            a2 = Vector256.FusedMultiplyAdd(Vector256.Load(x2 + k), wv, a2);
            a3 = Vector256.FusedMultiplyAdd(Vector256.Load(x3 + k), wv, a3);
        }
        s0 = Vector256.Sum(a0); s1 = Vector256.Sum(a1); s2 = Vector256.Sum(a2); s3 = Vector256.Sum(a3);
        for (; k < n; k++) { float wk = w[k]; s0 += x0[k] * wk; s1 += x1[k] * wk; s2 += x2[k] * wk; s3 += x3[k] * wk; }
    }
}
