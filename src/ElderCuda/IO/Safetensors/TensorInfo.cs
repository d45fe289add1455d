using ElderCuda.Tensors;

namespace ElderCuda.IO.Safetensors;

/// <summary>
/// One tensor entry of a safetensors header. <see cref="Offset"/> is relative to the start of the data
/// section (the byte after the header), as in the file's "data_offsets"; <see cref="Length"/> is in bytes.
/// </summary>
public sealed record TensorInfo(string Name, DType DType, int[] Shape, long Offset, long Length)
{
    /// <summary>Number of elements: the product of <see cref="Shape"/> (1 for a scalar).</summary>
    public long ElementCount => Length / DType.SizeOf();
}
