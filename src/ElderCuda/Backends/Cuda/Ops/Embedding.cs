using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/embedding.cu
public sealed partial class CudaBackend
{
    public void Embedding(Tensor output, Tensor ids, Tensor table, Tensor? positions, int T, int posOffset)
    {
        Need(ids, DType.I32, "Embedding", "ids");
        long N = ids.Count; int C = table.Cols;
        if (output.Count != N * C) throw new ArgumentException($"Embedding: output {output} is not [{N}, {C}]");
        var temps = new List<Tensor>();
        var d = output.DType;
        var tb = As(table, d, temps);
        var pos = positions is null ? null : As(positions, d, temps);
        LaunchN("embedding", $"embedding_fwd_{Sfx(d)}", N * C, P(output), P(ids), P(tb), P(pos), N, C, table.Rows, T, posOffset);
        Free(temps);
    }

    public void EmbeddingBackward(Tensor dTable, Tensor? dPositions, Tensor dOut, Tensor ids, int T, int posOffset)
    {
        Need(ids, DType.I32, "EmbeddingBackward", "ids");
        Need(dTable, DType.F32, "EmbeddingBackward", "dTable");
        if (dPositions is not null) Need(dPositions, DType.F32, "EmbeddingBackward", "dPositions");
        long N = ids.Count; int C = dTable.Cols;
        NeedFloat(dOut, "EmbeddingBackward", "dOut");
        LaunchN("embedding", $"embedding_bwd_{Sfx(dOut.DType)}", N * C, P(dTable), P(dPositions), P(dOut), P(ids), N, C, dTable.Rows, T, posOffset);
    }
}
