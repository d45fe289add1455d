using ElderCuda.Backends;
using ElderCuda.IO.Safetensors;
using ElderCuda.Tensors;

namespace ElderCuda.Model;

/// <summary>
/// A decoder-only causal LM (Llama, Qwen2, OPT, Phi) on one backend, with ELDeR's per-layer gates and
/// identity-skip mask. Forward and backward are written once against <see cref="IBackend"/>
/// (CausalLM.Forward.cs); this file holds loading and parameter bookkeeping.
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

    readonly List<Parameter> _params = new();
    readonly Dictionary<string, Parameter> _byName = new();
    /// <summary>"model.layers." or "model.decoder.layers." or "decoder.layers." as the checkpoint spells it.</summary>
    string _layersPrefix = "model.layers.";
    string _rootPrefix = "model.";

    public IReadOnlyList<Parameter> Parameters => _params;

    public Parameter Get(string name) =>
        _byName.TryGetValue(name, out var p) ? p : throw new KeyNotFoundException($"parameter '{name}' is not in this {Config.Architecture} model");

    public bool TryGet(string name, out Parameter p) => _byName.TryGetValue(name, out p!);

    public string LayerPrefix(int layer) => _layersPrefix + layer + ".";

    public IReadOnlyList<Parameter> LayerParameters(int layer) => _params.Where(p => p.Layer == layer).ToList();

    /// <summary>Names of the non-layer parameters, resolved per family (tied head → embedding table).</summary>
    internal string EmbedName => Config.Family == Family.Opt ? _rootPrefix + "embed_tokens.weight" : "model.embed_tokens.weight";
    internal string? PositionsName => Config.Family == Family.Opt ? _rootPrefix + "embed_positions.weight" : null;
    internal string HeadName => _byName.ContainsKey("lm_head.weight") ? "lm_head.weight" : EmbedName;
    internal string? HeadBiasName => _byName.ContainsKey("lm_head.bias") ? "lm_head.bias" : null;
    internal string? ProjectInName => _byName.ContainsKey(_rootPrefix + "project_in.weight") ? _rootPrefix + "project_in.weight" : null;
    internal string? ProjectOutName => _byName.ContainsKey(_rootPrefix + "project_out.weight") ? _rootPrefix + "project_out.weight" : null;
    internal (string w, string? b)? FinalNormNames => Config.Family switch
    {
        Family.Llama or Family.Qwen2 => ("model.norm.weight", null),
        Family.Phi => ("model.final_layernorm.weight", "model.final_layernorm.bias"),
        _ => Config.OptFinalLayerNorm ? (_rootPrefix + "final_layer_norm.weight", _rootPrefix + "final_layer_norm.bias") : null,
    };

    /// <summary>The per-layer tensor names each family needs (biases only where the config has them).</summary>
    internal IEnumerable<string> ExpectedLayerLocalNames()
    {
        var c = Config;
        IEnumerable<string> Lin(string n, bool bias) => bias ? [n + ".weight", n + ".bias"] : [n + ".weight"];
        switch (c.Family)
        {
            case Family.Llama:
            case Family.Qwen2:
                return new[] { "input_layernorm.weight", "post_attention_layernorm.weight" }
                    .Concat(Lin("self_attn.q_proj", c.QkvBias)).Concat(Lin("self_attn.k_proj", c.QkvBias)).Concat(Lin("self_attn.v_proj", c.QkvBias))
                    .Concat(Lin("self_attn.o_proj", c.OutBias))
                    .Concat(Lin("mlp.gate_proj", c.MlpBias)).Concat(Lin("mlp.up_proj", c.MlpBias)).Concat(Lin("mlp.down_proj", c.MlpBias));
            case Family.Opt:
                return new[] { "self_attn_layer_norm.weight", "self_attn_layer_norm.bias", "final_layer_norm.weight", "final_layer_norm.bias" }
                    .Concat(Lin("self_attn.q_proj", c.QkvBias)).Concat(Lin("self_attn.k_proj", c.QkvBias)).Concat(Lin("self_attn.v_proj", c.QkvBias))
                    .Concat(Lin("self_attn.out_proj", c.OutBias)).Concat(Lin("fc1", c.MlpBias)).Concat(Lin("fc2", c.MlpBias));
            default:
                return new[] { "input_layernorm.weight", "input_layernorm.bias" }
                    .Concat(Lin("self_attn.q_proj", true)).Concat(Lin("self_attn.k_proj", true)).Concat(Lin("self_attn.v_proj", true))
                    .Concat(Lin("self_attn.dense", true)).Concat(Lin("mlp.fc1", true)).Concat(Lin("mlp.fc2", true));
        }
    }

    /// <summary>Loads config.json and the safetensors weights of a Hugging Face checkpoint folder onto <paramref name="backend"/>.</summary>
    public static CausalLM Load(string dir, IBackend backend)
    {
        if (!Directory.Exists(dir)) throw new ModelConfigException($"{dir}: no such model folder");
        var cfg = ModelConfig.Load(dir);
        using var ck = Checkpoint.Open(dir);
        var m = new CausalLM { Config = cfg, Backend = backend, SourceDir = Path.GetFullPath(dir) };
        var names = new HashSet<string>(ck.Names);
        if (cfg.Family == Family.Opt)
        {
            // OPT checkpoints may spell tensors "decoder.*" without the "model." prefix
            m._rootPrefix = names.Any(n => n.StartsWith("model.decoder.")) ? "model.decoder." : "decoder.";
            m._layersPrefix = m._rootPrefix + "layers.";
        }

        void Add(string name, int layer, string local, bool required = true)
        {
            if (!ck.Contains(name))
            {
                if (required) throw new ModelConfigException($"{dir}: tensor '{name}' is missing from the checkpoint ({cfg.Architecture}, {cfg.NumLayers} layers)");
                return;
            }
            var info = ck.Info(name);
            var data = ck.ReadFloat32(name);
            var t = backend.FromHost(data, backend.ComputeType, info.Shape);
            var p = new Parameter { Name = name, Value = t, FileDType = info.DType, Layer = layer, LocalName = local };
            m._params.Add(p);
            m._byName[name] = p;
        }

        Add(m.EmbedName, -1, m.EmbedName);
        if (m.PositionsName is { } pn) Add(pn, -1, pn);
        if (cfg.Family == Family.Opt)
        {
            Add(m._rootPrefix + "project_in.weight", -1, m._rootPrefix + "project_in.weight", required: false);
            Add(m._rootPrefix + "project_out.weight", -1, m._rootPrefix + "project_out.weight", required: false);
        }
        for (int i = 0; i < cfg.NumLayers; i++)
            foreach (var local in m.ExpectedLayerLocalNames())
                Add(m.LayerPrefix(i) + local, i, local);
        if (m.FinalNormNames is { } fn) { Add(fn.w, -1, fn.w); if (fn.b is not null) Add(fn.b, -1, fn.b); }
        if (!cfg.TieWordEmbeddings) Add("lm_head.weight", -1, "lm_head.weight", required: cfg.Family != Family.Opt);
        if (cfg.Family == Family.Phi) Add("lm_head.bias", -1, "lm_head.bias");

        m.CheckShapes(dir);
        m.Gates = Enumerable.Repeat(1f, cfg.NumLayers).ToArray();
        m.Skip = new bool[cfg.NumLayers];
        m.OriginalLayerIndex = Enumerable.Range(0, cfg.NumLayers).ToArray();
        return m;
    }

    void CheckShapes(string dir)
    {
        var c = Config;
        void Expect(string name, params int[] shape)
        {
            if (!_byName.TryGetValue(name, out var p)) return;
            if (!p.Shape.SequenceEqual(shape))
                throw new ModelConfigException($"{dir}: tensor '{name}' has shape [{string.Join(",", p.Shape)}], config.json implies [{string.Join(",", shape)}]");
        }
        int e = c.Family == Family.Opt ? c.WordEmbedProjDim : c.HiddenSize;
        Expect(EmbedName, c.VocabSize, e);
        for (int i = 0; i < c.NumLayers; i++)
        {
            string q = c.Family == Family.Phi || c.Family == Family.Opt ? "self_attn.q_proj.weight" : "self_attn.q_proj.weight";
            Expect(LayerPrefix(i) + q, c.QDim, c.HiddenSize);
            Expect(LayerPrefix(i) + "self_attn.k_proj.weight", c.KvDim, c.HiddenSize);
            Expect(LayerPrefix(i) + "self_attn.v_proj.weight", c.KvDim, c.HiddenSize);
        }
    }

    public void EnsureGrads()
    {
        foreach (var p in _params)
            if (p.Trainable && p.Grad is null) p.Grad = Backend.Alloc(DType.F32, p.Shape);
    }

    public void ZeroGrads()
    {
        foreach (var p in _params) if (p.Grad is not null) Backend.Zero(p.Grad);
    }

    public void FreeGrads()
    {
        foreach (var p in _params) { p.Grad?.Dispose(); p.Grad = null; }
    }

    public float[] ReadParameter(string name)
    {
        var p = Get(name);
        var data = new float[p.Value.Count];
        Backend.ToHost(p.Value, data);
        return data;
    }

    public void WriteParameter(string name, ReadOnlySpan<float> data)
    {
        var p = Get(name);
        if (data.Length != p.Value.Count) throw new ArgumentException($"{name}: {data.Length} values for shape {p.Value.ShapeString}");
        var fresh = Backend.FromHost(data, p.Value.DType, p.Shape);
        p.Value.Dispose();
        p.Value = fresh;
    }

    public void RemoveLayers(IReadOnlyCollection<int> layers)
    {
        var remove = new HashSet<int>(layers);
        foreach (var i in remove)
            if (i < 0 || i >= NumLayers) throw new ArgumentOutOfRangeException(nameof(layers), $"layer {i} outside 0..{NumLayers - 1}");
        var keep = Enumerable.Range(0, NumLayers).Where(i => !remove.Contains(i)).ToArray();
        var newIndex = new Dictionary<int, int>();
        for (int j = 0; j < keep.Length; j++) newIndex[keep[j]] = j;

        var rebuilt = new List<Parameter>();
        foreach (var p in _params)
        {
            if (p.Layer < 0) { rebuilt.Add(p); continue; }
            if (remove.Contains(p.Layer)) { p.Value.Dispose(); p.Grad?.Dispose(); continue; }
            int j = newIndex[p.Layer];
            rebuilt.Add(new Parameter
            {
                Name = LayerPrefix(j) + p.LocalName, Value = p.Value, Grad = p.Grad, FileDType = p.FileDType,
                Layer = j, LocalName = p.LocalName, Trainable = p.Trainable,
            });
        }
        _params.Clear(); _byName.Clear();
        foreach (var p in rebuilt) { _params.Add(p); _byName[p.Name] = p; }
        Gates = keep.Select(i => Gates[i]).ToArray();
        Skip = keep.Select(i => Skip[i]).ToArray();
        OriginalLayerIndex = keep.Select(i => OriginalLayerIndex[i]).ToArray();
        Config.NumLayers = keep.Length;
        _layerCache = null;
    }

    /// <summary>Total number of parameter elements (tied weights counted once).</summary>
    public long ParameterCount => _params.Sum(p => p.Value.Count);

    public void Dispose()
    {
        foreach (var p in _params) { p.Value.Dispose(); p.Grad?.Dispose(); }
        _params.Clear(); _byName.Clear();
        foreach (var t in _ropeTables.Values) { t.cos.Dispose(); t.sin.Dispose(); }
        _ropeTables.Clear();
    }
}
