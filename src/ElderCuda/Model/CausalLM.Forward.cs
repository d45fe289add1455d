using ElderCuda.Backends;
using ElderCuda.Tensors;

namespace ElderCuda.Model;

/// <summary>Forward and backward of every family, written once against IBackend.</summary>
public sealed partial class CausalLM
{
    /// <summary>Parameters of one layer, resolved once per family (null where the family has none).</summary>
    sealed class LayerParams
    {
        public Parameter Ln1W = null!; public Parameter? Ln1B, Ln2W, Ln2B;
        public Parameter Q = null!, K = null!, V = null!, O = null!; public Parameter? Qb, Kb, Vb, Ob;
        public Parameter? Gate, Up, Down, GateB, UpB, DownB; // Llama / Qwen2
        public Parameter? Fc1, Fc2, Fc1B, Fc2B;              // OPT / Phi
    }

    /// <summary>Activations one layer saves for its backward pass.</summary>
    sealed class LayerAct
    {
        public Tensor X = null!, N1 = null!, Q = null!, K = null!, V = null!, Att = null!, Lse = null!, Y = null!;
        public Tensor? Mean1, Rstd1, H, Hn, MeanH, RstdH, Mn, Mean2, Rstd2, G, U, Sg, F1, A1, Z, MeanY, RstdY;
        public Scope Scope = null!;
        public double RegNorm;
    }

    /// <summary>
    /// Owns the tensors of one step (or one layer), allocated through it, and frees them together. An
    /// <paramref name="uninitialized"/> scope hands out tensors with unspecified contents (IBackend.AllocUninitialized),
    /// for forward-only work whose every op overwrites its output.
    /// </summary>
    internal sealed class Scope(IBackend be, bool uninitialized = false) : IDisposable
    {
        readonly List<Tensor> _owned = new();
        public Tensor A(DType dt, params int[] shape) { var t = uninitialized ? be.AllocUninitialized(dt, shape) : be.Alloc(dt, shape); _owned.Add(t); return t; }
        public Tensor Track(Tensor t) { _owned.Add(t); return t; }
        public void Dispose() { foreach (var t in _owned) t.Dispose(); _owned.Clear(); }
    }

    LayerParams[]? _layerCache;
    readonly Dictionary<int, (Tensor cos, Tensor sin)> _ropeTables = new();

    LayerParams Layer(int i)
    {
        _layerCache ??= new LayerParams[NumLayers];
        if (_layerCache[i] is { } c) return c;
        Parameter P(string local) => Get(LayerPrefix(i) + local);
        Parameter? Pn(string local) => TryGet(LayerPrefix(i) + local, out var p) ? p : null;
        var lp = new LayerParams();
        switch (Config.Family)
        {
            case Family.Llama:
            case Family.Qwen2:
                lp.Ln1W = P("input_layernorm.weight"); lp.Ln2W = P("post_attention_layernorm.weight");
                lp.O = P("self_attn.o_proj.weight"); lp.Ob = Pn("self_attn.o_proj.bias");
                lp.Gate = P("mlp.gate_proj.weight"); lp.Up = P("mlp.up_proj.weight"); lp.Down = P("mlp.down_proj.weight");
                lp.GateB = Pn("mlp.gate_proj.bias"); lp.UpB = Pn("mlp.up_proj.bias"); lp.DownB = Pn("mlp.down_proj.bias");
                break;
            case Family.Opt:
                lp.Ln1W = P("self_attn_layer_norm.weight"); lp.Ln1B = P("self_attn_layer_norm.bias");
                lp.Ln2W = P("final_layer_norm.weight"); lp.Ln2B = P("final_layer_norm.bias");
                lp.O = P("self_attn.out_proj.weight"); lp.Ob = Pn("self_attn.out_proj.bias");
                lp.Fc1 = P("fc1.weight"); lp.Fc1B = Pn("fc1.bias"); lp.Fc2 = P("fc2.weight"); lp.Fc2B = Pn("fc2.bias");
                break;
            default:
                lp.Ln1W = P("input_layernorm.weight"); lp.Ln1B = P("input_layernorm.bias");
                lp.O = P("self_attn.dense.weight"); lp.Ob = Pn("self_attn.dense.bias");
                lp.Fc1 = P("mlp.fc1.weight"); lp.Fc1B = Pn("mlp.fc1.bias"); lp.Fc2 = P("mlp.fc2.weight"); lp.Fc2B = Pn("mlp.fc2.bias");
                break;
        }
        lp.Q = P("self_attn.q_proj.weight"); lp.K = P("self_attn.k_proj.weight"); lp.V = P("self_attn.v_proj.weight");
        lp.Qb = Pn("self_attn.q_proj.bias"); lp.Kb = Pn("self_attn.k_proj.bias"); lp.Vb = Pn("self_attn.v_proj.bias");
        return _layerCache[i] = lp;
    }

    (Tensor cos, Tensor sin) RopeTable(int T)
    {
        if (_ropeTables.TryGetValue(T, out var t)) return t;
        var tab = RopeTableAt(0, T);
        _ropeTables[T] = tab;
        return tab;
    }

    /// <summary>The angle tables cos/sin[count, rotaryDim/2] of positions start .. start+count−1 (new tensors, the caller's).</summary>
    (Tensor cos, Tensor sin) RopeTableAt(int start, int count)
    {
        var inv = Config.InverseFrequencies();
        int half = inv.Length;
        var cos = new float[count * half]; var sin = new float[count * half];
        for (int r = 0; r < count; r++)
            for (int j = 0; j < half; j++)
            {
                float ang = (start + r) * inv[j]; // float32 product, as transformers
                cos[r * half + j] = (float)Math.Cos(ang);
                sin[r * half + j] = (float)Math.Sin(ang);
            }
        return (Backend.FromHost(cos, DType.F32, count, half), Backend.FromHost(sin, DType.F32, count, half));
    }

    // ---- small helpers shared by forward and backward ---------------------------------------------
    bool _weightGrads;
    Tensor? WG(Parameter? p) => _weightGrads && p is { Trainable: true } ? p.Grad : null;

    void Lin(Tensor o, Tensor x, Parameter w, Parameter? b) => Backend.Matmul(o, x, w.Value, b?.Value);

    void LinBack(Tensor? dx, Tensor dOut, Tensor x, Parameter w, Parameter? b, bool accumulate)
    {
        var dw = WG(w); var db = WG(b);
        if (dx is null && dw is null && db is null) return;
        Backend.MatmulBackward(dx, dw, db, dOut, x, w.Value, accumulate);
    }

    void Norm(Tensor o, Tensor? mean, Tensor rstd, Tensor x, Parameter w, Parameter? b)
    {
        if (Config.UsesRmsNorm) Backend.RmsNorm(o, rstd, x, w.Value, Config.NormEps);
        else Backend.LayerNorm(o, mean!, rstd, x, w.Value, b!.Value, Config.NormEps);
    }

    void NormBack(Tensor dx, Tensor dOut, Tensor x, Parameter w, Parameter? b, Tensor? mean, Tensor rstd, Scope s)
    {
        var dw = WG(w) ?? s.A(DType.F32, w.Shape);
        if (Config.UsesRmsNorm) Backend.RmsNormBackward(dx, dw, dOut, x, w.Value, rstd);
        else Backend.LayerNormBackward(dx, dw, WG(b) ?? s.A(DType.F32, b!.Shape), dOut, x, w.Value, mean!, rstd);
    }

    // ---- one layer --------------------------------------------------------------------------------
    /// <summary>
    /// Layer i on x[B·T, d]; returns its output (owned by <paramref name="outer"/>). With <paramref name="kv"/> each
    /// sequence's T rows are its positions kv.Length .. kv.Length+T−1, earlier keys and values come from the cache,
    /// and the new ones are appended to it.
    /// </summary>
    Tensor LayerForward(int i, Tensor x, LayerAct a, Scope s, Scope outer, int B, int T, KvCache? kv = null)
    {
        var c = Config; var be = Backend; var lp = Layer(i); var ct = be.ComputeType;
        int N = x.Rows, d = c.HiddenSize;
        bool phi = c.Family == Family.Phi, opt = c.Family == Family.Opt, post = opt && !c.OptPreLayerNorm;
        a.X = x;

        // attention block input
        if (post) a.N1 = x;
        else
        {
            a.N1 = s.A(ct, N, d); a.Rstd1 = s.A(DType.F32, N);
            if (!c.UsesRmsNorm) a.Mean1 = s.A(DType.F32, N);
            Norm(a.N1, a.Mean1, a.Rstd1, x, lp.Ln1W, lp.Ln1B);
        }
        a.Q = s.A(ct, N, c.QDim); a.K = s.A(ct, N, c.KvDim); a.V = s.A(ct, N, c.KvDim);
        Lin(a.Q, a.N1, lp.Q, lp.Qb); Lin(a.K, a.N1, lp.K, lp.Kb); Lin(a.V, a.N1, lp.V, lp.Vb);
        if (c.RotaryDim > 0)
        {
            var (cos, sin) = kv is null ? RopeTable(T) : kv.StepRope;
            be.Rope(a.Q, cos, sin, T, c.NumHeads, c.HeadDim, c.RotaryDim, inverse: false);
            be.Rope(a.K, cos, sin, T, c.NumKvHeads, c.HeadDim, c.RotaryDim, inverse: false);
        }
        // The attention output is kept in fp32 whatever the compute type: its backward forms
        // D = rowsum(dO ⊙ O), and dP − D is a small difference where values are bias-dominated (O ≈ b_v),
        // so a bf16 O costs most of the q/k gradients' precision (bench/RESULTS.md, "BF16 gradients").
        // The o_proj GEMM still reads it as bf16. Decoding has no backward: there, when o_proj multiplies in bf16
        // anyway (bf16 weights), the cached attention writes bf16 itself, the same rounding without a cast kernel.
        bool bf16Att = kv is not null && ct == DType.BF16 && lp.O.Value.DType == DType.BF16;
        a.Att = s.A(bf16Att ? DType.BF16 : DType.F32, N, c.QDim);
        if (kv is null)
        {
            a.Lse = s.A(DType.F32, B, c.NumHeads, T);
            be.Attention(a.Att, a.Lse, a.Q, a.K, a.V, B, T, c.NumHeads, c.NumKvHeads, c.HeadDim, AttentionScale);
        }
        else be.AttentionCached(a.Att, a.Q, a.K, a.V, kv.K[i]!, kv.V[i]!, B, kv.Length, T, c.NumHeads, c.NumKvHeads, c.HeadDim, AttentionScale);
        var o = s.A(ct, N, d);
        Lin(o, a.Att, lp.O, lp.Ob);

        var y = outer.A(ct, N, d);
        if (phi)
        {
            // parallel block: y = x + dense(attn(ln(x))) + fc2(act(fc1(ln(x))))
            a.F1 = s.A(ct, N, c.IntermediateSize); a.A1 = s.A(ct, N, c.IntermediateSize);
            Lin(a.F1, a.N1, lp.Fc1!, lp.Fc1B); be.Act(c.HiddenAct, a.A1, a.F1);
            Lin(y, a.A1, lp.Fc2!, lp.Fc2B);
            be.Add(y, y, o); be.Add(y, y, x);
            return y;
        }
        a.H = s.A(ct, N, d); be.Add(a.H, x, o);
        Tensor res;
        if (post)
        {
            a.Hn = s.A(ct, N, d); a.MeanH = s.A(DType.F32, N); a.RstdH = s.A(DType.F32, N);
            Norm(a.Hn, a.MeanH, a.RstdH, a.H, lp.Ln1W, lp.Ln1B);
            a.Mn = a.Hn; res = a.Hn;
        }
        else
        {
            a.Mn = s.A(ct, N, d); a.Rstd2 = s.A(DType.F32, N);
            if (!c.UsesRmsNorm) a.Mean2 = s.A(DType.F32, N);
            Norm(a.Mn, a.Mean2, a.Rstd2, a.H, lp.Ln2W!, lp.Ln2B);
            res = a.H;
        }
        var mlpOut = post ? (a.Z = s.A(ct, N, d)) : y;
        if (opt)
        {
            a.F1 = s.A(ct, N, c.IntermediateSize); a.A1 = s.A(ct, N, c.IntermediateSize);
            Lin(a.F1, a.Mn, lp.Fc1!, lp.Fc1B); be.Act(c.HiddenAct, a.A1, a.F1);
            Lin(mlpOut, a.A1, lp.Fc2!, lp.Fc2B);
        }
        else
        {
            a.G = s.A(ct, N, c.IntermediateSize); a.U = s.A(ct, N, c.IntermediateSize); a.Sg = s.A(ct, N, c.IntermediateSize);
            Lin(a.G, a.Mn, lp.Gate!, lp.GateB); Lin(a.U, a.Mn, lp.Up!, lp.UpB);
            be.SwiGlu(a.Sg, a.G, a.U);
            Lin(mlpOut, a.Sg, lp.Down!, lp.DownB);
        }
        be.Add(mlpOut, mlpOut, res);
        if (post)
        {
            a.MeanY = s.A(DType.F32, N); a.RstdY = s.A(DType.F32, N);
            Norm(y, a.MeanY, a.RstdY, a.Z!, lp.Ln2W!, lp.Ln2B);
        }
        return y;
    }

    float AttentionScale => (float)(1.0 / Math.Sqrt(Config.HeadDim));

    /// <summary>Backward of the attention sub-block from dO (grad of its output projection); returns d(N1).</summary>
    Tensor AttentionBackward(LayerParams lp, LayerAct a, Tensor dO, Scope s, int B, int T)
    {
        var c = Config; var be = Backend; var ct = be.ComputeType; int N = dO.Rows;
        var datt = s.A(ct, N, c.QDim);
        LinBack(datt, dO, a.Att, lp.O, lp.Ob, false);
        var dq = s.A(ct, N, c.QDim); var dk = s.A(ct, N, c.KvDim); var dv = s.A(ct, N, c.KvDim);
        be.AttentionBackward(dq, dk, dv, datt, a.Q, a.K, a.V, a.Att, a.Lse, B, T, c.NumHeads, c.NumKvHeads, c.HeadDim, AttentionScale);
        if (c.RotaryDim > 0)
        {
            // the rotation is orthogonal: its backward is the rotation by −θ
            var (cos, sin) = RopeTable(T);
            be.Rope(dq, cos, sin, T, c.NumHeads, c.HeadDim, c.RotaryDim, inverse: true);
            be.Rope(dk, cos, sin, T, c.NumKvHeads, c.HeadDim, c.RotaryDim, inverse: true);
        }
        var dn1 = s.A(ct, N, c.HiddenSize);
        LinBack(dn1, dq, a.N1, lp.Q, lp.Qb, false);
        LinBack(dn1, dk, a.N1, lp.K, lp.Kb, true);
        LinBack(dn1, dv, a.N1, lp.V, lp.Vb, true);
        return dn1;
    }

    /// <summary>dxAcc += ∂loss/∂x given dy = ∂loss/∂y for layer i.</summary>
    void LayerBackward(int i, LayerAct a, Tensor dy, Tensor dxAcc, Scope s, int B, int T)
    {
        var c = Config; var be = Backend; var lp = Layer(i); var ct = be.ComputeType;
        int N = dy.Rows, d = c.HiddenSize, I = c.IntermediateSize;
        if (c.Family == Family.Phi)
        {
            be.Axpy(dxAcc, 1f, dy);
            var da1 = s.A(ct, N, I); LinBack(da1, dy, a.A1!, lp.Fc2!, lp.Fc2B, false);
            var df1 = s.A(ct, N, I); be.ActBackward(c.HiddenAct, df1, da1, a.F1!);
            var dn1 = AttentionBackward(lp, a, dy, s, B, T);
            LinBack(dn1, df1, a.N1, lp.Fc1!, lp.Fc1B, true);
            NormBack(dxAcc, dn1, a.X, lp.Ln1W, lp.Ln1B, a.Mean1, a.Rstd1!, s);
            return;
        }
        bool post = c.Family == Family.Opt && !c.OptPreLayerNorm;
        Tensor dMlpOut = dy;
        if (post)
        {
            dMlpOut = s.A(ct, N, d);
            NormBack(dMlpOut, dy, a.Z!, lp.Ln2W!, lp.Ln2B, a.MeanY, a.RstdY!, s);
        }
        // residual around the MLP: dRes = dMlpOut, then the MLP's own path
        var dRes = s.A(ct, N, d); be.Copy(dRes, dMlpOut);
        var dMn = s.A(ct, N, d);
        if (c.Family == Family.Opt)
        {
            var da1 = s.A(ct, N, I); LinBack(da1, dMlpOut, a.A1!, lp.Fc2!, lp.Fc2B, false);
            var df1 = s.A(ct, N, I); be.ActBackward(c.HiddenAct, df1, da1, a.F1!);
            LinBack(dMn, df1, a.Mn!, lp.Fc1!, lp.Fc1B, false);
        }
        else
        {
            var dsg = s.A(ct, N, I); LinBack(dsg, dMlpOut, a.Sg!, lp.Down!, lp.DownB, false);
            var dg = s.A(ct, N, I); var du = s.A(ct, N, I);
            be.SwiGluBackward(dg, du, dsg, a.G!, a.U!);
            LinBack(dMn, dg, a.Mn!, lp.Gate!, lp.GateB, false);
            LinBack(dMn, du, a.Mn!, lp.Up!, lp.UpB, true);
        }
        Tensor dH;
        if (post)
        {
            // Mn = Hn = LN(H) and the residual also came from Hn
            be.Axpy(dRes, 1f, dMn);
            dH = s.A(ct, N, d);
            NormBack(dH, dRes, a.H!, lp.Ln1W, lp.Ln1B, a.MeanH, a.RstdH!, s);
        }
        else
        {
            NormBack(dRes, dMn, a.H!, lp.Ln2W!, lp.Ln2B, a.Mean2, a.Rstd2!, s);
            dH = dRes;
        }
        be.Axpy(dxAcc, 1f, dH); // residual x → h
        var dn = AttentionBackward(lp, a, dH, s, B, T);
        if (post) be.Axpy(dxAcc, 1f, dn);
        else NormBack(dxAcc, dn, a.X, lp.Ln1W, lp.Ln1B, a.Mean1, a.Rstd1!, s);
    }

    // ---- the whole model --------------------------------------------------------------------------
    /// <summary>
    /// Embeddings of N = B·T ids at positions past .. past+T−1 of each sequence (OPT: project_in, then learned
    /// positions offset by 2). x0 (OPT's embedding before project_in) and posIds are kept for the backward.
    /// </summary>
    (Tensor x, Tensor? x0, Tensor? posIds) Embed(Tensor ids, int N, int T, int past, Scope outer)
    {
        var be = Backend; var ct = be.ComputeType; int d = Config.HiddenSize;
        var embed = Get(EmbedName);
        Parameter? projIn = ProjectInName is { } pin ? Get(pin) : null;
        Parameter? positions = PositionsName is { } pnm ? Get(pnm) : null;
        if (projIn is null)
        {
            var x = outer.A(ct, N, d);
            be.Embedding(x, ids, embed.Value, positions?.Value, T, 2 + past);
            return (x, null, null);
        }
        var x0 = outer.A(ct, N, embed.Shape[1]);
        be.Embedding(x0, ids, embed.Value, null, T, 0);
        var xp = outer.A(ct, N, d);
        Lin(xp, x0, projIn, null);
        var pi = new int[N]; for (int n = 0; n < N; n++) pi[n] = n % T + 2 + past;
        var posIds = outer.Track(be.FromHostInt(pi, N));
        var pe = outer.A(ct, N, d);
        be.Embedding(pe, posIds, positions!.Value, null, T, 0);
        be.Add(xp, xp, pe);
        return (xp, x0, posIds);
    }

    /// <summary>The residual stream after layer i from its input x and output y: y, S·y (output gate) or x + S·(y − x) (branch).</summary>
    Tensor ApplyGate(int i, Tensor x, Tensor y, Scope outer)
    {
        float S = Gates[i];
        if (S == 1f) return y;
        var be = Backend; var xn = outer.A(be.ComputeType, x.Rows, x.Cols);
        if (GateForm == GateForm.Output) be.Scale(xn, y, S);
        else { be.Copy(xn, x); be.Scale(xn, xn, 1f - S); be.Axpy(xn, S, y); }
        return xn;
    }

    /// <summary>What the final norm, (OPT's project_out) and the LM head computed, for the backward.</summary>
    sealed class HeadAct
    {
        public Tensor Hf = null!, HOut = null!, Logits = null!; public Tensor? MeanF, RstdF;
        public Parameter? Fw, Fb, ProjOut, HeadB; public Parameter Head = null!;
    }

    HeadAct HeadForward(Tensor x, int N, Scope outer)
    {
        var c = Config; var be = Backend; var ct = be.ComputeType;
        var h = new HeadAct { Hf = x };
        if (FinalNormNames is { } fn)
        {
            h.Fw = Get(fn.w); h.Fb = fn.b is null ? null : Get(fn.b);
            h.Hf = outer.A(ct, N, c.HiddenSize); h.RstdF = outer.A(DType.F32, N);
            if (!c.UsesRmsNorm) h.MeanF = outer.A(DType.F32, N);
            Norm(h.Hf, h.MeanF, h.RstdF, x, h.Fw, h.Fb);
        }
        h.HOut = h.Hf;
        h.ProjOut = ProjectOutName is { } pon ? Get(pon) : null;
        if (h.ProjOut is not null) { h.HOut = outer.A(ct, N, h.ProjOut.Shape[0]); Lin(h.HOut, h.Hf, h.ProjOut, null); }
        h.Head = Get(HeadName); h.HeadB = HeadBiasName is { } hb ? Get(hb) : null;
        h.Logits = outer.A(ct, N, c.VocabSize);
        Lin(h.Logits, h.HOut, h.Head, h.HeadB);
        return h;
    }

    public StepResult Step(TokenBatch batch, StepOptions o)
    {
        var c = Config; var be = Backend; var ct = be.ComputeType;
        int B = batch.B, T = batch.T, N = B * T, d = c.HiddenSize;
        if (batch.Ids.Length != N) throw new ArgumentException($"batch has {batch.Ids.Length} ids, expected B·T = {N}");
        if (T < 1 || (T < 2 && o.Backward)) throw new ArgumentException($"a training window needs at least 2 tokens (got {T})");
        if (c.Family == Family.Opt && T + 2 > Get(PositionsName!).Shape[0])
            throw new ArgumentException($"sequence length {T} exceeds OPT's {Get(PositionsName!).Shape[0] - 2} learned positions");
        _weightGrads = o.Backward && o.WeightGrads;
        if (_weightGrads) EnsureGrads();

        using var outer = new Scope(be);
        var ids = outer.Track(be.FromHostInt(batch.Ids, N));
        var tg = new int[N];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                tg[b * T + t] = t < T - 1 ? batch.Ids[b * T + t + 1] : -1;
        var targets = outer.Track(be.FromHostInt(tg, N));
        long predicted = (long)B * (T - 1);

        var (x, x0, posIds) = Embed(ids, N, T, 0, outer);
        var embed = Get(EmbedName);
        Parameter? projIn = ProjectInName is { } pin ? Get(pin) : null;
        Parameter? positions = PositionsName is { } pnm ? Get(pnm) : null;

        var hidden = o.KeepHiddenStates ? new List<float[]>() : null;
        float[] Host(Tensor t) { var h = new float[t.Count]; be.ToHost(t, h); return h; }
        hidden?.Add(Host(x));

        var reg = o.DiffRegLayers is { Count: > 0 } && o.DiffRegLambda != 0 ? new HashSet<int>(o.DiffRegLayers) : null;
        double regScale = o.DiffRegNorm == NormKind.L2 ? 1.0 / Math.Sqrt((double)N * d) : 1.0 / ((double)N * d);
        double regLoss = 0;
        var acts = new LayerAct?[NumLayers];
        try
        {
            for (int i = 0; i < NumLayers; i++)
            {
                if (i > 0) hidden?.Add(Host(x));
                if (Skip[i]) continue;
                var ls = new Scope(be);
                var a = new LayerAct { Scope = ls };
                var y = LayerForward(i, x, a, ls, outer, B, T);
                a.Y = y;
                if (reg is not null && reg.Contains(i))
                {
                    a.RegNorm = be.DiffNorm(y, x, o.DiffRegNorm);
                    regLoss += o.DiffRegLambda * regScale * a.RegNorm;
                }
                var xn = ApplyGate(i, x, y, outer);
                o.LayerHook?.Invoke(i, x, xn);
                if (o.Backward) acts[i] = a; else ls.Dispose();
                x = xn;
            }

            // final norm, (OPT project_out), head
            var ha = HeadForward(x, N, outer);
            Tensor hf = ha.Hf, hOut = ha.HOut, logits = ha.Logits; Tensor? meanF = ha.MeanF, rstdF = ha.RstdF;
            Parameter? fw = ha.Fw, fb = ha.Fb, projOut = ha.ProjOut, headB = ha.HeadB; Parameter head = ha.Head;
            if (hidden is not null) { if (NumLayers > 0) hidden.Add(Host(hOut)); else hidden[0] = Host(hOut); }
            float[]? finalHidden = o.KeepFinalHidden ? Host(hOut) : null;

            float[]? logitsHost = o.KeepLogits ? Host(logits) : null;
            if (o.LogitsInto is { } into)
            {
                if (into.Count != logits.Count) throw new ArgumentException($"LogitsInto {into}: expected {logits.Count} values (B·T·V)");
                be.Copy(into, logits);
            }
            var losses = outer.A(DType.F32, N);
            float gradScale = (float)(o.LossScale / Math.Max(1, predicted));
            if (o.Backward && o.TeacherLogits is { } teacher && o.SoftTargetWeight != 0f)
            {
                // distillation: the fused kernel overwrites the logits with the gradient of
                // (1 − α)·CE + α·T²·KL(softmax(teacher/T) ‖ softmax(z/T))
                if (teacher.Count != (long)N * c.VocabSize) throw new ArgumentException($"teacher logits {teacher}: expected B·T·V = {(long)N * c.VocabSize} values");
                be.CrossEntropyDistill(losses, logits, logits, teacher, targets, gradScale, o.SoftTargetWeight, o.SoftTargetTemperature);
            }
            else be.CrossEntropy(losses, o.Backward ? logits : null, logits, targets, gradScale);
            var lossHost = Host(losses);
            double nll = 0; foreach (var l in lossHost) nll += l;

            double[]? gateGrads = null;
            if (o.Backward)
            {
                gateGrads = o.GateGrads ? new double[NumLayers] : null;
                using var bs = new Scope(be);
                var dOut = bs.A(ct, N, hOut.Cols);
                LinBack(dOut, logits, hOut, head, headB, false);
                Tensor dhf = dOut;
                if (projOut is not null) { dhf = bs.A(ct, N, d); LinBack(dhf, dOut, hf, projOut, null, false); }
                var dx = outer.A(ct, N, d);
                if (fw is not null) NormBack(dx, dhf, x, fw, fb, meanF, rstdF!, bs);
                else be.Copy(dx, dhf);

                for (int i = NumLayers - 1; i >= 0; i--)
                {
                    if (Skip[i]) continue;
                    var a = acts[i]!;
                    float S = Gates[i];
                    if (gateGrads is not null)
                    {
                        double dyS = be.Dot(dx, a.Y);
                        gateGrads[i] = GateForm == GateForm.Output ? dyS : dyS - be.Dot(dx, a.X);
                    }
                    Tensor dy = dx;
                    var dxNew = outer.A(ct, N, d);
                    if (S != 1f)
                    {
                        dy = a.Scope.A(ct, N, d); be.Scale(dy, dx, S);
                        if (GateForm == GateForm.Branch) be.Axpy(dxNew, 1f - S, dx);
                    }
                    if (reg is not null && reg.Contains(i))
                        be.DiffNormBackward(dy, dxNew, a.Y, a.X, o.DiffRegNorm, a.RegNorm, (float)(o.DiffRegLambda * regScale));
                    LayerBackward(i, a, dy, dxNew, a.Scope, B, T);
                    a.Scope.Dispose(); acts[i] = null;
                    dx = dxNew;
                }
                if (projIn is not null)
                {
                    var dPos = WG(positions);
                    if (dPos is not null) be.EmbeddingBackward(dPos, null, dx, posIds!, T, 0);
                    var dx0 = bs.A(ct, N, embed.Shape[1]);
                    LinBack(dx0, dx, x0!, projIn, null, false);
                    if (WG(embed) is { } dE) be.EmbeddingBackward(dE, null, dx0, ids, T, 0);
                }
                else if (WG(embed) is { } dE) be.EmbeddingBackward(dE, WG(positions), dx, ids, T, 2);
                else if (WG(positions) is { } dP)
                {
                    // positions trainable while the table is frozen: route through a scratch table
                    var scratch = bs.A(DType.F32, embed.Shape);
                    be.EmbeddingBackward(scratch, dP, dx, ids, T, 2);
                }
            }
            return new StepResult
            {
                Loss = (predicted > 0 ? nll / predicted : 0) + regLoss, TotalNll = nll, Predicted = predicted, RegLoss = regLoss,
                GateGrads = gateGrads, HiddenStates = hidden?.ToArray(), Logits = logitsHost, FinalHidden = finalHidden, TokenNll = lossHost,
            };
        }
        finally
        {
            foreach (var a in acts) a?.Scope.Dispose();
            _weightGrads = false;
        }
    }
}
