using ElderCuda.Backends.Cpu;
using ElderCuda.Backends.Cuda;
using ElderCuda.Tensors;

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
            case "cuda":
                if (!CudaBackend.IsAvailable(out var why))
                    throw new PlatformNotSupportedException($"no usable CUDA device: {why}");
                return new CudaBackend(fp32 ? DType.F32 : DType.BF16);
            case "auto":
                return CudaBackend.IsAvailable(out _) ? new CudaBackend(fp32 ? DType.F32 : DType.BF16) : new CpuBackend();
            default: throw new ArgumentException($"unknown device '{device}' (auto, cpu, cuda)");
        }
    }
}
