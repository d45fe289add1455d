using System.Runtime.CompilerServices;
using ElderCuda.Backends;
using ElderCuda.Backends.Cpu;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Model;

/// <summary>
/// The CPU backend with the CUDA backend's BF16 storage convention: every tensor allocated as BF16 is
/// rounded to bfloat16 (round-to-nearest-even) whenever an op writes it, while the math inside each op
/// stays fp32, as the kernels and cuBLAS (fp32 accumulate) do. F32 tensors (statistics, parameter
/// gradients, and whatever the model asks for in F32) are not rounded. With <see cref="ModelTensorCoreAttention"/>
/// (the default), attention also rounds what the tensor-core kernels round inside: P to bf16 before P·V and Pᵀ·dO,
/// dS to bf16 before dSᵀ·Q and dS·K, and the keys dQ multiplies, K − c. Modelling the kernels the H100 ran in the
/// sixth session (<see cref="SixthSessionKernels"/>) gives the worst bf16 gradient tensors it measured: OPT 0.21
/// (H100 0.17), Phi 0.060 (0.059), llama-gqa 0.014 (0.013), qwen2 0.014 (0.016), llama3-tied 0.011 (0.011).
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

    /// <summary>
    /// To measure what one matrix product's bf16 operand costs on its own: when set, nothing is rounded but the weights
    /// as they load (set this after loading) and the forward input of each matrix product whose weight this picks.
    /// Attention and every other op run in fp32. <see cref="SignFlips"/> then counts the picked products' outputs that
    /// the rounded input moves to the other side of zero, of <see cref="PickedOutputs"/>.
    /// </summary>
    public Func<Tensor, bool>? RoundOnlyInputsOf { get; set; }
    public long SignFlips { get; private set; }
    public long PickedOutputs { get; private set; }

    void Round(Tensor? t)
    {
        if (RoundOnlyInputsOf is not null) return;
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
    {
        if (RoundOnlyInputsOf is { } picks)
        {
            if (!picks(w)) { cpu.Matmul(output, x, w, bias, accumulate); return; }
            if (accumulate) throw new NotSupportedException("RoundOnlyInputsOf: a picked product that accumulates");
            var xr = cpu.Alloc(DType.F32, x.Shape);
            cpu.Copy(xr, x);
            RoundToBf16(((CpuTensor)xr).Span);
            cpu.Matmul(output, x, w, bias);
            var exact = ((CpuTensor)output).Span.ToArray();
            cpu.Matmul(output, xr, w, bias);
            var rounded = ((CpuTensor)output).Span;
            for (int i = 0; i < exact.Length; i++) if (exact[i] > 0 != rounded[i] > 0) SignFlips++;
            PickedOutputs += exact.Length;
            xr.Dispose();
            return;
        }
        cpu.Matmul(output, AsWeight(x, w), w, bias, accumulate); Round(output);
    }
    public void MatmulBackward(Tensor? dx, Tensor? dw, Tensor? db, Tensor dOut, Tensor x, Tensor w, bool accumulateDx = false)
    {
        if (RoundOnlyInputsOf is not null) { cpu.MatmulBackward(dx, dw, db, dOut, x, w, accumulateDx); return; }
        cpu.MatmulBackward(dx, dw, null, AsWeight(dOut, w), AsWeight(x, w), w, accumulateDx);
        if (db is not null) cpu.MatmulBackward(null, null, db, dOut, x, w);   // the CUDA backend sums dOut as given
        Round(dx); Round(dw); Round(db);
    }

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

    /// <summary>Round inside attention as the tensor-core kernels do (kernels/attention.cu, `tc` and `tc2`), where the
    /// CUDA backend runs them: bf16 operands and a head dim they are compiled for. On by default.</summary>
    public bool ModelTensorCoreAttention { get; init; } = true;

    /// <summary>With <see cref="ModelTensorCoreAttention"/>: model the kernels as the H100 ran them in the sixth session,
    /// before the eighth session's two changes: dQ multiplied K itself (not K − c), and O was normalised by the sums of
    /// the unrounded P (not of the bf16 P that P·V multiplies).</summary>
    public bool SixthSessionKernels { get; init; }

    bool TensorCore(Tensor q, int headDim) =>
        ModelTensorCoreAttention && RoundOnlyInputsOf is null && IsBf16(q) && ElderCuda.Backends.Cuda.CudaBackend.TensorCoreHeadDims.Contains(headDim);

    static float Bf(double x) => DTypes.Bf16ToFloat(DTypes.FloatToBf16((float)x));

    // Forward, per (batch, head, query): p = exp(scale·q·k − max) in fp32, P·V with p rounded to bf16 (the A fragments),
    // O divided by the sum of those rounded p (add_row_sums), lse = max + log of that sum. The kernels' online softmax
    // rescales running sums; one pass with the row's final max rounds the same way in distribution.
    public void Attention(Tensor output, Tensor lse, Tensor q, Tensor k, Tensor v, int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        if (!TensorCore(q, headDim)) { cpu.Attention(output, lse, q, k, v, B, T, nHeads, nKvHeads, headDim, scale); Round(output); return; }
        var o = ((CpuTensor)output).Span; var L = ((CpuTensor)lse).Span;
        var Q = ((CpuTensor)q).Span; var K = ((CpuTensor)k).Span; var V = ((CpuTensor)v).Span;
        int Wq = nHeads * headDim, Wk = nKvHeads * headDim, group = nHeads / nKvHeads;
        var s = new double[T]; var acc = new double[headDim];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < nHeads; h++)
                for (int t = 0; t < T; t++)
                {
                    int qo = (b * T + t) * Wq + h * headDim, kvo = h / group * headDim;
                    double m = double.NegativeInfinity;
                    for (int j = 0; j <= t; j++)
                    {
                        double dot = 0;
                        for (int d = 0; d < headDim; d++) dot += (double)Q[qo + d] * K[(b * T + j) * Wk + kvo + d];
                        s[j] = (float)(dot * scale); m = Math.Max(m, s[j]);
                    }
                    Array.Clear(acc);
                    double l = 0;
                    for (int j = 0; j <= t; j++)
                    {
                        float p = MathF.Exp((float)(s[j] - m)), pb = Bf(p);
                        l += SixthSessionKernels ? p : pb;
                        for (int d = 0; d < headDim; d++) acc[d] += pb * (double)V[(b * T + j) * Wk + kvo + d];
                    }
                    for (int d = 0; d < headDim; d++) o[qo + d] = (float)(acc[d] / l);
                    L[(b * nHeads + h) * T + t] = (float)(m + Math.Log(l));
                }
        Round(output);
    }

    // Backward, per (batch, head): P = exp(scale·q·k − lse) and dS = P ⊙ (dP − D) in fp32 with D = dO·O; dV += bf16(P)ᵀ·dO,
    // dK += scale·bf16(dS)ᵀ·Q, dQ += scale·bf16(dS)·bf16(K − c) with c the mean of the first 64 keys (bwd_key_centre).
    public void AttentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse,
        int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        if (!TensorCore(q, headDim))
        {
            cpu.AttentionBackward(dq, dk, dv, dOut, q, k, v, output, lse, B, T, nHeads, nKvHeads, headDim, scale);
            Round(dq); Round(dk); Round(dv); return;
        }
        var G = ((CpuTensor)dOut).Span; var Q = ((CpuTensor)q).Span; var K = ((CpuTensor)k).Span; var V = ((CpuTensor)v).Span;
        var O = ((CpuTensor)output).Span; var L = ((CpuTensor)lse).Span;
        int Wq = nHeads * headDim, Wk = nKvHeads * headDim, group = nHeads / nKvHeads;
        var dQ = new double[dq.Count]; var dK = new double[dk.Count]; var dV = new double[dv.Count];
        var kc = new float[T * headDim];
        for (int b = 0; b < B; b++)
            for (int kh = 0; kh < nKvHeads; kh++)
            {
                int nc = Math.Min(T, 64);
                for (int d = 0; d < headDim; d++)
                {
                    float sum = 0;
                    for (int j = 0; j < nc; j++) sum += K[(b * T + j) * Wk + kh * headDim + d];
                    float c = SixthSessionKernels ? 0 : sum / nc;
                    for (int j = 0; j < T; j++) kc[j * headDim + d] = Bf(K[(b * T + j) * Wk + kh * headDim + d] - c);
                }
                for (int h = kh * group; h < (kh + 1) * group; h++)
                    for (int i = 0; i < T; i++)
                    {
                        int qo = (b * T + i) * Wq + h * headDim;
                        float D = 0;
                        for (int d = 0; d < headDim; d++) D += G[qo + d] * O[qo + d];
                        for (int j = 0; j <= i; j++)
                        {
                            int ko = (b * T + j) * Wk + kh * headDim;
                            double sdot = 0, dp = 0;
                            for (int d = 0; d < headDim; d++) { sdot += (double)Q[qo + d] * K[ko + d]; dp += (double)G[qo + d] * V[ko + d]; }
                            float p = MathF.Exp((float)sdot * scale - L[(b * nHeads + h) * T + i]);
                            float pb = Bf(p), dsb = Bf(p * ((float)dp - D));
                            for (int d = 0; d < headDim; d++)
                            {
                                dV[ko + d] += pb * (double)G[qo + d];
                                dK[ko + d] += scale * dsb * (double)Q[qo + d];
                                dQ[qo + d] += scale * dsb * (double)kc[j * headDim + d];
                            }
                        }
                    }
            }
        void Put(Tensor t, double[] x) { var sp = ((CpuTensor)t).Span; for (int i = 0; i < x.Length; i++) sp[i] = (float)x[i]; Round(t); }
        Put(dq, dQ); Put(dk, dK); Put(dv, dV);
    }

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
