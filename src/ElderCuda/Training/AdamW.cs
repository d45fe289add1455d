using ElderCuda.Backends;
using ElderCuda.Model;
using ElderCuda.Tensors;

namespace ElderCuda.Training;

/// <summary>
/// AdamW over a model's trainable parameters with the fused <see cref="IBackend.AdamW"/> op. A parameter
/// stored in F32 is its own master; anything else (bf16/f16 on CUDA) gets an fp32 master copy so that
/// small updates are not rounded away. Moments m, v are F32 on the backend.
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    sealed class Slot
    {
        public required Parameter P;
        public required Tensor M, V;
        public Tensor? Own;
        public bool OwnsMaster => Own is not null;
        /// <summary>An F32 parameter is its own master; read through P because WriteParameter replaces P.Value.</summary>
        public Tensor Master => Own ?? P.Value;
    }

    readonly IBackend _b;
    readonly List<Slot> _slots = new();
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.999f;
    public float Eps { get; init; } = 1e-8f;
    public float WeightDecay { get; init; } = 0f;
    /// <summary>Steps taken so far (the next step is Step + 1, for bias correction).</summary>
    public int StepCount { get; private set; }

    public AdamWOptimizer(IBackend backend, IEnumerable<Parameter> parameters)
    {
        _b = backend;
        foreach (var p in parameters.Where(p => p.Trainable))
        {
            Tensor? own = null;
            if (p.Value.DType != DType.F32)
            {
                own = _b.Alloc(DType.F32, p.Shape);
                _b.Copy(own, p.Value);
            }
            _slots.Add(new Slot { P = p, Own = own, M = _b.Alloc(DType.F32, p.Shape), V = _b.Alloc(DType.F32, p.Shape) });
        }
    }

    public IEnumerable<Parameter> Parameters => _slots.Select(s => s.P);

    /// <summary>One update of every parameter with a gradient.</summary>
    public void Step(float lr)
    {
        StepCount++;
        foreach (var s in _slots)
        {
            if (s.P.Grad is null) continue;
            _b.AdamW(s.P.Value, s.Master, s.P.Grad, s.M, s.V, lr, Beta1, Beta2, Eps, WeightDecay, StepCount);
        }
    }

    /// <summary>Host copies of masters and moments, keyed by parameter name, for a resumable checkpoint.</summary>
    public void SaveState(IDictionary<string, float[]> into)
    {
        foreach (var s in _slots)
        {
            into["opt.master." + s.P.Name] = Host(s.Master);
            into["opt.m." + s.P.Name] = Host(s.M);
            into["opt.v." + s.P.Name] = Host(s.V);
        }
        into["opt.step"] = [StepCount];
    }

    public void LoadState(IReadOnlyDictionary<string, float[]> from)
    {
        foreach (var s in _slots)
        {
            var master = from["opt.master." + s.P.Name];
            Upload(s.Master, master);
            if (s.OwnsMaster) _b.Copy(s.P.Value, s.Master);
            Upload(s.M, from["opt.m." + s.P.Name]);
            Upload(s.V, from["opt.v." + s.P.Name]);
        }
        StepCount = (int)from["opt.step"][0];
    }

    float[] Host(Tensor t)
    {
        var a = new float[t.Count];
        _b.ToHost(t, a);
        return a;
    }

    void Upload(Tensor dst, float[] data)
    {
        using var tmp = _b.FromHost(data, DType.F32, dst.Shape);
        _b.Copy(dst, tmp);
    }

    public void Dispose()
    {
        foreach (var s in _slots)
        {
            s.Own?.Dispose();
            s.M.Dispose();
            s.V.Dispose();
        }
        _slots.Clear();
    }
}

/// <summary>Adam on a handful of host scalars (the ELDeR gates): no weight decay, as in DESIGN.md §4 stage 1.</summary>
public sealed class HostAdam
{
    public double[] M, V;
    public int StepCount;
    public double Beta1 = 0.9, Beta2 = 0.999, Eps = 1e-8;

    public HostAdam(int n) { M = new double[n]; V = new double[n]; }

    /// <summary>x -= lr·m̂/(√v̂+ε) for the entries where mask is true.</summary>
    public void Step(float[] x, double[] grad, double lr, bool[]? mask = null)
    {
        StepCount++;
        double c1 = 1 - Math.Pow(Beta1, StepCount), c2 = 1 - Math.Pow(Beta2, StepCount);
        for (int i = 0; i < x.Length; i++)
        {
            if (mask is not null && !mask[i]) continue;
            M[i] = Beta1 * M[i] + (1 - Beta1) * grad[i];
            V[i] = Beta2 * V[i] + (1 - Beta2) * grad[i] * grad[i];
            x[i] -= (float)(lr * (M[i] / c1) / (Math.Sqrt(V[i] / c2) + Eps));
        }
    }
}
