using System.Text.Json;
using System.Text.Json.Nodes;
using ElderCuda.Backends;

namespace ElderCuda.Model;

public enum Family { Llama, Qwen2, Opt, Phi }

/// <summary>Thrown for a config.json the engine cannot run; the message names the problem.</summary>
public sealed class ModelConfigException(string message) : Exception(message);

/// <summary>llama3 rope scaling (rope_type: "llama3").</summary>
public sealed record Llama3RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings);

/// <summary>
/// The Hugging Face config.json of a decoder-only checkpoint, reduced to what the engine computes with.
/// The raw JSON is kept so that an export writes every other field back unchanged.
/// </summary>
public sealed class ModelConfig
{
    public static readonly IReadOnlyDictionary<string, Family> SupportedArchitectures = new Dictionary<string, Family>
    {
        ["LlamaForCausalLM"] = Family.Llama,
        ["Qwen2ForCausalLM"] = Family.Qwen2,
        ["OPTForCausalLM"] = Family.Opt,
        ["PhiForCausalLM"] = Family.Phi,
    };

    public required Family Family { get; init; }
    public required string Architecture { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; set; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public required float NormEps { get; init; }
    public required Activation HiddenAct { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    /// <summary>Biases on q/k/v (Qwen2 always; Llama with attention_bias; OPT/Phi always, o/dense too).</summary>
    public bool QkvBias { get; init; }
    /// <summary>Bias on the attention output projection (o_proj / out_proj / dense).</summary>
    public bool OutBias { get; init; }
    public bool MlpBias { get; init; }
    public double RopeTheta { get; init; } = 10000.0;
    public Llama3RopeScaling? RopeScaling { get; init; }
    /// <summary>Rotated dims per head (Phi: partial_rotary_factor × head_dim; OPT: 0).</summary>
    public int RotaryDim { get; init; }
    /// <summary>OPT: pre-LN (do_layer_norm_before) or post-LN.</summary>
    public bool OptPreLayerNorm { get; init; } = true;
    /// <summary>OPT: word_embed_proj_dim (project_in/project_out when it differs from hidden_size).</summary>
    public int WordEmbedProjDim { get; init; }
    /// <summary>OPT: whether a final_layer_norm exists at the decoder level.</summary>
    public bool OptFinalLayerNorm { get; init; } = true;
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }
    public string TorchDType { get; init; } = "float32";
    public required JsonObject Json { get; init; }

    public int QDim => NumHeads * HeadDim;
    public int KvDim => NumKvHeads * HeadDim;
    public bool UsesRmsNorm => Family is Family.Llama or Family.Qwen2;

    public static ModelConfig Load(string dir)
    {
        var path = Path.Combine(dir, "config.json");
        if (!File.Exists(path)) throw new ModelConfigException($"{path}: not found (a model folder needs config.json)");
        JsonObject json;
        try { json = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ModelConfigException($"{path}: not a JSON object"); }
        catch (JsonException e) { throw new ModelConfigException($"{path}: not valid JSON ({e.Message})"); }
        return Parse(json, path);
    }

    public static ModelConfig Parse(JsonObject j, string where = "config.json")
    {
        string arch = (j["architectures"] as JsonArray)?.FirstOrDefault()?.GetValue<string>()
                      ?? ModelTypeToArch(j["model_type"]?.GetValue<string>())
                      ?? throw new ModelConfigException($"{where}: no 'architectures' or 'model_type'; supported: {string.Join(", ", SupportedArchitectures.Keys)}");
        if (!SupportedArchitectures.TryGetValue(arch, out var fam))
            throw new ModelConfigException($"{where}: unsupported architecture '{arch}'; supported: {string.Join(", ", SupportedArchitectures.Keys)}");

        int Req(string k) => j[k]?.GetValue<int>() ?? throw new ModelConfigException($"{where}: missing '{k}' for {arch}");
        int? Opt(string k) => j[k] is JsonValue v && v.TryGetValue<int>(out var x) ? x : null;
        double? OptD(string k) => j[k] is JsonValue v && v.TryGetValue<double>(out var x) ? x : null;
        bool OptB(string k, bool d) => j[k] is JsonValue v && v.TryGetValue<bool>(out var x) ? x : d;

        int hidden = Req("hidden_size");
        int heads = Req("num_attention_heads");
        int layers = Req("num_hidden_layers");
        int vocab = Req("vocab_size");
        if (hidden <= 0 || heads <= 0 || layers <= 0 || vocab <= 0)
            throw new ModelConfigException($"{where}: hidden_size, num_attention_heads, num_hidden_layers and vocab_size must be positive");
        int headDim = Opt("head_dim") ?? hidden / heads;
        int kv = Opt("num_key_value_heads") ?? heads;
        if (heads % kv != 0) throw new ModelConfigException($"{where}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}");

        // rope_theta lives at the top level (older transformers) or in rope_parameters (newer)
        var ropeParams = j["rope_parameters"] as JsonObject;
        var ropeScalingObj = j["rope_scaling"] as JsonObject;
        double theta = OptD("rope_theta") ?? (ropeParams?["rope_theta"] is JsonValue tv && tv.TryGetValue<double>(out var t1) ? t1 : 10000.0);
        Llama3RopeScaling? scaling = null;
        foreach (var rp in new[] { ropeScalingObj, ropeParams })
        {
            if (rp is null) continue;
            string? type = rp["rope_type"]?.GetValue<string>() ?? rp["type"]?.GetValue<string>();
            if (type is null or "default") continue;
            if (type != "llama3") throw new ModelConfigException($"{where}: rope_type '{type}' is not supported (supported: default, llama3)");
            scaling = new Llama3RopeScaling(
                rp["factor"]!.GetValue<double>(), rp["low_freq_factor"]!.GetValue<double>(),
                rp["high_freq_factor"]!.GetValue<double>(), rp["original_max_position_embeddings"]!.GetValue<int>());
            break;
        }
        double partial = OptD("partial_rotary_factor") ?? (ropeParams?["partial_rotary_factor"] is JsonValue pv && pv.TryGetValue<double>(out var p1) ? p1 : 1.0);

        string act = j["hidden_act"]?.GetValue<string>() ?? j["activation_function"]?.GetValue<string>() ?? "silu";
        Activation hiddenAct = act switch
        {
            "silu" or "swish" => Activation.Silu,
            "gelu_new" or "gelu_pytorch_tanh" => Activation.GeluNew,
            "relu" => Activation.Relu,
            _ => throw new ModelConfigException($"{where}: activation '{act}' is not supported (silu, gelu_new, relu)"),
        };
        int? bos = Opt("bos_token_id"), eos = Opt("eos_token_id");
        string dtype = j["torch_dtype"]?.GetValue<string>() ?? j["dtype"]?.GetValue<string>() ?? "float32";

        switch (fam)
        {
            case Family.Llama:
            case Family.Qwen2:
                if (hiddenAct != Activation.Silu) throw new ModelConfigException($"{where}: {arch} with hidden_act '{act}' is not supported (silu)");
                return new ModelConfig
                {
                    Family = fam, Architecture = arch, VocabSize = vocab, HiddenSize = hidden,
                    IntermediateSize = Req("intermediate_size"), NumLayers = layers, NumHeads = heads, NumKvHeads = kv,
                    HeadDim = headDim, MaxPositionEmbeddings = Opt("max_position_embeddings") ?? 2048,
                    NormEps = (float)(OptD("rms_norm_eps") ?? 1e-6), HiddenAct = hiddenAct,
                    TieWordEmbeddings = OptB("tie_word_embeddings", false),
                    QkvBias = fam == Family.Qwen2 || OptB("attention_bias", false),
                    OutBias = fam == Family.Llama && OptB("attention_bias", false),
                    MlpBias = fam == Family.Llama && OptB("mlp_bias", false),
                    RopeTheta = theta, RopeScaling = scaling, RotaryDim = headDim,
                    BosTokenId = bos, EosTokenId = eos, TorchDType = dtype, Json = j,
                };
            case Family.Opt:
            {
                int proj = Opt("word_embed_proj_dim") ?? hidden;
                return new ModelConfig
                {
                    Family = fam, Architecture = arch, VocabSize = vocab, HiddenSize = hidden,
                    IntermediateSize = Req("ffn_dim"), NumLayers = layers, NumHeads = heads, NumKvHeads = heads,
                    HeadDim = hidden / heads, MaxPositionEmbeddings = Opt("max_position_embeddings") ?? 2048,
                    NormEps = 1e-5f, HiddenAct = hiddenAct,
                    TieWordEmbeddings = OptB("tie_word_embeddings", true),
                    QkvBias = OptB("enable_bias", true), OutBias = OptB("enable_bias", true), MlpBias = OptB("enable_bias", true),
                    RotaryDim = 0, OptPreLayerNorm = OptB("do_layer_norm_before", true), WordEmbedProjDim = proj,
                    OptFinalLayerNorm = OptB("do_layer_norm_before", true) && !OptB("_remove_final_layer_norm", false),
                    BosTokenId = bos, EosTokenId = eos, TorchDType = dtype, Json = j,
                };
            }
            default: // Phi
            {
                int rot = (int)(partial * headDim);
                return new ModelConfig
                {
                    Family = fam, Architecture = arch, VocabSize = vocab, HiddenSize = hidden,
                    IntermediateSize = Req("intermediate_size"), NumLayers = layers, NumHeads = heads, NumKvHeads = kv,
                    HeadDim = headDim, MaxPositionEmbeddings = Opt("max_position_embeddings") ?? 2048,
                    NormEps = (float)(OptD("layer_norm_eps") ?? 1e-5), HiddenAct = hiddenAct,
                    TieWordEmbeddings = OptB("tie_word_embeddings", false),
                    QkvBias = true, OutBias = true, MlpBias = true,
                    RopeTheta = theta, RopeScaling = scaling, RotaryDim = rot,
                    BosTokenId = bos, EosTokenId = eos, TorchDType = dtype, Json = j,
                };
            }
        }
    }

    static string? ModelTypeToArch(string? modelType) => modelType switch
    {
        "llama" => "LlamaForCausalLM", "qwen2" => "Qwen2ForCausalLM", "opt" => "OPTForCausalLM", "phi" => "PhiForCausalLM", _ => null,
    };

    /// <summary>
    /// inv_freq[j] = θ^(−2j/rotaryDim), with llama3 scaling when configured. Computed the way transformers
    /// does it: in float32 (the rotary embedding is float32 even in a float64 model), which matters at 1e-6.
    /// </summary>
    public float[] InverseFrequencies()
    {
        int half = RotaryDim / 2;
        var inv = new float[half];
        for (int i = 0; i < half; i++)
        {
            float e = (float)(2 * i) / RotaryDim;
            inv[i] = 1f / (float)Math.Pow(RopeTheta, e);
        }
        if (RopeScaling is { } s)
        {
            double lowWl = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
            double highWl = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
            for (int i = 0; i < half; i++)
            {
                float wl = 2 * MathF.PI / inv[i];
                if (wl > lowWl) inv[i] = (float)(inv[i] / s.Factor);
                else if (wl >= highWl)
                {
                    double smooth = (s.OriginalMaxPositionEmbeddings / wl - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    inv[i] = (float)((1 - smooth) * inv[i] / s.Factor + smooth * inv[i]);
                }
            }
        }
        return inv;
    }

    /// <summary>A copy of the raw JSON with num_hidden_layers (and layer_types where present) set for a pruned model.</summary>
    public JsonObject JsonWithLayers(IReadOnlyList<int> keptOriginalLayers)
    {
        var copy = (JsonObject)Json.DeepClone();
        copy["num_hidden_layers"] = keptOriginalLayers.Count;
        if (copy["layer_types"] is JsonArray types)
        {
            var kept = new JsonArray();
            foreach (var i in keptOriginalLayers) kept.Add(types[i]?.DeepClone());
            copy["layer_types"] = kept;
        }
        return copy;
    }
}
