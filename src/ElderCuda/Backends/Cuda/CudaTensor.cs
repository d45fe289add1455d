using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

/// <summary>
/// A tensor in device memory, owned through the backend's caching allocator. Dispose returns the block
/// to the cache; there is deliberately no finalizer (device memory is freed explicitly, never by the GC).
/// </summary>
public sealed class CudaTensor : Tensor
{
    readonly CudaAllocator _alloc;
    readonly long _bucket;
    ulong _ptr;

    internal CudaTensor(CudaAllocator alloc, DType dtype, int[] shape) : base(dtype, shape)
    {
        _alloc = alloc;
        _ptr = alloc.Allocate(Math.Max(Bytes, 1), out _bucket);
    }

    /// <summary>The device address (CUdeviceptr).</summary>
    public ulong Ptr => _ptr != 0 ? _ptr : throw new ObjectDisposedException(ToString(), "CUDA tensor used after Dispose");

    public bool IsDisposed => _ptr == 0;

    public override void Dispose()
    {
        if (_ptr == 0) return;
        _alloc.Release(_ptr, _bucket);
        _ptr = 0;
    }
}
