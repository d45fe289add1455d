using System.Diagnostics;
using ElderCuda.Backends;
using ElderCuda.Backends.Cuda;

namespace ElderCuda.Pruning;

/// <summary>
/// Time and peak memory of one stage of a run, for report.json's <c>timings_seconds</c> and
/// <c>peak_memory_bytes</c>: the device peak from the CUDA caching allocator (reset when the stage starts;
/// absent on the CPU backend) and the process's peak host working set so far (it never resets).
/// </summary>
public sealed class StageMeter : IDisposable
{
    readonly PruneReport _report;
    readonly string _stage;
    readonly CudaAllocator? _alloc;
    readonly Stopwatch _sw = Stopwatch.StartNew();
    readonly Action<string>? _log;

    public StageMeter(PruneReport report, IBackend backend, string stage, Action<string>? log = null)
    {
        _report = report; _stage = stage; _log = log;
        _alloc = Unwrap(backend) is CudaBackend cb ? cb.Allocator : null;
        _alloc?.ResetPeak();
    }

    static IBackend Unwrap(IBackend b) => b is ProfilingBackend p ? p.Inner : b;

    public void Dispose()
    {
        _report.TimingsSeconds[_stage] = _sw.Elapsed.TotalSeconds;
        if (_alloc is not null) _report.PeakMemoryBytes[$"device_{_stage}"] = _alloc.PeakBytes;
        using var proc = Process.GetCurrentProcess();
        _report.PeakMemoryBytes[$"host_after_{_stage}"] = proc.PeakWorkingSet64;
        static string G(long b) => $"{b / (double)(1L << 30):F2} GiB";
        _log?.Invoke($"{_stage}: {_sw.Elapsed.TotalSeconds:F1} s"
            + (_alloc is null ? "" : $", device peak {G(_alloc.PeakBytes)}") + $", host peak so far {G(proc.PeakWorkingSet64)}");
    }
}
