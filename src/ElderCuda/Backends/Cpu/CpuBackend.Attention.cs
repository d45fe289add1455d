using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cpu;

public sealed partial class CpuBackend
{
    // Causal attention, one (batch, kv-head) group per task so that GQA's shared dK/dV rows are
    // written by one thread. Scores are materialised per query row only (T floats).
    public unsafe void Attention(Tensor output, Tensor lse, Tensor q, Tensor k, Tensor v, int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        var o = F(output); var L = F(lse); var qs = F(q); var ks = F(k); var vs = F(v);
        int Wq = nHeads * headDim, Wk = nKvHeads * headDim, group = nHeads / nKvHeads;
        Parallel.For(0, B * nHeads, bh =>
        {
            int b = bh / nHeads, h = bh % nHeads, kh = h / group;
            var p = new float[T];
            fixed (float* qp = qs, kp = ks, vp = vs, op = o)
            for (int t = 0; t < T; t++)
            {
                float* qr = qp + (long)(b * T + t) * Wq + h * headDim;
                float max = float.NegativeInfinity;
                for (int j = 0; j <= t; j++)
                {
                    p[j] = scale * CpuKernels.Dot(qr, kp + (long)(b * T + j) * Wk + kh * headDim, headDim);
                    if (p[j] > max) max = p[j];
                }
                double sum = 0;
                for (int j = 0; j <= t; j++) { p[j] = MathF.Exp(p[j] - max); sum += p[j]; }
                L[(b * nHeads + h) * T + t] = max + (float)Math.Log(sum);
                float* orow = op + (long)(b * T + t) * Wq + h * headDim;
                new Span<float>(orow, headDim).Clear();
                float inv = (float)(1.0 / sum);
                for (int j = 0; j <= t; j++)
                    CpuKernels.Axpy(orow, p[j] * inv, vp + (long)(b * T + j) * Wk + kh * headDim, headDim);
            }
        });
    }

    public unsafe void AttentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse,
        int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        var dqs = F(dq); var dks = F(dk); var dvs = F(dv); var g = F(dOut); var qs = F(q); var ks = F(k); var vs = F(v); var o = F(output); var L = F(lse);
        int Wq = nHeads * headDim, Wk = nKvHeads * headDim, group = nHeads / nKvHeads;
        Array.Clear(dqs); Array.Clear(dks); Array.Clear(dvs);
        Parallel.For(0, B * nKvHeads, bk =>
        {
            int b = bk / nKvHeads, kh = bk % nKvHeads;
            var p = new float[T];
            fixed (float* qp = qs, kp = ks, vp = vs, op = o, gp = g, dqp = dqs, dkp = dks, dvp = dvs)
            for (int h = kh * group; h < (kh + 1) * group; h++)
            {
                for (int t = 0; t < T; t++)
                {
                    long qo = (long)(b * T + t) * Wq + h * headDim;
                    float* qr = qp + qo, gr = gp + qo, dqr = dqp + qo;
                    float l = L[(b * nHeads + h) * T + t];
                    float D = CpuKernels.Dot(gr, op + qo, headDim);
                    for (int j = 0; j <= t; j++)
                    {
                        long ko = (long)(b * T + j) * Wk + kh * headDim;
                        float pj = MathF.Exp(scale * CpuKernels.Dot(qr, kp + ko, headDim) - l);
                        CpuKernels.Axpy(dvp + ko, pj, gr, headDim);
                        float dp = CpuKernels.Dot(gr, vp + ko, headDim);
                        float ds = pj * (dp - D) * scale;
                        CpuKernels.Axpy(dqr, ds, kp + ko, headDim);
                        CpuKernels.Axpy(dkp + ko, ds, qr, headDim);
                    }
                }
            }
        });
    }
}
