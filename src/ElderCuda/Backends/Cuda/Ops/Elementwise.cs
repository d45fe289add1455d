using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/elementwise.cu: add, axpy, scale, cast (any pair of f32/bf16/f16), bias add and bias gradient.
public sealed partial class CudaBackend
{
    const string ElementwiseFamily = "elementwise";

    internal void Cast(Tensor dst, Tensor src)
    {
        SameCount(dst, src, "Cast");
        LaunchN(ElementwiseFamily, $"cast_{Sfx(dst.DType)}_{Sfx(src.DType)}", dst.Count, P(dst), P(src), dst.Count);
    }

    public void Add(Tensor output, Tensor a, Tensor b)
    {
        SameCount(output, a, "Add"); SameCount(output, b, "Add");
        var temps = new List<Tensor>();
        var d = output.DType;
        var a2 = As(a, d, temps); var b2 = As(b, d, temps);
        LaunchN(ElementwiseFamily, $"add_fwd_{Sfx(d)}", output.Count, P(output), P(a2), P(b2), output.Count);
        Free(temps);
    }

    public void Axpy(Tensor y, float alpha, Tensor x)
    {
        SameCount(y, x, "Axpy");
        LaunchN(ElementwiseFamily, $"axpy_{Sfx(y.DType)}_{Sfx(x.DType)}", y.Count, P(y), P(x), alpha, y.Count);
    }

    public void Scale(Tensor output, Tensor x, float s)
    {
        SameCount(output, x, "Scale");
        LaunchN(ElementwiseFamily, $"scale_{Sfx(output.DType)}_{Sfx(x.DType)}", output.Count, P(output), P(x), s, output.Count);
    }

    /// <summary>out[n, o] += bias[o].</summary>
    internal void BiasAdd(Tensor output, Tensor bias)
    {
        if (bias.Count != output.Cols) throw new ArgumentException($"bias {bias} does not match output {output}");
        LaunchN(ElementwiseFamily, $"bias_add_{Sfx(output.DType)}_{Sfx(bias.DType)}", output.Count, P(output), P(bias), (long)output.Rows, output.Cols);
    }

    /// <summary>db[o] += Σ_n dOut[n, o] (db F32).</summary>
    internal void BiasBackward(Tensor db, Tensor dOut)
    {
        Need(db, DType.F32, "MatmulBackward", "db");
        int N = dOut.Rows, O = dOut.Cols;
        if (N == 0 || O == 0) return;
        uint gx = (uint)((O + 31) / 32);
        // enough row slices to fill the GPU, each at least 64 rows long
        uint gy = (uint)Math.Clamp(Math.Min((N + 63) / 64, SmCount * 4 / (int)Math.Max(1, gx) + 1), 1, 1024);
        Launch(ElementwiseFamily, $"bias_bwd_{Sfx(dOut.DType)}", (gx, gy, 1), (32, 8, 1), 0, P(db), P(dOut), N, O);
    }
}
