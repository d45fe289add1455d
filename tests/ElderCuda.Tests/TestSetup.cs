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
}
