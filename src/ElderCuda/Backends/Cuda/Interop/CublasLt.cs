using System.Runtime.InteropServices;

namespace ElderCuda.Backends.Cuda.Interop;

/// <summary>
/// cuBLASLt handle, matmul and matrix-layout descriptors. Not used by the backend yet (cublasGemmEx
/// covers every product the model needs); bound so that fused epilogues (bias, gelu) can move here.
/// </summary>
public static unsafe class CublasLt
{
    // cublasLtMatmulDescAttributes_t
    public const int MATMUL_DESC_TRANSA = 3;
    public const int MATMUL_DESC_TRANSB = 4;
    public const int MATMUL_DESC_EPILOGUE = 7;
    public const int MATMUL_DESC_BIAS_POINTER = 8;

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

    /// <summary>D = alpha·op(A)·op(B) + beta·C with the library's heuristic algorithm (algo = null).</summary>
    public static void Matmul(IntPtr h, IntPtr desc, float alpha, ulong A, IntPtr aDesc, ulong B, IntPtr bDesc, float beta,
        ulong C, IntPtr cDesc, ulong D, IntPtr dDesc, ulong workspace, ulong workspaceBytes, IntPtr stream)
        => Cublas.Check(Native.cublasLtMatmul(h, desc, &alpha, A, aDesc, B, bDesc, &beta, C, cDesc, D, dDesc, null, workspace, (nuint)workspaceBytes, stream), "cublasLtMatmul");
}
