using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Numerics;
using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cpu;

public sealed partial class CpuBackend
{
    const float GeluC = 0.7978845608028654f; // sqrt(2/π)

    static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    public void SwiGlu(Tensor output, Tensor gate, Tensor up)
    {
        var o = F(output); var g = F(gate); var u = F(up); int C = gate.Cols;
        Parallel.For(0, gate.Rows, n =>
        {
            var gs = new ReadOnlySpan<float>(g, n * C, C); var os = o.AsSpan(n * C, C);
            TensorPrimitives.Sigmoid(gs, os);                                  // σ(g)
            TensorPrimitives.Multiply(os, gs, os);                             // silu(g) = g·σ(g)
            TensorPrimitives.Multiply(os, new ReadOnlySpan<float>(u, n * C, C), os);
        });
    }

    public void SwiGluBackward(Tensor dGate, Tensor dUp, Tensor dOut, Tensor gate, Tensor up)
    {
        var dg = F(dGate); var du = F(dUp); var d = F(dOut); var g = F(gate); var u = F(up); int C = gate.Cols;
        Parallel.For(0, gate.Rows, () => new float[C], (n, _, s) =>
        {
            var gs = new ReadOnlySpan<float>(g, n * C, C); var ds = new ReadOnlySpan<float>(d, n * C, C);
            var dus = du.AsSpan(n * C, C); var dgs = dg.AsSpan(n * C, C);
            TensorPrimitives.Sigmoid(gs, s);                                   // s = σ(g)
            TensorPrimitives.Multiply(gs, s, dus);
            TensorPrimitives.Multiply(ds, dus, dus);                           // dUp = dOut·g·s
            TensorPrimitives.Multiply(ds, new ReadOnlySpan<float>(u, n * C, C), dgs);
            TensorPrimitives.Multiply(dgs, s, dgs);                            // dOut·u·s
            TensorPrimitives.Subtract(1f, s, s);
            TensorPrimitives.Multiply(gs, s, s);
            TensorPrimitives.Add(s, 1f, s);                                    // 1 + g·(1 − s)
            TensorPrimitives.Multiply(dgs, s, dgs);
            return s;
        }, _ => { });
    }

    public void Act(Activation kind, Tensor output, Tensor x)
    {
        var o = F(output); var xs = F(x);
        Parallel.For(0, x.Rows, n =>
        {
            int C = x.Cols;
            for (int i = n * C; i < (n + 1) * C; i++)
            {
                float v = xs[i];
                o[i] = kind switch
                {
                    Activation.Relu => v > 0 ? v : 0,
                    Activation.Silu => v * Sigmoid(v),
                    _ => 0.5f * v * (1f + MathF.Tanh(GeluC * (v + 0.044715f * v * v * v))),
                };
            }
        });
    }

    public void ActBackward(Activation kind, Tensor dx, Tensor dOut, Tensor x)
    {
        var d = F(dx); var g = F(dOut); var xs = F(x);
        Parallel.For(0, x.Rows, n =>
        {
            int C = x.Cols;
            for (int i = n * C; i < (n + 1) * C; i++)
            {
                float v = xs[i];
                float dv;
                switch (kind)
                {
                    case Activation.Relu: dv = v > 0 ? 1 : 0; break;
                    case Activation.Silu: { float s = Sigmoid(v); dv = s * (1 + v * (1 - s)); break; }
                    default:
                    {
                        float t = MathF.Tanh(GeluC * (v + 0.044715f * v * v * v));
                        dv = 0.5f * (1 + t) + 0.5f * v * (1 - t * t) * GeluC * (1 + 3 * 0.044715f * v * v);
                        break;
                    }
                }
                d[i] = g[i] * dv;
            }
        });
    }

    public void Add(Tensor output, Tensor a, Tensor b) => TensorPrimitives.Add(F(a), F(b), F(output));
    public void Axpy(Tensor y, float alpha, Tensor x) { var ys = F(y); TensorPrimitives.MultiplyAdd(F(x), alpha, ys, ys); }
    public void Scale(Tensor output, Tensor x, float s) => TensorPrimitives.Multiply(F(x), s, F(output));

    public double Dot(Tensor a, Tensor b)
    {
        var x = F(a); var y = F(b); double s = 0;
        for (int i = 0; i < x.Length; i++) s += (double)x[i] * y[i];
        return s;
    }

    public double DiffNorm(Tensor a, Tensor b, NormKind kind)
    {
        var x = F(a); var y = F(b); double s = 0;
        for (int i = 0; i < x.Length; i++) { double d = (double)x[i] - y[i]; s += kind == NormKind.L1 ? Math.Abs(d) : d * d; }
        return kind == NormKind.L1 ? s : Math.Sqrt(s);
    }

    public void DiffNormBackward(Tensor dA, Tensor? dB, Tensor a, Tensor b, NormKind kind, double norm, float coef)
    {
        var da = F(dA); var db = dB is null ? null : F(dB); var x = F(a); var y = F(b);
        double k = kind == NormKind.L2 ? (norm > 0 ? coef / norm : 0) : coef;
        for (int i = 0; i < x.Length; i++)
        {
            double d = (double)x[i] - y[i];
            float gi = (float)(kind == NormKind.L2 ? k * d : k * Math.Sign(d));
            da[i] += gi;
            if (db is not null) db[i] -= gi;
        }
    }

    public void CrossEntropy(Tensor losses, Tensor? dLogits, Tensor logits, Tensor targets, float gradScale)
    {
        var ls = F(losses); var lg = F(logits); var tg = I(targets); var dl = dLogits is null ? null : F(dLogits);
        int V = logits.Cols;
        Parallel.For(0, logits.Rows, n =>
        {
            var row = new ReadOnlySpan<float>(lg, n * V, V);
            int t = tg[n];
            if (t < 0)
            {
                ls[n] = 0;
                if (dl is not null) dl.AsSpan(n * V, V).Clear();
                return;
            }
            if (t >= V) throw new ArgumentOutOfRangeException(nameof(targets), $"target {t} outside the vocabulary of {V}");
            float max = TensorPrimitives.Max(row);
            double sum = 0; for (int i = 0; i < V; i++) sum += Math.Exp(row[i] - max);
            double lse = max + Math.Log(sum);
            ls[n] = (float)(lse - row[t]);
            if (dl is null) return;
            var drow = dl.AsSpan(n * V, V);
            for (int i = 0; i < V; i++) drow[i] = (float)(gradScale * Math.Exp(row[i] - lse));
            drow[t] -= gradScale;
        });
    }

    public void CrossEntropyDistill(Tensor losses, Tensor dLogits, Tensor logits, Tensor teacher, Tensor targets, float gradScale, float alpha, float temperature)
    {
        if (!(temperature > 0f)) throw new ArgumentException($"CrossEntropyDistill: temperature must be > 0 (got {temperature})");
        var ls = F(losses); var lg = F(logits); var tl = F(teacher); var tg = I(targets); var dl = F(dLogits);
        int V = logits.Cols;
        if (teacher.Count != logits.Count) throw new ArgumentException($"CrossEntropyDistill: teacher logits {teacher} for logits {logits}");
        double invT = 1.0 / temperature, hard = (double)gradScale * (1 - alpha), kd = (double)gradScale * alpha * temperature;
        Parallel.For(0, logits.Rows, n =>
        {
            int t = tg[n];
            var drow = dl.AsSpan(n * V, V);
            if (t < 0) { ls[n] = 0; drow.Clear(); return; }
            if (t >= V) throw new ArgumentOutOfRangeException(nameof(targets), $"target {t} outside the vocabulary of {V}");
            var row = new ReadOnlySpan<float>(lg, n * V, V);
            var trow = new ReadOnlySpan<float>(tl, n * V, V);
            float max = TensorPrimitives.Max(row), tmax = TensorPrimitives.Max(trow);
            double s1 = 0, sT = 0, sP = 0;
            for (int i = 0; i < V; i++)
            {
                double z = row[i] - max;
                s1 += Math.Exp(z); sT += Math.Exp(z * invT); sP += Math.Exp((trow[i] - tmax) * invT);
            }
            double lse = max + Math.Log(s1);
            ls[n] = (float)(lse - row[t]);
            // row and drow may be the same memory: each element is read before it is written
            for (int i = 0; i < V; i++)
            {
                double z = row[i], q = Math.Exp(z - lse), qT = Math.Exp((z - max) * invT) / sT, p = Math.Exp((trow[i] - tmax) * invT) / sP;
                drow[i] = (float)(hard * (q - (i == t ? 1 : 0)) + kd * (qT - p));
            }
        });
    }

    public void ArgMax(Tensor output, Tensor x)
    {
        var o = C(output).I ?? throw new ArgumentException($"ArgMax: output {output} must be I32");
        var xs = F(x);
        int V = x.Cols, N = x.Rows;
        if (V < 1 || output.Count != N) throw new ArgumentException($"ArgMax: output {output} does not hold one index per row of {x}");
        for (int n = 0; n < N; n++) o[n] = TensorPrimitives.IndexOfMax(xs.AsSpan(n * V, V));
    }

    /// <summary>
    /// The float32 arithmetic of kernels/adamw.cu, a vector at a time, in blocks over all cores (the host-offloaded
    /// optimiser runs this on every trained value each step: 6.7 B at Llama-2-7B's size).
    /// </summary>
    public void AdamW(Tensor param, Tensor master, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
    {
        var p = F(master); var g = F(grad); var ms = F(m); var vs = F(v); var outp = F(param);
        long n = master.Count;
        // grad may be longer: the host-offloaded optimiser passes one scratch tensor sized for its largest parameter
        if (grad.Count < n || m.Count != n || v.Count != n || param.Count != n)
            throw new ArgumentException($"AdamW: master {master}, m {m}, v {v} and param {param} must have the same count, and grad {grad} at least that");
        float decay = 1f - lr * weightDecay, stepSize = lr / (1f - MathF.Pow(beta1, step)), sbc2 = MathF.Sqrt(1f - MathF.Pow(beta2, step));
        float c1 = 1f - beta1, c2 = 1f - beta2;
        bool copyOut = !ReferenceEquals(outp, p);
        const int Block = 1 << 16;
        Parallel.For(0, (int)((n + Block - 1) / Block), blk =>
        {
            int start = blk * Block, end = (int)Math.Min(n, start + (long)Block), i = start;
            if (Vector.IsHardwareAccelerated)
            {
                int W = Vector<float>.Count;
                Vector<float> vDecay = new(decay), vStep = new(stepSize), vB1 = new(beta1), vC1 = new(c1), vB2 = new(beta2), vC2 = new(c2), vS = new(sbc2), vEps = new(eps);
                for (; i + W <= end; i += W)
                {
                    var gi = new Vector<float>(g, i);
                    var mi = vB1 * new Vector<float>(ms, i) + vC1 * gi;
                    var vi = vB2 * new Vector<float>(vs, i) + vC2 * gi * gi;
                    var pi = new Vector<float>(p, i) * vDecay - vStep * mi / (Vector.SquareRoot(vi) / vS + vEps);
                    mi.CopyTo(ms, i); vi.CopyTo(vs, i); pi.CopyTo(p, i);
                }
            }
            for (; i < end; i++)
            {
                float gi = g[i];
                float mi = beta1 * ms[i] + c1 * gi, vi = beta2 * vs[i] + c2 * gi * gi;
                p[i] = p[i] * decay - stepSize * mi / (MathF.Sqrt(vi) / sbc2 + eps);
                ms[i] = mi; vs[i] = vi;
            }
            if (copyOut) Array.Copy(p, start, outp, start, end - start);
        });
    }
}
