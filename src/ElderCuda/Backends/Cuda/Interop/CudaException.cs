namespace ElderCuda.Backends.Cuda.Interop;

/// <summary>A failed CUDA driver, NVRTC or cuBLAS call: which function, the numeric code and its name.</summary>
public class CudaException : Exception
{
    public CudaException(string message, string function = "", int code = 0, string codeName = "", Exception? inner = null)
        : base(message, inner)
    {
        Function = function; Code = code; CodeName = codeName;
    }

    public string Function { get; }
    public int Code { get; }
    public string CodeName { get; }

    public const string NoDriverHint =
        "no CUDA driver was found (libcuda.so.1 could not be loaded); install the NVIDIA driver or run with --device cpu";
}

/// <summary>A device allocation that does not fit: says how much was asked and how much is free.</summary>
public sealed class CudaOutOfMemoryException : CudaException
{
    public CudaOutOfMemoryException(string message, long requested, long free)
        : base(message, "cuMemAlloc_v2", 2, "CUDA_ERROR_OUT_OF_MEMORY")
    {
        RequestedBytes = requested; FreeBytes = free;
    }
    public long RequestedBytes { get; }
    public long FreeBytes { get; }
}
