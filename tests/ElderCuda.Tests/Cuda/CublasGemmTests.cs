using ElderCuda.Backends.Cuda;
using ElderCuda.Backends.Cuda.Interop;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Cuda;

/// <summary>
/// Our cuBLAS and cuBLASLt bindings, called directly: cublasGemmEx, cublasGemmStridedBatchedEx and cublasLtMatmul
/// (strided-batched, and with the BIAS epilogue) with operands in fp32, bf16 and fp16 and fp32 compute, both
/// transposition flags, odd sizes, leading dimensions larger than the rows, and alpha ≠ 1. The reference is the
/// float64 product of the same operands (rounded to their dtype here), so the error is the library's accumulation
/// plus the rounding of the output: bounds 1e-5 for an fp32 output, 1e-2 (DESIGN.md §7's bf16 forward) for a
/// bf16 or fp16 one. Outputs start as NaN, so an element not written fails.
/// </summary>
[Collection("cuda")]
public class CublasGemmTests
{
    public static TheoryData<DType, DType> TypePairs => new()
    {
        { DType.F32, DType.F32 }, { DType.BF16, DType.BF16 }, { DType.BF16, DType.F32 }, { DType.F16, DType.F16 }, { DType.F16, DType.F32 },
    };

    static int CudaType(DType d) => d switch { DType.F32 => Cublas.CUDA_R_32F, DType.BF16 => Cublas.CUDA_R_16BF, _ => Cublas.CUDA_R_16F };

    static float Round(float v, DType d) => d switch
    {
        DType.BF16 => DTypes.Bf16ToFloat(DTypes.FloatToBf16(v)),
        DType.F16 => (float)(Half)v,
        _ => v,
    };

    /// <summary>One column-major problem: op(A) m×k, op(B) k×n, D m×n, <paramref name="batch"/> of each, strided.</summary>
    sealed class Problem
    {
        public readonly int Ta, Tb, M, N, K, Batch, Lda, Ldb, Ldd;
        public readonly long Sa, Sb, Sd;
        public readonly float[] A, B, Bias;
        public readonly DType In, Out;

        public Problem(Random rng, DType input, DType output, int ta, int tb, int m, int n, int k, int batch)
        {
            (Ta, Tb, M, N, K, Batch, In, Out) = (ta, tb, m, n, k, batch, input, output);
            int ar = ta == Cublas.OP_N ? m : k, ac = ta == Cublas.OP_N ? k : m;
            int br = tb == Cublas.OP_N ? k : n, bc = tb == Cublas.OP_N ? n : k;
            (Lda, Ldb, Ldd) = (ar + 3, br + 1, m + 2);                             // padded leading dimensions
            (Sa, Sb, Sd) = ((long)Lda * ac + 5, (long)Ldb * bc + 7, (long)Ldd * n + 1);   // and gaps between the batch's matrices
            A = Fill(rng, Sa * batch, input); B = Fill(rng, Sb * batch, input); Bias = Fill(rng, m, output);
        }

        static float[] Fill(Random rng, long n, DType d)
        {
            var a = new float[n];
            for (long i = 0; i < n; i++) a[i] = Round((float)(rng.NextDouble() * 2 - 1), d);
            return a;
        }

        /// <summary>D[b] = alpha·op(A[b])·op(B[b]) (+ bias), in float64, column-major with D's leading dimension.</summary>
        public double[] Reference(float alpha, bool bias)
        {
            var d = new double[Sd * Batch];
            for (int b = 0; b < Batch; b++)
                for (int j = 0; j < N; j++)
                    for (int i = 0; i < M; i++)
                    {
                        double s = 0;
                        for (int l = 0; l < K; l++)
                        {
                            double a = Ta == Cublas.OP_N ? A[b * Sa + i + (long)l * Lda] : A[b * Sa + l + (long)i * Lda];
                            double bb = Tb == Cublas.OP_N ? B[b * Sb + l + (long)j * Ldb] : B[b * Sb + j + (long)l * Ldb];
                            s += a * bb;
                        }
                        d[b * Sd + i + (long)j * Ldd] = alpha * s + (bias ? Bias[i] : 0);
                    }
            return d;
        }

        /// <summary>Relative error over D's elements (the padding is not part of D), and whether every one is finite.</summary>
        public double Error(float[] got, double[] want)
        {
            double num = 0, den = 0;
            for (int b = 0; b < Batch; b++)
                for (int j = 0; j < N; j++)
                    for (int i = 0; i < M; i++)
                    {
                        long x = b * Sd + i + (long)j * Ldd;
                        if (!float.IsFinite(got[x])) return double.PositiveInfinity;
                        num += (got[x] - want[x]) * (got[x] - want[x]); den += want[x] * want[x];
                    }
            return Math.Sqrt(num / den);
        }

        public double Tolerance => Out == DType.F32 ? 1e-5 : 1e-2;
    }

    static IEnumerable<(int ta, int tb, int m, int n, int k)> Shapes()
    {
        foreach (var ta in new[] { Cublas.OP_N, Cublas.OP_T })
            foreach (var tb in new[] { Cublas.OP_N, Cublas.OP_T })
                yield return (ta, tb, 37, 19, 53);
        yield return (Cublas.OP_T, Cublas.OP_N, 1, 7, 1);
        yield return (Cublas.OP_N, Cublas.OP_N, 64, 64, 128);
    }

    static float[] Download(CudaBackend be, Tensor t)
    {
        var h = new float[t.Count];
        be.ToHost(t, h);
        return h;
    }

    [Theory, MemberData(nameof(TypePairs))]
    public void CublasGemmExAndStridedBatched(DType input, DType output)
    {
        var be = CudaFixture.Get(DType.F32);
        var rng = new Random(11);
        foreach (var (ta, tb, m, n, k) in Shapes())
            foreach (var batch in new[] { 1, 3 })
            {
                var p = new Problem(rng, input, output, ta, tb, m, n, k, batch);
                using var a = be.FromHost(p.A, input, p.A.Length);
                using var b = be.FromHost(p.B, input, p.B.Length);
                using var d = be.FromHost(Enumerable.Repeat(float.NaN, (int)(p.Sd * batch)).ToArray(), output, (int)(p.Sd * batch));
                const float alpha = 0.75f;
                if (batch == 1)
                    Cublas.GemmEx(be.CublasHandle, ta, tb, m, n, k, alpha, CudaBackend.P(a), CudaType(input), p.Lda,
                        CudaBackend.P(b), CudaType(input), p.Ldb, 0f, CudaBackend.P(d), CudaType(output), p.Ldd);
                else
                    Cublas.GemmStridedBatchedEx(be.CublasHandle, ta, tb, m, n, k, alpha, CudaBackend.P(a), CudaType(input), p.Lda, p.Sa,
                        CudaBackend.P(b), CudaType(input), p.Ldb, p.Sb, 0f, CudaBackend.P(d), CudaType(output), p.Ldd, p.Sd, batch);
                double err = p.Error(Download(be, d), p.Reference(alpha, bias: false));
                CudaFixture.Record($"cublasGemm{(batch > 1 ? "StridedBatched" : "")}Ex {input}->{output}", input, err);
                Assert.True(err < p.Tolerance, $"{input}->{output} op({ta},{tb}) {m}x{n}x{k} batch {batch}: relative error {err:E2}");
            }
    }

    [Theory, MemberData(nameof(TypePairs))]
    public void CublasLtMatmulStridedBatchedWithBias(DType input, DType output)
    {
        var be = CudaFixture.Get(DType.F32);
        var rng = new Random(12);
        using var ws = be.AllocUninitialized(DType.F32, (int)(CudaBackend.LtWorkspaceBytes / 4));
        foreach (var (ta, tb, m, n, k) in Shapes())
            foreach (var batch in new[] { 1, 3 })
                foreach (var withBias in new[] { false, true })
                {
                    var p = new Problem(rng, input, output, ta, tb, m, n, k, batch);
                    using var a = be.FromHost(p.A, input, p.A.Length);
                    using var b = be.FromHost(p.B, input, p.B.Length);
                    using var bias = be.FromHost(p.Bias, output, m);
                    using var d = be.FromHost(Enumerable.Repeat(float.NaN, (int)(p.Sd * batch)).ToArray(), output, (int)(p.Sd * batch));
                    const float alpha = 1.25f;
                    int r = CublasLt.Gemm(be.CublasLtHandle, ta, tb, m, n, k, alpha, CudaBackend.P(a), CudaType(input), p.Lda, p.Sa,
                        CudaBackend.P(b), CudaType(input), p.Ldb, p.Sb, 0f, CudaBackend.P(d), CudaType(output), p.Ldd, p.Sd, batch,
                        withBias ? CudaBackend.P(bias) : 0, CudaType(output), CudaBackend.P(ws), (ulong)CudaBackend.LtWorkspaceBytes, be.Stream);
                    // cuBLASLt may have no algorithm for a combination (it says so: CUBLAS_STATUS_NOT_SUPPORTED); the
                    // backend then falls back to cublasGemmEx. The plain and the bias case of every type pair must run.
                    if (r == CublasLt.STATUS_NOT_SUPPORTED && (m == 1 || batch > 1)) continue;
                    Assert.True(r == 0, $"cublasLtMatmul {input}->{output} op({ta},{tb}) {m}x{n}x{k} batch {batch} bias {withBias}: status {r}");
                    double err = p.Error(Download(be, d), p.Reference(alpha, withBias));
                    CudaFixture.Record($"cublasLtMatmul{(withBias ? " bias" : "")} {input}->{output}", input, err);
                    Assert.True(err < p.Tolerance, $"cublasLtMatmul {input}->{output} op({ta},{tb}) {m}x{n}x{k} batch {batch} bias {withBias}: relative error {err:E2}");
                }
    }
}
