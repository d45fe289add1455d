using System.Diagnostics;
using ElderCuda.Tensors;

namespace ElderCuda.Backends;

/// <summary>
/// Wraps a backend and accumulates wall time and call counts per op (synchronising after each op, so
/// GPU times are real). `eldr ppl --profile` and `eldr speed --profile` print the table; useful to see where time goes.
/// </summary>
public sealed class ProfilingBackend(IBackend inner) : IBackend
{
    readonly Dictionary<string, (long ticks, long calls)> _stats = new();
    public IBackend Inner => inner;
    public string Name => inner.Name;
    public DType ComputeType => inner.ComputeType;

    T Time<T>(string op, Func<T> f)
    {
        long t0 = Stopwatch.GetTimestamp();
        var r = f();
        Done(op, t0);
        return r;
    }

    void Done(string op, long t0)
    {
        inner.Synchronize();
        long dt = Stopwatch.GetTimestamp() - t0;
        var (ticks, calls) = _stats.GetValueOrDefault(op);
        _stats[op] = (ticks + dt, calls + 1);
    }

    /// <summary>Forgets the times so far (eldr speed profiles each model on its own).</summary>
    public void Reset() => _stats.Clear();

    void Time(string op, Action f) => Time(op, () => { f(); return 0; });

    public IEnumerable<(string Op, double Seconds, long Calls)> Report() =>
        _stats.OrderByDescending(kv => kv.Value.ticks).Select(kv => (kv.Key, kv.Value.ticks / (double)Stopwatch.Frequency, kv.Value.calls));

    public Tensor Alloc(DType dtype, params int[] shape) => Time("alloc", () => inner.Alloc(dtype, shape));
    public Tensor AllocUninitialized(DType dtype, params int[] shape) => Time("alloc", () => inner.AllocUninitialized(dtype, shape));
    // the copies take spans, which a lambda cannot capture: timed by hand
    public Tensor FromHost(ReadOnlySpan<float> data, DType dtype, params int[] shape) { long t0 = Stopwatch.GetTimestamp(); var r = inner.FromHost(data, dtype, shape); Done("from_host", t0); return r; }
    public Tensor FromHostInt(ReadOnlySpan<int> data, params int[] shape) { long t0 = Stopwatch.GetTimestamp(); var r = inner.FromHostInt(data, shape); Done("from_host", t0); return r; }
    public void CopyFromHost(Tensor dst, ReadOnlySpan<float> data) { long t0 = Stopwatch.GetTimestamp(); inner.CopyFromHost(dst, data); Done("from_host", t0); }
    public void ToHost(Tensor t, Span<float> dst) { long t0 = Stopwatch.GetTimestamp(); inner.ToHost(t, dst); Done("to_host", t0); }
    public void ToHostInt(Tensor t, Span<int> dst) { long t0 = Stopwatch.GetTimestamp(); inner.ToHostInt(t, dst); Done("to_host", t0); }
    public void Zero(Tensor t) => Time("zero", () => inner.Zero(t));
    public void Copy(Tensor dst, Tensor src) => Time("copy", () => inner.Copy(dst, src));
    public void Synchronize() => inner.Synchronize();
    public void Embedding(Tensor o, Tensor ids, Tensor table, Tensor? pos, int T, int off) => Time("embedding", () => inner.Embedding(o, ids, table, pos, T, off));
    public void EmbeddingBackward(Tensor dt, Tensor? dp, Tensor dOut, Tensor ids, int T, int off) => Time("embedding_bwd", () => inner.EmbeddingBackward(dt, dp, dOut, ids, T, off));
    public void Matmul(Tensor o, Tensor x, Tensor w, Tensor? b, bool acc = false) => Time("matmul", () => inner.Matmul(o, x, w, b, acc));
    public void MatmulBackward(Tensor? dx, Tensor? dw, Tensor? db, Tensor dOut, Tensor x, Tensor w, bool acc = false) => Time("matmul_bwd", () => inner.MatmulBackward(dx, dw, db, dOut, x, w, acc));
    public void RmsNorm(Tensor o, Tensor r, Tensor x, Tensor w, float eps) => Time("rmsnorm", () => inner.RmsNorm(o, r, x, w, eps));
    public void RmsNormBackward(Tensor dx, Tensor dw, Tensor dOut, Tensor x, Tensor w, Tensor r) => Time("rmsnorm_bwd", () => inner.RmsNormBackward(dx, dw, dOut, x, w, r));
    public void LayerNorm(Tensor o, Tensor m, Tensor r, Tensor x, Tensor w, Tensor b, float eps) => Time("layernorm", () => inner.LayerNorm(o, m, r, x, w, b, eps));
    public void LayerNormBackward(Tensor dx, Tensor dw, Tensor db, Tensor dOut, Tensor x, Tensor w, Tensor m, Tensor r) => Time("layernorm_bwd", () => inner.LayerNormBackward(dx, dw, db, dOut, x, w, m, r));
    public void Rope(Tensor x, Tensor cos, Tensor sin, int T, int h, int hd, int rot, bool inv) => Time(inv ? "rope_bwd" : "rope", () => inner.Rope(x, cos, sin, T, h, hd, rot, inv));
    public void Attention(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, int B, int T, int h, int kv, int hd, float s) => Time("attention", () => inner.Attention(o, lse, q, k, v, B, T, h, kv, hd, s));
    public void AttentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, int B, int T, int h, int kv, int hd, float s)
        => Time("attention_bwd", () => inner.AttentionBackward(dq, dk, dv, dOut, q, k, v, o, lse, B, T, h, kv, hd, s));
    public void AttentionCached(Tensor o, Tensor q, Tensor k, Tensor v, Tensor kc, Tensor vc, int B, int past, int T, int h, int kv, int hd, float s)
        => Time("attention_cached", () => inner.AttentionCached(o, q, k, v, kc, vc, B, past, T, h, kv, hd, s));
    public void SwiGlu(Tensor o, Tensor g, Tensor u) => Time("swiglu", () => inner.SwiGlu(o, g, u));
    public void SwiGluBackward(Tensor dg, Tensor du, Tensor dOut, Tensor g, Tensor u) => Time("swiglu_bwd", () => inner.SwiGluBackward(dg, du, dOut, g, u));
    public void Act(Activation k, Tensor o, Tensor x) => Time("act", () => inner.Act(k, o, x));
    public void ActBackward(Activation k, Tensor dx, Tensor dOut, Tensor x) => Time("act_bwd", () => inner.ActBackward(k, dx, dOut, x));
    public void Add(Tensor o, Tensor a, Tensor b) => Time("add", () => inner.Add(o, a, b));
    public void Axpy(Tensor y, float alpha, Tensor x) => Time("axpy", () => inner.Axpy(y, alpha, x));
    public void Scale(Tensor o, Tensor x, float s) => Time("scale", () => inner.Scale(o, x, s));
    public double Dot(Tensor a, Tensor b) => Time("dot", () => inner.Dot(a, b));
    public double DiffNorm(Tensor a, Tensor b, NormKind k) => Time("diffnorm", () => inner.DiffNorm(a, b, k));
    public void DiffNormBackward(Tensor dA, Tensor? dB, Tensor a, Tensor b, NormKind k, double n, float c) => Time("diffnorm_bwd", () => inner.DiffNormBackward(dA, dB, a, b, k, n, c));
    public void CrossEntropy(Tensor l, Tensor? dl, Tensor lg, Tensor t, float s) => Time("crossentropy", () => inner.CrossEntropy(l, dl, lg, t, s));
    public void CrossEntropyDistill(Tensor l, Tensor dl, Tensor lg, Tensor p, Tensor t, float s, float a, float T) => Time("crossentropy_distill", () => inner.CrossEntropyDistill(l, dl, lg, p, t, s, a, T));
    public void ArgMax(Tensor o, Tensor x) => Time("argmax", () => inner.ArgMax(o, x));
    public void AdamW(Tensor p, Tensor m0, Tensor g, Tensor m, Tensor v, float lr, float b1, float b2, float eps, float wd, int step) => Time("adamw", () => inner.AdamW(p, m0, g, m, v, lr, b1, b2, eps, wd, step));
    public void Dispose() => inner.Dispose();
}
