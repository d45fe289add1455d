using System.Diagnostics;
using ElderCuda.Backends;
using ElderCuda.Model;
using ElderCuda.Tensors;

namespace ElderCuda.Training;

/// <summary>
/// AdamW over a model's trainable parameters with the fused <see cref="IBackend.AdamW"/> op. A parameter
/// stored in F32 is its own master; anything else (bf16/f16 on CUDA) gets an fp32 master copy so that
/// small updates are not rounded away. Moments m, v are F32 on the backend.
///
/// Host offload (the 7B memory plan, bench/RESULTS.md): when the fp32 master and moments (12 bytes per
/// parameter) would not fit in the device's free memory, they live in host memory instead. Each step
/// then downloads the fp32 gradient, runs the same AdamW op on the host (the CPU backend's), and
/// uploads the updated weights in the parameter's dtype. The device keeps only weights and gradients.
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    sealed class Slot
    {
        public required Parameter P;
        public required Tensor M, V;
        public Tensor? Own;
        /// <summary>Host offload: master, m, v live on the host backend.</summary>
        public bool OnHost;
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

    readonly Backends.Cpu.CpuBackend _host = new();
    Tensor? _gradScratch;

    /// <summary>Whether master weights and moments live in host memory (see the class summary).</summary>
    public bool OffloadedToHost { get; }

    /// <param name="offloadToHost">null: decide by free device memory (CUDA only); true/false: force.</param>
    public AdamWOptimizer(IBackend backend, IEnumerable<Parameter> parameters, bool? offloadToHost = null)
    {
        _b = backend;
        var trainable = parameters.Where(p => p.Trainable).ToList();
        OffloadedToHost = offloadToHost ?? NeedsOffload(backend, trainable);
        foreach (var p in trainable)
        {
            if (OffloadedToHost)
            {
                var master = _host.Alloc(DType.F32, p.Shape);
                _b.ToHost(p.Value, ((Backends.Cpu.CpuTensor)master).Span);
                _slots.Add(new Slot { P = p, Own = master, OnHost = true, M = _host.Alloc(DType.F32, p.Shape), V = _host.Alloc(DType.F32, p.Shape) });
                continue;
            }
            Tensor? own = null;
            if (p.Value.DType != DType.F32)
            {
                own = _b.Alloc(DType.F32, p.Shape);
                _b.Copy(own, p.Value);
            }
            _slots.Add(new Slot { P = p, Own = own, M = _b.Alloc(DType.F32, p.Shape), V = _b.Alloc(DType.F32, p.Shape) });
        }
        if (OffloadedToHost && trainable.Count > 0)
            _gradScratch = _host.Alloc(DType.F32, (int)trainable.Max(p => p.Value.Count));
    }

    /// <summary>Offload when master + m + v (12 bytes per trained element) exceed 80% of free device memory.</summary>
    static bool NeedsOffload(IBackend backend, List<Parameter> trainable)
    {
        if (backend is not Backends.Cuda.CudaBackend cuda) return false;
        long need = trainable.Sum(p => p.Value.Count) * 12L;
        var (free, _) = cuda.FreeAndTotalBytes();
        return need > 0.8 * free;
    }

    public IEnumerable<Parameter> Parameters => _slots.Select(s => s.P);

    /// <summary>One update of every parameter with a gradient.</summary>
    public void Step(float lr)
    {
        StepCount++;
        foreach (var s in _slots)
        {
            if (s.P.Grad is null) continue;
            if (!s.OnHost)
            {
                _b.AdamW(s.P.Value, s.Master, s.P.Grad, s.M, s.V, lr, Beta1, Beta2, Eps, WeightDecay, StepCount);
                continue;
            }
            // host offload: gradient down, the same fused op on the host, weights up
            var g = (Backends.Cpu.CpuTensor)_gradScratch!;
            long t0 = Stopwatch.GetTimestamp();
            _b.ToHost(s.P.Grad, g.Span[..(int)s.P.Grad.Count]);
            long t1 = Stopwatch.GetTimestamp();
            _host.AdamW(s.Master, s.Master, g, s.M, s.V, lr, Beta1, Beta2, Eps, WeightDecay, StepCount);
            long t2 = Stopwatch.GetTimestamp();
            _b.CopyFromHost(s.P.Value, ((Backends.Cpu.CpuTensor)s.Master).Span);
            long t3 = Stopwatch.GetTimestamp();
            HostTimes = new(HostTimes.Download + Sec(t1 - t0), HostTimes.Update + Sec(t2 - t1), HostTimes.Upload + Sec(t3 - t2));
        }
    }

    static double Sec(long ticks) => ticks / (double)Stopwatch.Frequency;

    /// <summary>Seconds spent so far in the host-offloaded steps: gradients down, AdamW on the host, weights up.</summary>
    public readonly record struct OffloadTimes(double Download, double Update, double Upload)
    {
        public double Total => Download + Update + Upload;
        public static OffloadTimes operator -(OffloadTimes a, OffloadTimes b) => new(a.Download - b.Download, a.Update - b.Update, a.Upload - b.Upload);
    }

    /// <summary>Where the host-offloaded steps spent their time, summed over all steps (zero without offload).</summary>
    public OffloadTimes HostTimes { get; private set; }

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
            if (s.OnHost) _b.CopyFromHost(s.P.Value, ((Backends.Cpu.CpuTensor)s.Master).Span);
            else if (s.OwnsMaster) _b.Copy(s.P.Value, s.Master);
            Upload(s.M, from["opt.m." + s.P.Name]);
            Upload(s.V, from["opt.v." + s.P.Name]);
        }
        StepCount = (int)from["opt.step"][0];
    }

    float[] Host(Tensor t)
    {
        var a = new float[t.Count];
        if (t is Backends.Cpu.CpuTensor c && _b is not Backends.Cpu.CpuBackend) c.Span.CopyTo(a); else _b.ToHost(t, a);
        return a;
    }

    void Upload(Tensor dst, float[] data)
    {
        if (dst is Backends.Cpu.CpuTensor c && _b is not Backends.Cpu.CpuBackend) { data.CopyTo(c.Span); return; }
        _b.CopyFromHost(dst, data);
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
