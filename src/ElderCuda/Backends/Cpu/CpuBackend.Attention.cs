using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cpu;

public sealed partial class CpuBackend
{
    // Causal attention, one (batch, kv-head) group per task so that GQA's shared dK/dV rows are
    // written by one thread. Scores are materialised per query row only (T floats).
    public void Attention(Tensor output, Tensor lse, Tensor q, Tensor k, Tensor v, int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        var o = F(output); var L = F(lse); var qs = F(q); var ks = F(k); var vs = F(v);
        int Wq = nHeads * headDim, Wk = nKvHeads * headDim, group = nHeads / nKvHeads;
        Parallel.For(0, B * nHeads, bh =>
        {
            int b = bh / nHeads, h = bh % nHeads, kh = h / group;
            var p = new float[T];
            for (int t = 0; t < T; t++)
            {
                var qr = new ReadOnlySpan<float>(qs, (b * T + t) * Wq + h * headDim, headDim);
                float max = float.NegativeInfinity;
                for (int j = 0; j <= t; j++)
                {
                    p[j] = scale * TensorPrimitives.Dot(qr, new ReadOnlySpan<float>(ks, (b * T + j) * Wk + kh * headDim, headDim));
                    if (p[j] > max) max = p[j];
                }
                double sum = 0;
                for (int j = 0; j <= t; j++) { p[j] = MathF.Exp(p[j] - max); sum += p[j]; }
                L[(b * nHeads + h) * T + t] = max + (float)Math.Log(sum);
                var orow = o.AsSpan((b * T + t) * Wq + h * headDim, headDim);
                orow.Clear();
                float inv = (float)(1.0 / sum);
                for (int j = 0; j <= t; j++)
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(vs, (b * T + j) * Wk + kh * headDim, headDim), p[j] * inv, orow, orow);
            }
        });
    }

    public void AttentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse,
        int B, int T, int nHeads, int nKvHeads, int headDim, float scale)
    {
        var dqs = F(dq); var dks = F(dk); var dvs = F(dv); var g = F(dOut); var qs = F(q); var ks = F(k); var vs = F(v); var o = F(output); var L = F(lse);
        int Wq = nHeads * headDim, Wk = nKvHeads * headDim, group = nHeads / nKvHeads;
        Array.Clear(dqs); Array.Clear(dks); Array.Clear(dvs);
        Parallel.For(0, B * nKvHeads, bk =>
        {
            int b = bk / nKvHeads, kh = bk % nKvHeads;
            var p = new float[T];
            for (int h = kh * group; h < (kh + 1) * group; h++)
            {
                for (int t = 0; t < T; t++)
                {
                    int qo = (b * T + t) * Wq + h * headDim;
                    var qr = new ReadOnlySpan<float>(qs, qo, headDim);
                    var gr = new ReadOnlySpan<float>(g, qo, headDim);
                    float l = L[(b * nHeads + h) * T + t];
                    float D = TensorPrimitives.Dot(gr, new ReadOnlySpan<float>(o, qo, headDim));
                    var dqr = dqs.AsSpan(qo, headDim);
                    for (int j = 0; j <= t; j++)
                    {
                        int ko = (b * T + j) * Wk + kh * headDim;
                        var kr = new ReadOnlySpan<float>(ks, ko, headDim);
                        float pj = MathF.Exp(scale * TensorPrimitives.Dot(qr, kr) - l);
                        var dvr = dvs.AsSpan(ko, headDim);
                        TensorPrimitives.MultiplyAdd(gr, pj, dvr, dvr);
                        float dp = TensorPrimitives.Dot(gr, new ReadOnlySpan<float>(vs, ko, headDim));
                        float ds = pj * (dp - D) * scale;
                        TensorPrimitives.MultiplyAdd(kr, ds, dqr, dqr);
                        var dkr = dks.AsSpan(ko, headDim);
                        TensorPrimitives.MultiplyAdd(qr, ds, dkr, dkr);
                    }
                }
            }
        });
    }
}
