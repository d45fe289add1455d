using ElderCuda.Backends;
using ElderCuda.Model;
using ElderCuda.Tensors;

namespace ElderCuda.Pruning;

/// <summary>Small helpers every method shares: batching windows, CE on a window set, temporary skips, weight snapshots.</summary>
public static class PruneUtil
{
    /// <summary>Windows [from, from+count) as one batch of B rows.</summary>
    public static TokenBatch Batch(IReadOnlyList<int[]> windows, int from, int count)
    {
        int T = windows[from].Length;
        var ids = new int[count * T];
        for (int b = 0; b < count; b++) windows[from + b].CopyTo(ids, b * T);
        return new TokenBatch(ids, count, T);
    }

    public static TokenBatch Batch(IReadOnlyList<int[]> windows, IReadOnlyList<int> order, int from, int count)
    {
        int T = windows[order[from]].Length;
        var ids = new int[count * T];
        for (int b = 0; b < count; b++) windows[order[from + b]].CopyTo(ids, b * T);
        return new TokenBatch(ids, count, T);
    }

    /// <summary>(total NLL, predicted tokens) of the model as it stands over the windows, forward only.</summary>
    public static (double Nll, long Count) Nll(CausalLM m, IReadOnlyList<int[]> windows, int batch, CancellationToken ct = default)
    {
        double nll = 0; long n = 0;
        for (int i = 0; i < windows.Count; i += batch)
        {
            ct.ThrowIfCancellationRequested();
            int c = Math.Min(batch, windows.Count - i);
            var r = m.Step(Batch(windows, i, c), new StepOptions());
            nll += r.TotalNll;
            n += r.Predicted;
        }
        return (nll, n);
    }

    /// <summary>
    /// Perplexity as DESIGN.md §6: non-overlapping windows of seqLen over the token stream, partial last
    /// window dropped, ppl = exp(total NLL / predicted tokens).
    /// </summary>
    public static (double Ppl, double Nll, long Count, int Windows) Perplexity(CausalLM m, int[] tokens, int seqLen, int? maxWindows, int batch,
        Action<int, int>? progress = null, CancellationToken ct = default)
    {
        // the protocol lives in one place (Eval/Perplexity.cs, DESIGN.md §6)
        int total = Math.Min(tokens.Length / seqLen, maxWindows ?? int.MaxValue);
        var r = ElderCuda.Eval.Perplexity.Evaluate(m, tokens, seqLen, maxWindows, batch,
            progress is null ? null : new Reporter(f => progress((int)Math.Round(f * total), total)), ct);
        return (r.Perplexity, r.TotalNll, r.Predicted, r.Windows);
    }

    sealed class Reporter(Action<double> a) : IProgress<double> { public void Report(double v) => a(v); }

    /// <summary>Mean next-token CE over the windows.</summary>
    public static double MeanCE(CausalLM m, IReadOnlyList<int[]> windows, int batch, CancellationToken ct = default)
    {
        var (nll, n) = Nll(m, windows, batch, ct);
        return nll / Math.Max(1, n);
    }

    /// <summary>Run f with the given layers skipped and every gate at 1 (a pruned model has no gates), then restore.</summary>
    public static T WithRemoved<T>(CausalLM m, IEnumerable<int> layers, Func<T> f)
    {
        var skip = (bool[])m.Skip.Clone();
        var gates = (float[])m.Gates.Clone();
        try
        {
            Array.Fill(m.Gates, 1f);
            foreach (var l in layers) m.Skip[l] = true;
            return f();
        }
        finally
        {
            skip.CopyTo(m.Skip, 0);
            gates.CopyTo(m.Gates, 0);
        }
    }

    public static void ResetGates(CausalLM m)
    {
        Array.Fill(m.Gates, 1f);
        m.GateForm = GateForm.Output;
    }

    /// <summary>Host copies of every parameter (to restore after a trial, or keep the best trial).</summary>
    public static Dictionary<string, float[]> Snapshot(CausalLM m, Func<Parameter, bool>? which = null)
    {
        var d = new Dictionary<string, float[]>();
        foreach (var p in m.Parameters)
            if (which is null || which(p)) d[p.Name] = m.ReadParameter(p.Name);
        return d;
    }

    public static void Restore(CausalLM m, IReadOnlyDictionary<string, float[]> snap)
    {
        foreach (var (name, data) in snap) m.WriteParameter(name, data);
    }

    /// <summary>Round every parameter to the dtype its file stored it in, as a saved checkpoint would be (PRUNING.md evaluates bf16-rounded models).</summary>
    public static void RoundToFileDType(CausalLM m)
    {
        foreach (var p in m.Parameters)
        {
            if (p.FileDType == DType.F32) continue;
            var a = m.ReadParameter(p.Name);
            var bytes = DTypes.FromFloat32(p.FileDType, a);
            DTypes.ToFloat32(p.FileDType, bytes, a);
            m.WriteParameter(p.Name, a);
        }
    }

    /// <summary>Copy a backend tensor to a host buffer (resized as needed).</summary>
    public static float[] ToHost(IBackend b, Tensor t, ref float[]? buf)
    {
        if (buf is null || buf.Length != t.Count) buf = new float[t.Count];
        b.ToHost(t, buf);
        return buf;
    }

    /// <summary>Cosine of rows a[n], b[n] of [rows, d] matrices, in float64.</summary>
    public static double RowCos(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.Length; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
        double den = Math.Sqrt(aa) * Math.Sqrt(bb);
        return den == 0 ? 1.0 : ab / den;
    }

    /// <summary>Mean over rows of cos(a_row, b_row) for two [N·d] buffers.</summary>
    public static double MeanRowCos(float[] a, float[] b, int d)
    {
        int n = a.Length / d;
        double s = 0;
        for (int r = 0; r < n; r++) s += RowCos(a.AsSpan(r * d, d), b.AsSpan(r * d, d));
        return s / n;
    }

    /// <summary>Final hidden states (after the final norm) for each batch of the windows.</summary>
    public static List<float[]> FinalHidden(CausalLM m, IReadOnlyList<int[]> windows, int batch)
    {
        var outs = new List<float[]>();
        for (int i = 0; i < windows.Count; i += batch)
        {
            int c = Math.Min(batch, windows.Count - i);
            outs.Add(m.Step(Batch(windows, i, c), new StepOptions { KeepFinalHidden = true }).FinalHidden!);
        }
        return outs;
    }

    /// <summary>Mean per-token cos between two lists of final hidden states.</summary>
    public static double MeanCos(List<float[]> a, List<float[]> b, int d)
    {
        double s = 0; long n = 0;
        for (int i = 0; i < a.Count; i++)
        {
            int rows = a[i].Length / d;
            s += MeanRowCos(a[i], b[i], d) * rows;
            n += rows;
        }
        return s / n;
    }

    /// <summary>k = ratio × L rounded, or an explicit count.</summary>
    public static int LayersToRemove(int numLayers, double? ratio, int? count)
    {
        int k = count ?? (int)Math.Round((ratio ?? 0.25) * numLayers, MidpointRounding.AwayFromZero);
        if (k < 1 || k >= numLayers) throw new ArgumentException($"cannot remove {k} of {numLayers} layers");
        return k;
    }

    /// <summary>A permutation of 0..n−1 from a seed (deterministic across runs and resumes).</summary>
    public static int[] Shuffle(int n, int seed)
    {
        var a = Enumerable.Range(0, n).ToArray();
        new Random(seed).Shuffle(a);
        return a;
    }
}
