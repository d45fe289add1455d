using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/layernorm.cu
public sealed partial class CudaBackend
{
    public void LayerNorm(Tensor output, Tensor mean, Tensor rstd, Tensor x, Tensor w, Tensor b, float eps)
    {
        NeedFloat(x, "LayerNorm", "x"); Need(output, x.DType, "LayerNorm", "output");
        Need(mean, DType.F32, "LayerNorm", "mean"); Need(rstd, DType.F32, "LayerNorm", "rstd");
        int N = x.Rows, C = x.Cols;
        if (N == 0) return;
        var temps = new List<Tensor>();
        var wt = As(w, x.DType, temps); var bt = As(b, x.DType, temps);
        Launch("layernorm", $"layernorm_fwd_{Sfx(x.DType)}", ((uint)N, 1, 1), (NormThreads(C), 1, 1), 0,
            P(output), P(mean), P(rstd), P(x), P(wt), P(bt), N, C, eps);
        Free(temps);
    }

    public void LayerNormBackward(Tensor dx, Tensor dw, Tensor db, Tensor dOut, Tensor x, Tensor w, Tensor mean, Tensor rstd)
    {
        NeedFloat(x, "LayerNormBackward", "x"); Need(dx, x.DType, "LayerNormBackward", "dx");
        Need(dw, DType.F32, "LayerNormBackward", "dw"); Need(db, DType.F32, "LayerNormBackward", "db");
        int N = x.Rows, C = x.Cols;
        if (N == 0) return;
        var temps = new List<Tensor>();
        var wt = As(w, x.DType, temps); var g = As(dOut, x.DType, temps);
        uint blocks = (uint)Math.Min(N, SmCount * 2);
        Launch("layernorm", $"layernorm_bwd_{Sfx(x.DType)}", (blocks, 1, 1), (NormThreads(C), 1, 1), (uint)(2 * C * 4),
            P(dx), P(dw), P(db), P(g), P(x), P(wt), P(mean), P(rstd), N, C);
        Free(temps);
    }
}
