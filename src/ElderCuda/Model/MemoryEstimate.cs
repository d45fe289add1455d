namespace ElderCuda.Model;

/// <summary>
/// What a model needs on the device, by the engine's own storage plan: bf16 weights and activations,
/// fp32 gradients, an fp32 master copy and fp32 AdamW moments for every trained parameter, and the
/// activations one layer keeps for backward (no recomputation).
/// </summary>
public sealed record MemoryEstimate(long WeightBytes, long InferenceBytes, long TrainingBytes)
{
    public static MemoryEstimate For(ModelConfig c, long parameters, int seqLen, int batch)
    {
        long weights = parameters * 2;
        long N1 = seqLen, Nb = (long)seqLen * batch;
        // one layer's live activations in inference; logits dominate at the end
        long inferAct = N1 * (4L * c.HiddenSize + 2L * c.QDim + 2L * c.KvDim + 3L * c.IntermediateSize) * 2 + N1 * c.VocabSize * 4;
        // every layer's saved activations (bf16) + logits and their gradient (fp32)
        long perLayer = Nb * (6L * c.HiddenSize + 2L * c.QDim + 2L * c.KvDim + 4L * c.IntermediateSize) * 2;
        long trainAct = perLayer * c.NumLayers + Nb * c.VocabSize * 4 * 2;
        long optimizer = parameters * (4 /*grad*/ + 4 /*master*/ + 8 /*m, v*/);
        return new MemoryEstimate(weights, weights + inferAct, weights + optimizer + trainAct);
    }
}
