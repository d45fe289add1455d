using ElderCuda.Model;
using ElderCuda.Pruning;
using ElderCuda.Tensors;

namespace ElderCuda.Training;

/// <summary>
/// The dense teacher of stage 2 `distill`: its logits for a batch of training windows, in one F32 buffer on the
/// backend reused from step to step, for <see cref="StepOptions.TeacherLogits"/>. The fused loss op turns them into
/// softmax(logits/T) itself, so on a GPU nothing goes through the host unless the cache is on. The cache keeps
/// every window's logits in host memory after its first forward pass when all of them fit in
/// <paramref name="cacheBytes"/> (4·windows·T·V bytes); later epochs then upload them instead of running the
/// teacher. Logits do not depend on the temperature.
/// </summary>
internal sealed class DistillTeacher : IDisposable
{
    readonly CausalLM _teacher;
    readonly float[]?[]? _cache;
    Tensor? _logits;
    float[]? _host;

    public DistillTeacher(CausalLM teacher, IReadOnlyList<int[]> windows, long cacheBytes)
    {
        _teacher = teacher;
        if (4L * windows.Sum(w => (long)w.Length) * teacher.Config.VocabSize <= cacheBytes) _cache = new float[windows.Count][];
    }

    /// <summary>The teacher's logits [count·T, V] for windows order[from..from+count). Valid until the next call.</summary>
    public Tensor Logits(IReadOnlyList<int[]> windows, IReadOnlyList<int> order, int from, int count)
    {
        var be = _teacher.Backend;
        int T = windows[order[from]].Length, V = _teacher.Config.VocabSize;
        long rowLen = (long)T * V, total = count * rowLen;
        if (_logits is null || _logits.Count != total)
        {
            _logits?.Dispose();
            _logits = be.Alloc(DType.F32, count * T, V);
        }
        if (_cache is not null && Enumerable.Range(from, count).All(i => _cache[order[i]] is not null))
        {
            var host = HostBuffer(total);
            for (int b = 0; b < count; b++) _cache[order[from + b]]!.CopyTo(host, b * rowLen);
            be.CopyFromHost(_logits, host);
            return _logits;
        }
        _teacher.Step(PruneUtil.Batch(windows, order, from, count), new StepOptions { LogitsInto = _logits });
        if (_cache is not null)
        {
            var host = HostBuffer(total);
            be.ToHost(_logits, host);
            for (int b = 0; b < count; b++) _cache[order[from + b]] = host.AsSpan((int)(b * rowLen), (int)rowLen).ToArray();
        }
        return _logits;
    }

    float[] HostBuffer(long n) => _host?.Length == n ? _host : _host = new float[n];

    public void Dispose() { _logits?.Dispose(); _logits = null; }
}
