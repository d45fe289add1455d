using ElderCuda.Backends.Cuda.Interop;
using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// Linear layers through cublasGemmEx, fp32 accumulation (CUBLAS_COMPUTE_32F: no TF32, so F32 mode is exact
// fp32). cuBLAS is column-major: a row-major [R, C] matrix is a column-major [C, R] one with ld = C.
//   out[N,O] = x[N,I]·W[O,I]ᵀ  ⇔  outᶜ[O,N] = (Wᶜ[I,O])ᵀ · xᶜ[I,N]      gemm(T, N, m=O, n=N, k=I)
//   dx[N,I]  = dOut[N,O]·W    ⇔  dxᶜ[I,N]  = Wᶜ[I,O] · dOutᶜ[O,N]         gemm(N, N, m=I, n=N, k=O)
//   dW[O,I] += dOutᵀ·x        ⇔  dWᶜ[I,O] += xᶜ[I,N] · (dOutᶜ[O,N])ᵀ     gemm(N, T, m=I, n=O, k=N)
public sealed partial class CudaBackend
{
    static int CudaType(DType d) => d switch
    {
        DType.F32 => Cublas.CUDA_R_32F, DType.BF16 => Cublas.CUDA_R_16BF, DType.F16 => Cublas.CUDA_R_16F,
        _ => throw new ArgumentException($"cuBLAS has no {d} matrices here"),
    };

    /// <summary>Input/output dtype pairs cublasGemmEx accepts with CUBLAS_COMPUTE_32F.</summary>
    static bool GemmSupports(DType ab, DType c) => (ab, c) switch
    {
        (DType.F32, DType.F32) or (DType.BF16, DType.BF16) or (DType.BF16, DType.F32) or (DType.F16, DType.F16) or (DType.F16, DType.F32) => true,
        _ => false,
    };

    /// <summary>Row-major C[M,Nc] (=, or += with beta = 1) = A·B with A, B given by their row-major transposition flags.</summary>
    void Gemm(int transa, int transb, int m, int n, int k, Tensor A, int lda, Tensor B, int ldb, float beta, Tensor C, int ldc)
    {
        if (m == 0 || n == 0) return;
        Enter();
        if (k == 0)
        {
            if (beta == 0f) Zero(C);
            return;
        }
        Cublas.GemmEx(_cublas, transa, transb, m, n, k, 1f, P(A), CudaType(A.DType), lda, P(B), CudaType(B.DType), ldb,
            beta, P(C), CudaType(C.DType), ldc, Cublas.CUBLAS_COMPUTE_32F);
    }

    IntPtr _cublasLt;
    /// <summary>The cuBLASLt handle, created at first use; <see cref="CublasHandle"/> is cuBLAS's.</summary>
    internal IntPtr CublasLtHandle { get { Enter(); if (_cublasLt == IntPtr.Zero) _cublasLt = CublasLt.Create(); return _cublasLt; } }
    /// <summary>Bytes of device workspace a cuBLASLt product may use: 32 MiB, as NVIDIA suggests for Hopper.</summary>
    internal const long LtWorkspaceBytes = 32L << 20;
    /// <summary>Linear layers with a bias (and a fresh output) go through cuBLASLt with the BIAS epilogue: ELDR_GEMM=lt.
    /// Off by default until it has been timed against cublasGemmEx plus the bias kernel on a GPU.</summary>
    public static bool LtBiasEpilogue { get; set; } = Environment.GetEnvironmentVariable("ELDR_GEMM") == "lt";

    /// <summary>As <see cref="Gemm"/> with beta = 0, through cuBLASLt with <paramref name="bias"/> (of C's dtype, length m)
    /// added in its epilogue. False when cuBLASLt has no algorithm for it (CUBLAS_STATUS_NOT_SUPPORTED): the caller then
    /// takes cublasGemmEx.</summary>
    bool LtGemmBias(int transa, int transb, int m, int n, int k, Tensor A, int lda, Tensor B, int ldb, Tensor C, int ldc, Tensor bias, List<Tensor> temps)
    {
        var ws = Temp(DType.F32, temps, (int)(LtWorkspaceBytes / 4));
        int r = CublasLt.Gemm(CublasLtHandle, transa, transb, m, n, k, 1f, P(A), CudaType(A.DType), lda, 0, P(B), CudaType(B.DType), ldb, 0,
            0f, P(C), CudaType(C.DType), ldc, 0, 1, P(bias), CudaType(bias.DType), P(ws), (ulong)LtWorkspaceBytes, _stream);
        return r == 0;
    }

    /// <summary>
    /// The operand dtype of a product with weight <paramref name="w"/>: a bf16/f16 weight multiplies in its
    /// own dtype (F32 activations are cast to it, so the GEMM stays on tensor cores); an F32 weight takes the
    /// activation's dtype, as before.
    /// </summary>
    static DType GemmOperand(Tensor w, Tensor x) => w.DType is DType.BF16 or DType.F16 ? w.DType : x.DType;

    public void Matmul(Tensor output, Tensor x, Tensor w, Tensor? bias, bool accumulate = false)
    {
        int N = x.Rows, I = x.Cols, O = w.Rows;
        if (w.Cols != I || output.Cols != O || output.Rows != N)
            throw new ArgumentException($"matmul shapes: out {output} = x {x} · W {w}ᵀ");
        var temps = new List<Tensor>();
        var od = GemmOperand(w, x);
        var wt = As(w, od, temps);
        x = As(x, od, temps);
        if (GemmSupports(x.DType, output.DType))
        {
            // ELDR_GEMM=lt: the bias added by cuBLASLt's epilogue, in the product's own kernel (a fresh output only)
            if (!(bias is not null && LtBiasEpilogue && !accumulate && bias.DType == output.DType && N > 0 && O > 0 && I > 0 &&
                  LtGemmBias(Cublas.OP_T, Cublas.OP_N, O, N, I, wt, I, x, I, output, O, bias, temps)))
            {
                Gemm(Cublas.OP_T, Cublas.OP_N, O, N, I, wt, I, x, I, accumulate ? 1f : 0f, output, O);
                if (bias is not null) BiasAdd(output, bias);
            }
        }
        else
        {
            var tmp = Temp(DType.F32, temps, N, O);
            if (accumulate) Cast(tmp, output);
            Gemm(Cublas.OP_T, Cublas.OP_N, O, N, I, wt, I, x, I, accumulate ? 1f : 0f, tmp, O);
            if (bias is not null) BiasAdd(tmp, bias);
            Cast(output, tmp);
        }
        Free(temps);
    }

    public void MatmulBackward(Tensor? dx, Tensor? dw, Tensor? db, Tensor dOut, Tensor x, Tensor w, bool accumulateDx = false)
    {
        int N = dOut.Rows, O = dOut.Cols, I = w.Cols;
        if (w.Rows != O || x.Cols != I || x.Rows != N)
            throw new ArgumentException($"matmul backward shapes: dOut {dOut}, x {x}, W {w}");
        var temps = new List<Tensor>();
        var od = GemmOperand(w, x);
        x = As(x, od, temps);
        var g = As(dOut, od, temps);
        if (dx is not null)
        {
            if (dx.Rows != N || dx.Cols != I) throw new ArgumentException($"dx {dx} does not match x {x}");
            var wt = As(w, x.DType, temps);
            if (GemmSupports(x.DType, dx.DType))
                Gemm(Cublas.OP_N, Cublas.OP_N, I, N, O, wt, I, g, O, accumulateDx ? 1f : 0f, dx, I);
            else
            {
                var tmp = Temp(DType.F32, temps, N, I);
                Gemm(Cublas.OP_N, Cublas.OP_N, I, N, O, wt, I, g, O, 0f, tmp, I);
                if (accumulateDx) Axpy(dx, 1f, tmp); else Cast(dx, tmp);
            }
        }
        if (dw is not null)
        {
            Need(dw, DType.F32, "MatmulBackward", "dW");
            if (dw.Rows != O || dw.Cols != I) throw new ArgumentException($"dW {dw} does not match W {w}");
            Gemm(Cublas.OP_N, Cublas.OP_T, I, O, N, x, I, g, O, 1f, dw, I);
        }
        if (db is not null) BiasBackward(db, dOut);
        Free(temps);
    }
}
