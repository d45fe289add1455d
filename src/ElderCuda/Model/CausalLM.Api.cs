using ElderCuda.Backends;
using ElderCuda.Tensors;

namespace ElderCuda.Model;

/// <summary>ELDeR's gate forms (DESIGN.md §4, PRUNING.md).</summary>
public enum GateForm
{
    /// <summary>The paper's: x_{i+1} = S_i · Layer_i(x_i).</summary>
    Output,
    /// <summary>x_{i+1} = x_i + S_i · (Layer_i(x_i) − x_i); S = 0 is exactly the identity skip.</summary>
    Branch,
}

/// <summary>B sequences of T tokens, row-major. Targets are the HF shift: position t predicts ids[t+1].</summary>
public sealed record TokenBatch(int[] Ids, int B, int T)
{
    public static TokenBatch Single(int[] ids) => new(ids, 1, ids.Length);
}

/// <summary>One named parameter of a checkpoint, held on the model's backend.</summary>
public sealed class Parameter
{
    public required string Name { get; init; }
    public required Tensor Value { get; set; }
    /// <summary>F32 gradient, allocated on demand by <see cref="CausalLM.EnsureGrads"/>.</summary>
    public Tensor? Grad { get; set; }
    /// <summary>The dtype the checkpoint stored it in (export writes it back in this dtype).</summary>
    public DType FileDType { get; init; }
    /// <summary>Layer index in the current numbering, or −1 for embeddings, final norm, head.</summary>
    public int Layer { get; init; } = -1;
    /// <summary>Name within the layer, e.g. "self_attn.q_proj.weight"; the full name for non-layer parameters.</summary>
    public required string LocalName { get; init; }
    public bool Trainable { get; set; } = true;
    public int[] Shape => Value.Shape;
}

/// <summary>What one forward (and optional backward) pass computes.</summary>
public sealed class StepOptions
{
    /// <summary>Run the backward pass (needs ComputeLoss semantics: mean next-token CE).</summary>
    public bool Backward { get; init; }
    /// <summary>Accumulate gradients into Parameter.Grad for parameters with Trainable = true.</summary>
    public bool WeightGrads { get; init; }
    /// <summary>Fill StepResult.GateGrads (∂loss/∂S_i for every layer).</summary>
    public bool GateGrads { get; init; }
    /// <summary>Scale applied to the CE loss gradient (e.g. 1/accumulation steps).</summary>
    public float LossScale { get; init; } = 1f;
    /// <summary>Layers (current numbering) whose ‖x_out − x_in‖ is regularised (ELDeR stage 2).</summary>
    public IReadOnlyList<int>? DiffRegLayers { get; init; }
    public NormKind DiffRegNorm { get; init; } = NormKind.L2;
    /// <summary>λ2. The term added to the loss is λ2 · Σ_i R(x_out_i − x_in_i) / sqrt(N·d) for ℓ2 (an RMS) and / (N·d) for ℓ1 (a mean absolute value), so λ2 does not depend on batch or model size.</summary>
    public float DiffRegLambda { get; init; }
    /// <summary>
    /// Knowledge distillation: the teacher's logits [B·T, V] (F32, on this model's backend; see <see cref="LogitsInto"/>).
    /// With weight α and temperature T the logits gradient becomes that of (1 − α)·CE(hard targets) +
    /// α·T²·KL(p ‖ softmax(z/T)) with p = softmax(teacher/T), computed in the fused loss op (the teacher's
    /// probabilities are never materialised). Rows without a target (the last position of each window) get no
    /// gradient. The reported Loss stays the hard-target CE.
    /// </summary>
    public Tensor? TeacherLogits { get; init; }
    public float SoftTargetWeight { get; init; }
    /// <summary>
    /// Distillation temperature T (Hinton et al.): the soft targets are the teacher's softmax at T, and the
    /// KD term is α·T²·KL(p ‖ softmax(z/T)), whose logits gradient is α·T·(softmax(z/T) − p); the hard-target term
    /// keeps temperature 1. At T = 1 the gradient is that of (1 − α)·CE(hard) + α·CE(p).
    /// </summary>
    public float SoftTargetTemperature { get; init; } = 1f;
    /// <summary>Called after every layer that runs, with its raw input and output (residual stream, before any final norm) in forward order. Tensors are only valid during the call.</summary>
    public Action<int, Tensor, Tensor>? LayerHook { get; init; }
    /// <summary>Return hidden states on the host as HF output_hidden_states does ([0] embeddings, [i] input of layer i, last after the final norm).</summary>
    public bool KeepHiddenStates { get; init; }
    /// <summary>Return the logits on the host.</summary>
    public bool KeepLogits { get; init; }
    /// <summary>Copy the logits [B·T, V] into this tensor on the model's backend (converting dtype), e.g. a teacher's for <see cref="TeacherLogits"/>.</summary>
    public Tensor? LogitsInto { get; init; }
    /// <summary>Return the final hidden state (after the final norm) on the host.</summary>
    public bool KeepFinalHidden { get; init; }
}

public sealed class StepResult
{
    /// <summary>Mean next-token cross-entropy over predicted tokens.</summary>
    public double Loss { get; init; }
    /// <summary>Sum of NLL over predicted tokens, and their count.</summary>
    public double TotalNll { get; init; }
    public long Predicted { get; init; }
    /// <summary>The regularisation term that was added (already multiplied by λ2).</summary>
    public double RegLoss { get; init; }
    public double[]? GateGrads { get; init; }
    public float[][]? HiddenStates { get; init; }
    public float[]? Logits { get; init; }
    public float[]? FinalHidden { get; init; }
    /// <summary>
    /// Next-token NLL at every position [B·T] (−log p(ids[n+1] | ids[..n]); 0 at each sequence's last position),
    /// as the fused loss op computed it: what zero-shot scoring sums over a continuation.
    /// </summary>
    public required float[] TokenNll { get; init; }
}
