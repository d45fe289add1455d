using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/reduce.cu: fp64 partial sums per block, added on the host in a fixed order (deterministic).
public sealed partial class CudaBackend
{
    double ReducePartials(string kernel, long n, Tensor a, Tensor? b, int? l1)
    {
        if (n == 0) return 0;
        int blocks = (int)Math.Min((n + 255) / 256, 1024);
        var temps = new List<Tensor>();
        var part = Temp(DType.I64, temps, blocks);   // 8-byte slots holding doubles
        if (l1 is int flag)
            Launch("reduce", kernel, ((uint)blocks, 1, 1), (256, 1, 1), 0, P(part), P(a), P(b), n, flag);
        else
            Launch("reduce", kernel, ((uint)blocks, 1, 1), (256, 1, 1), 0, P(part), P(a), P(b), n);
        var bytes = Download(part);
        Free(temps);
        var d = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(bytes);
        double s = 0;
        foreach (var x in d) s += x;
        return s;
    }

    public double Dot(Tensor a, Tensor b)
    {
        SameCount(a, b, "Dot");
        var temps = new List<Tensor>();
        var bb = As(b, a.DType, temps);
        var r = ReducePartials($"dot_fwd_{Sfx(a.DType)}", a.Count, a, bb, null);
        Free(temps);
        return r;
    }

    public double DiffNorm(Tensor a, Tensor b, NormKind kind)
    {
        SameCount(a, b, "DiffNorm");
        var temps = new List<Tensor>();
        var bb = As(b, a.DType, temps);
        var s = ReducePartials($"diffnorm_fwd_{Sfx(a.DType)}", a.Count, a, bb, kind == NormKind.L1 ? 1 : 0);
        Free(temps);
        return kind == NormKind.L1 ? s : Math.Sqrt(s);
    }

    public void DiffNormBackward(Tensor dA, Tensor? dB, Tensor a, Tensor b, NormKind kind, double norm, float coef)
    {
        SameCount(dA, a, "DiffNormBackward"); SameCount(a, b, "DiffNormBackward");
        if (dB is not null) { SameCount(dB, a, "DiffNormBackward"); Need(dB, dA.DType, "DiffNormBackward", "dB"); }
        float factor = kind == NormKind.L2 ? (norm > 0 ? (float)(coef / norm) : 0f) : coef;
        var temps = new List<Tensor>();
        // kernels exist for (dA, a) = (f32, f32), (f32, bf16), (bf16, bf16)
        var xd = dA.DType == DType.BF16 ? DType.BF16 : (a.DType == DType.BF16 ? DType.BF16 : DType.F32);
        var aa = As(a, xd, temps); var bb = As(b, xd, temps);
        LaunchN("reduce", $"diffnorm_bwd_{Sfx(dA.DType)}_{Sfx(xd)}", a.Count, P(dA), P(dB), P(aa), P(bb), a.Count, kind == NormKind.L1 ? 1 : 0, factor);
        Free(temps);
    }
}
