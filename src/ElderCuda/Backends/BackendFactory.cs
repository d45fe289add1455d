using ElderCuda.Backends.Cpu;
using ElderCuda.Backends.Cuda;
using ElderCuda.Tensors;

namespace ElderCuda.Backends;

/// <summary>Chooses the backend for a command: the GPU when one is present, else the CPU.</summary>
public static class BackendFactory
{
    /// <summary>What --device accepts, for help texts.</summary>
    public const string DeviceHelp = "auto (the first GPU when present, else the CPU), cpu, cuda, or cuda:N (GPU N as the driver numbers them)";

    /// <summary>
    /// Splits a --device value: "auto", "cpu", "cuda" (GPU 0) or "cuda:N". Throws an <see cref="ArgumentException"/>
    /// naming the accepted forms for anything else.
    /// </summary>
    public static (string kind, int ordinal) ParseDevice(string device)
    {
        switch (device)
        {
            case "auto" or "cpu" or "cuda": return (device, 0);
        }
        if (device.StartsWith("cuda:", StringComparison.Ordinal) &&
            int.TryParse(device.AsSpan(5), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n))
            return ("cuda", n);
        throw new ArgumentException($"unknown device '{device}': use {DeviceHelp}");
    }

    /// <param name="device">auto, cpu, cuda or cuda:N</param>
    /// <param name="fp32">CUDA only: float32 everywhere (parity mode) instead of bf16</param>
    public static IBackend Create(string device, bool fp32 = false)
    {
        var (kind, ordinal) = ParseDevice(device);
        var compute = fp32 ? DType.F32 : DType.BF16;
        switch (kind)
        {
            case "cpu": return new CpuBackend();
            case "cuda":
                if (!CudaBackend.IsAvailable(out var why))
                    throw new PlatformNotSupportedException($"no usable CUDA device: {why}");
                return new CudaBackend(compute, ordinal);
            default:   // auto
                return CudaBackend.IsAvailable(out _) ? new CudaBackend(compute) : new CpuBackend();
        }
    }
}
