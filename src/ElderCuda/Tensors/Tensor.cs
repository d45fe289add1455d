namespace ElderCuda.Tensors;

/// <summary>
/// A dense, row-major tensor whose storage belongs to one backend (host memory for the CPU backend,
/// device memory for CUDA). The owner disposes it explicitly; no finalizer frees device memory.
/// Activations are viewed as 2-D [Rows, Cols], Rows = product of all but the last dimension.
/// </summary>
public abstract class Tensor : IDisposable
{
    protected Tensor(DType dtype, int[] shape)
    {
        DType = dtype;
        Shape = (int[])shape.Clone();
        long n = 1;
        foreach (var s in shape)
        {
            if (s < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(",", shape)}]");
            n *= s;
        }
        Count = n;
    }

    public DType DType { get; }
    public int[] Shape { get; }
    public long Count { get; }
    public int Cols => Shape.Length == 0 ? 1 : Shape[^1];
    public int Rows => Cols == 0 ? 0 : (int)(Count / Cols);
    public long Bytes => Count * DType.SizeOf();
    public string ShapeString => "[" + string.Join(",", Shape) + "]";

    public abstract void Dispose();

    public override string ToString() => $"{DType}{ShapeString}";
}
