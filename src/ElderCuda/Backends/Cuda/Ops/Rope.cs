using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/rope.cu. The angle tables (full, partial, llama3-scaled) are built on the host by the model.
public sealed partial class CudaBackend
{
    public void Rope(Tensor x, Tensor cos, Tensor sin, int T, int nHeads, int headDim, int rotaryDim, bool inverse)
    {
        NeedFloat(x, "Rope", "x");
        if (x.Cols != nHeads * headDim) throw new ArgumentException($"rope: {x} is not [N, {nHeads}·{headDim}]");
        if (rotaryDim % 2 != 0 || rotaryDim > headDim) throw new ArgumentException($"rope: rotaryDim {rotaryDim} must be even and ≤ headDim {headDim}");
        int half = rotaryDim / 2;
        if (half == 0) return;
        if (cos.Count < (long)T * half || sin.Count < (long)T * half) throw new ArgumentException($"rope: tables {cos}/{sin} smaller than [{T}, {half}]");
        var temps = new List<Tensor>();
        var c = As(cos, DType.F32, temps); var s = As(sin, DType.F32, temps);
        long N = x.Rows;
        LaunchN("rope", $"rope_{(inverse ? "bwd" : "fwd")}_{Sfx(x.DType)}", N * nHeads * half, P(x), P(c), P(s), N, T, nHeads, headDim, rotaryDim);
        Free(temps);
    }
}
