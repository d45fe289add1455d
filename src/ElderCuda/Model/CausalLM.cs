using ElderCuda.Backends;
using ElderCuda.Tensors;

namespace ElderCuda.Model;

/// <summary>
/// A decoder-only causal LM (Llama, Qwen2, OPT, Phi) on one backend, with ELDeR's per-layer gates and
/// identity-skip mask. Forward and backward are written once against <see cref="IBackend"/>.
/// </summary>
public sealed partial class CausalLM : IDisposable
{
    public ModelConfig Config { get; private set; } = null!;
    public IBackend Backend { get; private set; } = null!;
    /// <summary>The folder the checkpoint was loaded from (tokenizer files are copied from here on export).</summary>
    public string SourceDir { get; private set; } = "";
    public int NumLayers => Config.NumLayers;

    /// <summary>ELDeR gate S_i per layer (current numbering), initialised to 1.</summary>
    public float[] Gates { get; private set; } = [];
    public GateForm GateForm { get; set; } = GateForm.Output;
    /// <summary>Identity-skip mask: a skipped layer computes x_{i+1} = x_i.</summary>
    public bool[] Skip { get; private set; } = [];
    /// <summary>Current layer index → index in the checkpoint as loaded (for reports after removal).</summary>
    public int[] OriginalLayerIndex { get; private set; } = [];

    public static CausalLM Load(string dir, IBackend backend) => throw new NotImplementedException();

    public IReadOnlyList<Parameter> Parameters => throw new NotImplementedException();
    public Parameter Get(string name) => throw new NotImplementedException();
    public bool TryGet(string name, out Parameter p) => throw new NotImplementedException();
    /// <summary>"model.layers.{i}." / "model.decoder.layers.{i}." as the checkpoint spells it.</summary>
    public string LayerPrefix(int layer) => throw new NotImplementedException();
    public IReadOnlyList<Parameter> LayerParameters(int layer) => throw new NotImplementedException();

    /// <summary>One forward pass over a batch, and optionally backward (see <see cref="StepOptions"/>).</summary>
    public StepResult Step(TokenBatch batch, StepOptions options) => throw new NotImplementedException();

    /// <summary>Allocate (zeroed) F32 gradients for trainable parameters.</summary>
    public void EnsureGrads() => throw new NotImplementedException();
    public void ZeroGrads() => throw new NotImplementedException();
    public void FreeGrads() => throw new NotImplementedException();

    public float[] ReadParameter(string name) => throw new NotImplementedException();
    public void WriteParameter(string name, ReadOnlySpan<float> data) => throw new NotImplementedException();

    /// <summary>Delete layers (current numbering) and renumber the rest; Config.NumLayers, Gates, Skip and OriginalLayerIndex follow.</summary>
    public void RemoveLayers(IReadOnlyCollection<int> layers) => throw new NotImplementedException();

    public void Dispose() { }
}
