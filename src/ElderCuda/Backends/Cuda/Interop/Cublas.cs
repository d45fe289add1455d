using System.Runtime.InteropServices;

namespace ElderCuda.Backends.Cuda.Interop;

/// <summary>
/// cuBLAS (column-major BLAS). The engine uses cublasGemmEx / cublasGemmStridedBatchedEx with bf16,
/// fp16 or fp32 inputs and fp32 compute (CUBLAS_COMPUTE_32F); the row-major mapping is in Ops/Matmul.cs.
/// </summary>
public static unsafe class Cublas
{
    // cudaDataType
    public const int CUDA_R_32F = 0;
    public const int CUDA_R_16F = 2;
    public const int CUDA_R_16BF = 14;
    // cublasComputeType_t
    public const int CUBLAS_COMPUTE_32F = 68;
    public const int CUBLAS_COMPUTE_32F_PEDANTIC = 69;
    public const int CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
    // cublasOperation_t
    public const int OP_N = 0, OP_T = 1;
    // cublasGemmAlgo_t
    public const int CUBLAS_GEMM_DEFAULT = -1;
    // cublasMath_t
    public const int CUBLAS_DEFAULT_MATH = 0;
    public const int CUBLAS_PEDANTIC_MATH = 2;

    internal static class Native
    {
        const string L = NativeLibraries.Cublas;
        [DllImport(L, EntryPoint = "cublasCreate_v2")] public static extern int cublasCreate(out IntPtr handle);
        [DllImport(L, EntryPoint = "cublasDestroy_v2")] public static extern int cublasDestroy(IntPtr handle);
        [DllImport(L, EntryPoint = "cublasGetVersion_v2")] public static extern int cublasGetVersion(IntPtr handle, out int version);
        [DllImport(L, EntryPoint = "cublasSetStream_v2")] public static extern int cublasSetStream(IntPtr handle, IntPtr stream);
        [DllImport(L)] public static extern int cublasSetMathMode(IntPtr handle, int mode);
        [DllImport(L)] public static extern IntPtr cublasGetStatusName(int status);
        [DllImport(L)] public static extern int cublasGemmEx(IntPtr handle, int transa, int transb, int m, int n, int k,
            void* alpha, ulong A, int Atype, int lda, ulong B, int Btype, int ldb,
            void* beta, ulong C, int Ctype, int ldc, int computeType, int algo);
        [DllImport(L)] public static extern int cublasGemmStridedBatchedEx(IntPtr handle, int transa, int transb, int m, int n, int k,
            void* alpha, ulong A, int Atype, int lda, long strideA, ulong B, int Btype, int ldb, long strideB,
            void* beta, ulong C, int Ctype, int ldc, long strideC, int batchCount, int computeType, int algo);
    }

    static string StatusName(int s)
    {
        try { var p = Native.cublasGetStatusName(s); if (p != IntPtr.Zero) return Marshal.PtrToStringAnsi(p) ?? $"cublasStatus {s}"; }
        catch (EntryPointNotFoundException) { }
        return s switch
        {
            1 => "CUBLAS_STATUS_NOT_INITIALIZED", 3 => "CUBLAS_STATUS_ALLOC_FAILED", 7 => "CUBLAS_STATUS_INVALID_VALUE",
            8 => "CUBLAS_STATUS_ARCH_MISMATCH", 11 => "CUBLAS_STATUS_MAPPING_ERROR", 13 => "CUBLAS_STATUS_EXECUTION_FAILED",
            14 => "CUBLAS_STATUS_INTERNAL_ERROR", 15 => "CUBLAS_STATUS_NOT_SUPPORTED", _ => $"cublasStatus {s}",
        };
    }

    public static void Check(int status, string function)
    {
        if (status == 0) return;
        var name = StatusName(status);
        throw new CudaException($"{function} failed: {name} ({status})", function, status, name);
    }

    public static IntPtr Create()
    {
        try { Check(Native.cublasCreate(out var h), "cublasCreate_v2"); return h; }
        catch (NativeLibraries.OverrideNotLoadable e) { throw new CudaException(e.Message, "cublasCreate_v2", -1, "DLL_NOT_FOUND", e); }
        catch (DllNotFoundException e)
        {
            throw new CudaException($"no cuBLAS library was found (tried {NativeLibraries.CandidateList(NativeLibraries.Cublas)})", "cublasCreate_v2", -1, "DLL_NOT_FOUND", e);
        }
    }
    public static void Destroy(IntPtr h) => Check(Native.cublasDestroy(h), "cublasDestroy_v2");
    public static int GetVersion(IntPtr h) { Check(Native.cublasGetVersion(h, out var v), "cublasGetVersion_v2"); return v; }
    public static void SetStream(IntPtr h, IntPtr stream) => Check(Native.cublasSetStream(h, stream), "cublasSetStream_v2");
    public static void SetMathMode(IntPtr h, int mode) => Check(Native.cublasSetMathMode(h, mode), "cublasSetMathMode");

    /// <summary>C = alpha·op(A)·op(B) + beta·C (column-major), fp32 alpha/beta.</summary>
    public static void GemmEx(IntPtr h, int transa, int transb, int m, int n, int k, float alpha,
        ulong A, int aType, int lda, ulong B, int bType, int ldb, float beta, ulong C, int cType, int ldc, int computeType = CUBLAS_COMPUTE_32F)
        => Check(Native.cublasGemmEx(h, transa, transb, m, n, k, &alpha, A, aType, lda, B, bType, ldb, &beta, C, cType, ldc, computeType, CUBLAS_GEMM_DEFAULT),
            $"cublasGemmEx(m={m},n={n},k={k})");

    public static void GemmStridedBatchedEx(IntPtr h, int transa, int transb, int m, int n, int k, float alpha,
        ulong A, int aType, int lda, long strideA, ulong B, int bType, int ldb, long strideB,
        float beta, ulong C, int cType, int ldc, long strideC, int batch, int computeType = CUBLAS_COMPUTE_32F)
        => Check(Native.cublasGemmStridedBatchedEx(h, transa, transb, m, n, k, &alpha, A, aType, lda, strideA, B, bType, ldb, strideB,
            &beta, C, cType, ldc, strideC, batch, computeType, CUBLAS_GEMM_DEFAULT), $"cublasGemmStridedBatchedEx(m={m},n={n},k={k},batch={batch})");
}
