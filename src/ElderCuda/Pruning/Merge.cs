using ElderCuda.Model;

namespace ElderCuda.Pruning;

/// <summary>
/// Layer merging as LaCo's Reserving-Differences-while-Seeking-Common (arXiv 2402.11187, §3.2):
/// θ* = θ_l + Σ_k (θ_{l+k} − θ_l), applied to every parameter of the layer except its norms, which are
/// taken from the base layer l (DESIGN.md §5, also for SLM).
/// </summary>
public static class Merge
{
    /// <summary>Norm weights/biases are not merged (Llama input_layernorm/post_attention_layernorm, OPT *_layer_norm, Phi input_layernorm).</summary>
    public static bool IsNorm(string localName)
        => localName.Contains("norm", StringComparison.OrdinalIgnoreCase) || localName.StartsWith("ln", StringComparison.Ordinal);

    /// <summary>θ_base + Σ_k (θ_k − θ_base), elementwise, in float64 then rounded once.</summary>
    public static float[] Combine(ReadOnlySpan<float> baseW, IReadOnlyList<float[]> others)
    {
        var r = new float[baseW.Length];
        for (int i = 0; i < r.Length; i++)
        {
            double b = baseW[i], s = b;
            foreach (var o in others) s += o[i] - b;
            r[i] = (float)s;
        }
        return r;
    }

    /// <summary>Host copies of one layer's parameters (to undo a trial merge).</summary>
    public static Dictionary<string, float[]> SaveLayer(CausalLM m, int layer)
        => m.LayerParameters(layer).ToDictionary(p => p.Name, p => m.ReadParameter(p.Name));

    public static void Restore(CausalLM m, Dictionary<string, float[]> saved)
    {
        foreach (var (n, a) in saved) m.WriteParameter(n, a);
    }

    /// <summary>Write the merge of layers {baseLayer} ∪ others into baseLayer (current numbering). The caller skips or removes the others.</summary>
    public static void MergeInto(CausalLM m, int baseLayer, IReadOnlyList<int> others)
    {
        var byLocal = others.Select(o => m.LayerParameters(o).ToDictionary(p => p.LocalName)).ToList();
        foreach (var p in m.LayerParameters(baseLayer))
        {
            if (IsNorm(p.LocalName)) continue;
            var baseW = m.ReadParameter(p.Name);
            var rest = byLocal.Select(d => m.ReadParameter(d[p.LocalName].Name)).ToList();
            m.WriteParameter(p.Name, Combine(baseW, rest));
        }
    }
}
