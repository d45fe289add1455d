using System.Runtime.InteropServices;

namespace ElderCuda.Backends.Cuda.Interop;

/// <summary>
/// cuBLASLt: handle, matmul and matrix-layout descriptors, and <see cref="Gemm"/>, a strided-batched product in
/// bf16, fp16 or fp32 with fp32 compute and an optional bias epilogue. The backend uses it for linear layers with a
/// bias when ELDR_GEMM=lt (the bias add fused into the product; opt-in until timed on a GPU), and cublasGemmEx
/// otherwise.
/// </summary>
public static unsafe class CublasLt
{
    // cublasLtMatmulDescAttributes_t
    public const int MATMUL_DESC_TRANSA = 3;
    public const int MATMUL_DESC_TRANSB = 4;
    public const int MATMUL_DESC_EPILOGUE = 7;
    public const int MATMUL_DESC_BIAS_POINTER = 8;
    public const int MATMUL_DESC_BIAS_DATA_TYPE = 26;
    // cublasLtMatrixLayoutAttribute_t
    public const int MATRIX_LAYOUT_BATCH_COUNT = 5;
    public const int MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6;
    // cublasLtEpilogue_t
    public const uint EPILOGUE_DEFAULT = 1;
    public const uint EPILOGUE_BIAS = 4;
    /// <summary>CUBLAS_STATUS_NOT_SUPPORTED: no algorithm for these shapes, types, alignments.</summary>
    public const int STATUS_NOT_SUPPORTED = 15;

    internal static class Native
    {
        const string L = NativeLibraries.CublasLt;
        [DllImport(L)] public static extern int cublasLtCreate(out IntPtr handle);
        [DllImport(L)] public static extern int cublasLtDestroy(IntPtr handle);
        [DllImport(L)] public static extern nuint cublasLtGetVersion();
        [DllImport(L)] public static extern int cublasLtMatmulDescCreate(out IntPtr desc, int computeType, int scaleType);
        [DllImport(L)] public static extern int cublasLtMatmulDescDestroy(IntPtr desc);
        [DllImport(L)] public static extern int cublasLtMatmulDescSetAttribute(IntPtr desc, int attr, void* buf, nuint size);
        [DllImport(L)] public static extern int cublasLtMatrixLayoutCreate(out IntPtr layout, int type, ulong rows, ulong cols, long ld);
        [DllImport(L)] public static extern int cublasLtMatrixLayoutDestroy(IntPtr layout);
        [DllImport(L)] public static extern int cublasLtMatrixLayoutSetAttribute(IntPtr layout, int attr, void* buf, nuint size);
        [DllImport(L)] public static extern int cublasLtMatmul(IntPtr handle, IntPtr desc, void* alpha, ulong A, IntPtr Adesc, ulong B, IntPtr Bdesc,
            void* beta, ulong C, IntPtr Cdesc, ulong D, IntPtr Ddesc, void* algo, ulong workspace, nuint workspaceSize, IntPtr stream);
    }

    public static IntPtr Create() { Cublas.Check(Native.cublasLtCreate(out var h), "cublasLtCreate"); return h; }
    public static void Destroy(IntPtr h) => Cublas.Check(Native.cublasLtDestroy(h), "cublasLtDestroy");
    public static ulong Version() => Native.cublasLtGetVersion();

    public static IntPtr MatmulDescCreate(int computeType, int scaleType)
    { Cublas.Check(Native.cublasLtMatmulDescCreate(out var d, computeType, scaleType), "cublasLtMatmulDescCreate"); return d; }
    public static void MatmulDescDestroy(IntPtr d) => Cublas.Check(Native.cublasLtMatmulDescDestroy(d), "cublasLtMatmulDescDestroy");
    public static void MatmulDescSetInt(IntPtr d, int attr, int value)
        => Cublas.Check(Native.cublasLtMatmulDescSetAttribute(d, attr, &value, sizeof(int)), "cublasLtMatmulDescSetAttribute");
    public static IntPtr MatrixLayoutCreate(int type, ulong rows, ulong cols, long ld)
    { Cublas.Check(Native.cublasLtMatrixLayoutCreate(out var l, type, rows, cols, ld), "cublasLtMatrixLayoutCreate"); return l; }
    public static void MatrixLayoutDestroy(IntPtr l) => Cublas.Check(Native.cublasLtMatrixLayoutDestroy(l), "cublasLtMatrixLayoutDestroy");

    public static void MatmulDescSetPointer(IntPtr d, int attr, ulong value)
        => Cublas.Check(Native.cublasLtMatmulDescSetAttribute(d, attr, &value, sizeof(ulong)), "cublasLtMatmulDescSetAttribute");
    public static void MatrixLayoutSetBatch(IntPtr l, int count, long stride)
    {
        Cublas.Check(Native.cublasLtMatrixLayoutSetAttribute(l, MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(int)), "cublasLtMatrixLayoutSetAttribute");
        Cublas.Check(Native.cublasLtMatrixLayoutSetAttribute(l, MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(long)), "cublasLtMatrixLayoutSetAttribute");
    }

    /// <summary>
    /// Column-major D = alpha·op(A)·op(B) + beta·D (+ bias[i] on every element of row i when <paramref name="bias"/> is
    /// not 0, a vector of <paramref name="biasType"/> and length m), fp32 compute and scale, for <paramref name="batch"/>
    /// matrices <paramref name="strideA"/>, <paramref name="strideB"/>, <paramref name="strideD"/> elements apart.
    /// Returns the cuBLAS status rather than throwing on CUBLAS_STATUS_NOT_SUPPORTED, so that a caller can fall back
    /// to cublasGemmEx; any other failure throws.
    /// </summary>
    public static int Gemm(IntPtr h, int transa, int transb, int m, int n, int k, float alpha,
        ulong A, int aType, long lda, long strideA, ulong B, int bType, long ldb, long strideB, float beta,
        ulong D, int dType, long ldd, long strideD, int batch, ulong bias, int biasType,
        ulong workspace, ulong workspaceBytes, IntPtr stream)
    {
        IntPtr desc = IntPtr.Zero, la = IntPtr.Zero, lb = IntPtr.Zero, ld = IntPtr.Zero;
        try
        {
            desc = MatmulDescCreate(Cublas.CUBLAS_COMPUTE_32F, Cublas.CUDA_R_32F);
            MatmulDescSetInt(desc, MATMUL_DESC_TRANSA, transa);
            MatmulDescSetInt(desc, MATMUL_DESC_TRANSB, transb);
            if (bias != 0)
            {
                MatmulDescSetInt(desc, MATMUL_DESC_EPILOGUE, (int)EPILOGUE_BIAS);
                MatmulDescSetPointer(desc, MATMUL_DESC_BIAS_POINTER, bias);
                MatmulDescSetInt(desc, MATMUL_DESC_BIAS_DATA_TYPE, biasType);
            }
            // a layout describes the matrix as stored, before op()
            la = transa == Cublas.OP_N ? MatrixLayoutCreate(aType, (ulong)m, (ulong)k, lda) : MatrixLayoutCreate(aType, (ulong)k, (ulong)m, lda);
            lb = transb == Cublas.OP_N ? MatrixLayoutCreate(bType, (ulong)k, (ulong)n, ldb) : MatrixLayoutCreate(bType, (ulong)n, (ulong)k, ldb);
            ld = MatrixLayoutCreate(dType, (ulong)m, (ulong)n, ldd);
            if (batch != 1)
            {
                MatrixLayoutSetBatch(la, batch, strideA);
                MatrixLayoutSetBatch(lb, batch, strideB);
                MatrixLayoutSetBatch(ld, batch, strideD);
            }
            int r = Native.cublasLtMatmul(h, desc, &alpha, A, la, B, lb, &beta, D, ld, D, ld, null, workspace, (nuint)workspaceBytes, stream);
            if (r != STATUS_NOT_SUPPORTED) Cublas.Check(r, $"cublasLtMatmul(m={m},n={n},k={k},batch={batch})");
            return r;
        }
        finally
        {
            if (ld != IntPtr.Zero) MatrixLayoutDestroy(ld);
            if (lb != IntPtr.Zero) MatrixLayoutDestroy(lb);
            if (la != IntPtr.Zero) MatrixLayoutDestroy(la);
            if (desc != IntPtr.Zero) MatmulDescDestroy(desc);
        }
    }
}
