using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/crossentropy.cu: fused softmax cross-entropy, forward and backward in one pass per row, and its
// knowledge-distillation form.
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

    public void CrossEntropyDistill(Tensor losses, Tensor dLogits, Tensor logits, Tensor teacher, Tensor targets, float gradScale, float alpha, float temperature)
    {
        Need(losses, DType.F32, "CrossEntropyDistill", "losses"); Need(targets, DType.I32, "CrossEntropyDistill", "targets");
        Need(teacher, DType.F32, "CrossEntropyDistill", "teacher");
        NeedFloat(logits, "CrossEntropyDistill", "logits");
        if (!(temperature > 0f)) throw new ArgumentException($"CrossEntropyDistill: temperature must be > 0 (got {temperature})");
        int N = logits.Rows, V = logits.Cols;
        if (targets.Count != N || losses.Count != N || teacher.Count != logits.Count || dLogits.Count != logits.Count)
            throw new ArgumentException($"CrossEntropyDistill: logits {logits}, teacher {teacher}, targets {targets}, losses {losses}, dLogits {dLogits}");
        if (N == 0) return;
        var temps = new List<Tensor>();
        Tensor dl = dLogits.DType == logits.DType ? dLogits : Temp(logits.DType, temps, logits.Shape);
        Launch("crossentropy", $"crossentropy_distill_fwdbwd_{Sfx(logits.DType)}", ((uint)N, 1, 1), (512, 1, 1), 0,
            P(losses), P(dl), P(logits), P(teacher), P(targets), N, V, gradScale, alpha, temperature);
        if (!ReferenceEquals(dl, dLogits)) Cast(dLogits, dl);
        Free(temps);
    }
}
