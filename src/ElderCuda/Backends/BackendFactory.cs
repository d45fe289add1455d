using ElderCuda.Backends.Cpu;

namespace ElderCuda.Backends;

/// <summary>Chooses the backend for a command: the GPU when one is present, else the CPU.</summary>
public static class BackendFactory
{
    /// <param name="device">auto, cpu or cuda</param>
    /// <param name="fp32">CUDA only: float32 everywhere (parity mode) instead of bf16</param>
    public static IBackend Create(string device, bool fp32 = false)
    {
        switch (device)
        {
            case "cpu": return new CpuBackend();
            case "cuda": return CreateCuda(fp32, required: true)!;
            case "auto": return CreateCuda(fp32, required: false) ?? new CpuBackend();
            default: throw new ArgumentException($"unknown device '{device}' (auto, cpu, cuda)");
        }
    }

    static IBackend? CreateCuda(bool fp32, bool required)
    {
        if (required) throw new PlatformNotSupportedException("this build has no CUDA backend; use --device cpu");
        return null;
    }
}
