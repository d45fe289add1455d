using System.Runtime.CompilerServices;
using ElderCuda.Backends.Cpu;

namespace ElderCuda.Tests;

static class TestSetup
{
    /// <summary>
    /// Every test runs with disposed CPU tensors poisoned (NaN) and never reused, so that code reading a tensor
    /// after its Dispose fails here instead of silently reading another tensor's data in production.
    /// </summary>
    [ModuleInitializer]
    internal static void PoisonFreedCpuTensors() => CpuArrayPool.PoisonFreed = true;

    /// <summary>
    /// ... and with tensors allocated uninitialized filled with NaN (CPU and CUDA), so that an op which reads or adds into
    /// an output it was handed uninitialized fails here.
    /// </summary>
    [ModuleInitializer]
    internal static void PoisonUninitializedTensors() => ElderCuda.Backends.BackendOptions.PoisonUninitialized = true;
}
