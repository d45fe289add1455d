using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/rmsnorm.cu
public sealed partial class CudaBackend
{
    /// <summary>Threads per row for the norm kernels: enough for C, a multiple of 32, at most 1024.</summary>
    static uint NormThreads(int C) => (uint)Math.Clamp((Math.Min(C, 1024) + 31) / 32 * 32, 32, 1024);

    public void RmsNorm(Tensor output, Tensor rstd, Tensor x, Tensor w, float eps)
    {
        NeedFloat(x, "RmsNorm", "x"); Need(output, x.DType, "RmsNorm", "output"); Need(rstd, DType.F32, "RmsNorm", "rstd");
        int N = x.Rows, C = x.Cols;
        if (N == 0) return;
        var temps = new List<Tensor>();
        var wt = As(w, x.DType, temps);
        Launch("rmsnorm", $"rmsnorm_fwd_{Sfx(x.DType)}", ((uint)N, 1, 1), (NormThreads(C), 1, 1), 0, P(output), P(rstd), P(x), P(wt), N, C, eps);
        Free(temps);
    }

    public void RmsNormBackward(Tensor dx, Tensor dw, Tensor dOut, Tensor x, Tensor w, Tensor rstd)
    {
        NeedFloat(x, "RmsNormBackward", "x"); Need(dx, x.DType, "RmsNormBackward", "dx"); Need(dw, DType.F32, "RmsNormBackward", "dw");
        int N = x.Rows, C = x.Cols;
        if (N == 0) return;
        var temps = new List<Tensor>();
        var wt = As(w, x.DType, temps); var g = As(dOut, x.DType, temps);
        uint blocks = (uint)Math.Min(N, SmCount * 2);
        Launch("rmsnorm", $"rmsnorm_bwd_{Sfx(x.DType)}", (blocks, 1, 1), (NormThreads(C), 1, 1), (uint)(C * 4),
            P(dx), P(dw), P(g), P(x), P(wt), P(rstd), N, C);
        Free(temps);
    }
}
