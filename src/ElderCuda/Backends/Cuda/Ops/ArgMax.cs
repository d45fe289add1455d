using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/argmax.cu
public sealed partial class CudaBackend
{
    public void ArgMax(Tensor output, Tensor x)
    {
        Need(output, DType.I32, "ArgMax", "output");
        NeedFloat(x, "ArgMax", "x");
        int V = x.Cols, N = x.Rows;
        if (V < 1 || output.Count != N) throw new ArgumentException($"ArgMax: output {output} does not hold one index per row of {x}");
        if (N == 0) return;
        // one block per row; a multiple of 32 threads (the warp shuffles use the full mask), at most 1024
        uint threads = (uint)Math.Clamp((V + 31) / 32 * 32, 32, 1024);
        Launch("argmax", $"argmax_fwd_{Sfx(x.DType)}", ((uint)N, 1, 1), (threads, 1, 1), 0, P(output), P(x), V);
    }
}
