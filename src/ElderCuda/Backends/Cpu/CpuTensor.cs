using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cpu;

/// <summary>Host storage: float32 for every floating dtype (the CPU backend computes in fp32), int32 for ids.</summary>
public sealed class CpuTensor : Tensor
{
    internal CpuTensor(DType dtype, int[] shape) : base(dtype, shape)
    {
        if (dtype is DType.I32 or DType.I64) I = new int[Count];
        else F = CpuArrayPool.Rent(checked((int)Count));
    }

    internal float[]? F { get; }
    internal int[]? I { get; }

    public Span<float> Span => F ?? throw new InvalidOperationException($"{this} is an integer tensor");
    public Span<int> Ints => I ?? throw new InvalidOperationException($"{this} is a float tensor");

    int _disposed;

    /// <summary>Hands the float storage back to <see cref="CpuArrayPool"/> (once); the tensor must not be used after.</summary>
    public override void Dispose()
    {
        if (F is not null && Interlocked.Exchange(ref _disposed, 1) == 0) CpuArrayPool.Return(F);
    }
}
