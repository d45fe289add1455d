using System.Runtime.CompilerServices;
using ElderCuda.Backends;
using ElderCuda.Backends.Cpu;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Model;

/// <summary>
/// The CPU backend with the CUDA backend's BF16 storage convention: every tensor allocated as BF16 is
/// rounded to bfloat16 (round-to-nearest-even) whenever an op writes it, while the math inside each op
/// stays fp32, as the kernels and cuBLAS (fp32 accumulate) do. F32 tensors (statistics, parameter
/// gradients, and whatever the model asks for in F32) are not rounded. Rounding inside fused kernels
/// (bf16 P and dS in the tensor-core attention) is not modelled.
///
/// This lets the CPU study how the model's storage precision policy behaves in BF16 mode, without a GPU.
/// </summary>
public sealed class Bf16StorageEmulator : IBackend
{
    readonly CpuBackend cpu = new();
    readonly ConditionalWeakTable<Tensor, object> bf16 = new();
    static readonly object Mark = new();

    public string Name => "cpu-bf16-emulated";
    public DType ComputeType => DType.BF16;

    bool IsBf16(Tensor? t) => t is not null && bf16.TryGetValue(t, out _);

    /// <summary>Rounds every value to the nearest bfloat16 (nearest-even), in place.</summary>
    internal static void RoundToBf16(Span<float> s)
    {
        for (int i = 0; i < s.Length; i++) s[i] = DTypes.Bf16ToFloat(DTypes.FloatToBf16(s[i]));
    }

    void Round(Tensor? t)
    {
        if (IsBf16(t)) RoundToBf16(((CpuTensor)t!).Span);
    }

    Tensor Track(Tensor t, DType d)
    {
        if (d is DType.BF16 or DType.F16) { bf16.Add(t, Mark); Round(t); }
        return t;
    }

    public Tensor Alloc(DType dtype, params int[] shape) => Track(cpu.Alloc(dtype, shape), dtype);
    public Tensor AllocUninitialized(DType dtype, params int[] shape) => Track(cpu.AllocUninitialized(dtype, shape), dtype);
    public Tensor FromHost(ReadOnlySpan<float> data, DType dtype, params int[] shape) => Track(cpu.FromHost(data, dtype, shape), dtype);
    public Tensor FromHostInt(ReadOnlySpan<int> data, params int[] shape) => cpu.FromHostInt(data, shape);
    public void CopyFromHost(Tensor dst, ReadOnlySpan<float> data) { cpu.CopyFromHost(dst, data); Round(dst); }
    public void ToHost(Tensor t, Span<float> dst) => cpu.ToHost(t, dst);
    public void ToHostInt(Tensor t, Span<int> dst) => cpu.ToHostInt(t, dst);
    public void ArgMax(Tensor output, Tensor x) => cpu.ArgMax(output, x);
    public void Zero(Tensor t) => cpu.Zero(t);
    public void Copy(Tensor dst, Tensor src) { cpu.Copy(dst, src); Round(dst); }
    public void Synchronize() { }
    public void Dispose() => cpu.Dispose();

    public void Embedding(Tensor output, Tensor ids, Tensor table, Tensor? positions, int T, int posOffset)
    { cpu.Embedding(output, ids, table, positions, T, posOffset); Round(output); }
    public void EmbeddingBackward(Tensor dTable, Tensor? dPositions, Tensor dOut, Tensor ids, int T, int posOffset)
    { cpu.EmbeddingBackward(dTable, dPositions, dOut, ids, T, posOffset); Round(dTable); Round(dPositions); }

    /// <summary>A BF16 weight's matmul reads its F32 activation operands as bf16, as cuBLAS gets them cast.</summary>
    Tensor AsWeight(Tensor a, Tensor w)
    {
        if (!IsBf16(w) || IsBf16(a)) return a;
        var c = cpu.Alloc(DType.F32, a.Shape);
        cpu.Copy(c, a);
        RoundToBf16(((CpuTensor)c).Span);
        return c;
    }

    public void Matmul(Tensor output, Tensor x, Tensor w, Tensor? bias, bool accumulate = false)
    { cpu.Matmul(output, AsWeight(x, w), w, bias, accumulate); Round(output); }
    public void MatmulBackward(Tensor? dx, Tensor? dw, Tensor? db, Tensor dOut, Tensor x, Tensor w, bool accumulateDx = false)
    { cpu.MatmulBackward(dx, dw, db, AsWeight(dOut, w), AsWeight(x, w), w, accumulateDx); Round(dx); Round(dw); Round(db); }

    public void RmsNorm(Tensor output, Tensor rstd, Tensor x, Tensor w, float eps)
    { cpu.RmsNorm(output, rstd, x, w, eps); Round(output); }
    public void RmsNormBackward(Tensor dx, Tensor dw, Tensor dOut, Tensor x, Tensor w, Tensor rstd)
    { cpu.RmsNormBackward(dx, dw, dOut, x, w, rstd); Round(dx); Round(dw); }
    public void LayerNorm(Tensor output, Tensor mean, Tensor rstd, Tensor x, Tensor w, Tensor b, float eps)
    { cpu.LayerNorm(output, mean, rstd, x, w, b, eps); Round(output); }
    public void LayerNormBackward(Tensor dx, Tensor dw, Tensor db, Tensor dOut, Tensor x, Tensor w, Tensor mean, Tensor rstd)
    { cpu.LayerNormBackward(dx, dw, db, dOut, x, w, mean, rstd); Round(dx); Round(dw); Round(db); }

    public void Rope(Tensor x, Tensor cos, Tensor sin, int T, int nHeads, int headDim, int rotaryDim, bool inverse)
    { cpu.Rope(x, cos, sin, T, nHeads, headDim, rotaryDim, inverse); Round(x); }

    public void Attention(Tensor output, Tensor lse, Tensor q, Tensor k, Tensor v, int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    { cpu.Attention(output, lse, q, k, v, B, T, nHeads, nKvHeads, headDim, scale); Round(output); }
    public void AttentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse,
        int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    { cpu.AttentionBackward(dq, dk, dv, dOut, q, k, v, output, lse, B, T, nHeads, nKvHeads, headDim, scale); Round(dq); Round(dk); Round(dv); }
    public void AttentionCached(Tensor output, Tensor q, Tensor k, Tensor v, Tensor kCache, Tensor vCache, int B, int past, int T, int nHeads, int nKvHeads, int headDim, float scale)
        => cpu.AttentionCached(output, q, k, v, kCache, vCache, B, past, T, nHeads, nKvHeads, headDim, scale); // output stays F32, as Attention's would in the model

    public void SwiGlu(Tensor output, Tensor gate, Tensor up) { cpu.SwiGlu(output, gate, up); Round(output); }
    public void SwiGluBackward(Tensor dGate, Tensor dUp, Tensor dOut, Tensor gate, Tensor up)
    { cpu.SwiGluBackward(dGate, dUp, dOut, gate, up); Round(dGate); Round(dUp); }
    public void Act(Activation kind, Tensor output, Tensor x) { cpu.Act(kind, output, x); Round(output); }
    public void ActBackward(Activation kind, Tensor dx, Tensor dOut, Tensor x) { cpu.ActBackward(kind, dx, dOut, x); Round(dx); }

    public void Add(Tensor output, Tensor a, Tensor b) { cpu.Add(output, a, b); Round(output); }
    public void Axpy(Tensor y, float alpha, Tensor x) { cpu.Axpy(y, alpha, x); Round(y); }
    public void Scale(Tensor output, Tensor x, float s) { cpu.Scale(output, x, s); Round(output); }
    public double Dot(Tensor a, Tensor b) => cpu.Dot(a, b);
    public double DiffNorm(Tensor a, Tensor b, NormKind kind) => cpu.DiffNorm(a, b, kind);
    public void DiffNormBackward(Tensor dA, Tensor? dB, Tensor a, Tensor b, NormKind kind, double norm, float coef)
    { cpu.DiffNormBackward(dA, dB, a, b, kind, norm, coef); Round(dA); Round(dB); }

    public void CrossEntropy(Tensor losses, Tensor? dLogits, Tensor logits, Tensor targets, float gradScale)
    { cpu.CrossEntropy(losses, dLogits, logits, targets, gradScale); Round(dLogits); }
    public void CrossEntropyDistill(Tensor losses, Tensor dLogits, Tensor logits, Tensor teacher, Tensor targets, float gradScale, float alpha, float temperature)
    { cpu.CrossEntropyDistill(losses, dLogits, logits, teacher, targets, gradScale, alpha, temperature); Round(dLogits); }

    public void AdamW(Tensor param, Tensor master, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
    { cpu.AdamW(param, master, grad, m, v, lr, beta1, beta2, eps, weightDecay, step); Round(param); }
}
