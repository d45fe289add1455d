using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/crossentropy.cu: fused softmax cross-entropy, forward and backward in one pass per row.
public sealed partial class CudaBackend
{
    public void CrossEntropy(Tensor losses, Tensor? dLogits, Tensor logits, Tensor targets, float gradScale)
    {
        Need(losses, DType.F32, "CrossEntropy", "losses"); Need(targets, DType.I32, "CrossEntropy", "targets");
        NeedFloat(logits, "CrossEntropy", "logits");
        int N = logits.Rows, V = logits.Cols;
        if (targets.Count != N || losses.Count != N) throw new ArgumentException($"CrossEntropy: logits {logits}, targets {targets}, losses {losses}");
        if (N == 0) return;
        var temps = new List<Tensor>();
        Tensor? dl = dLogits;
        if (dLogits is not null && dLogits.DType != logits.DType) dl = Temp(logits.DType, temps, logits.Shape);
        Launch("crossentropy", $"crossentropy_fwdbwd_{Sfx(logits.DType)}", ((uint)N, 1, 1), (512, 1, 1), 0,
            P(losses), P(dl), P(logits), P(targets), N, V, gradScale);
        if (dl is not null && !ReferenceEquals(dl, dLogits)) Cast(dLogits!, dl);
        Free(temps);
    }
}
