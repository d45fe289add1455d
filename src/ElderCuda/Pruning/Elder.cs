using System.Text.Json.Nodes;
using ElderCuda.Backends;
using ElderCuda.Model;
using ElderCuda.Training;

namespace ElderCuda.Pruning;

/// <summary>
/// Stage 2 recipes: the paper's difference regularization then removal; removal then fine-tuning on CE;
/// removal then fine-tuning with distillation from the dense model (CE mixed with its soft targets); none.
/// </summary>
public enum Stage2 { Regularize, Finetune, Distill, None }
public enum GateChoice { Output, Branch, Auto }

public sealed record ElderOptions
{
    /// <summary>Stage 2 `distill`: weight α of the dense model's soft targets (1 − α on the hard targets); 1 = pure KD, which had the lowest held-back CE at PRUNING.md's scale.</summary>
    public double DistillWeight { get; init; } = 1.0;
    /// <summary>Stage 2 `distill`: softmax temperature T of the KD term (scaled by T²); 1 = plain soft targets.</summary>
    public double DistillTemperature { get; init; } = 2;
    public GateChoice Form { get; init; } = GateChoice.Output;
    public double Lambda1 { get; init; } = 5e-3;
    public double GateLr { get; init; } = 1e-2;
    /// <summary>Windows per gate step in stage 1.</summary>
    public int GateBatch { get; init; } = 1;
    /// <summary>Train all weights together with the gates in stage 1 (the official code's choice; PRUNING.md: changes nothing but the cost).</summary>
    public bool TrainAllInStage1 { get; init; }
    public double Stage1WeightLr { get; init; } = 2e-5;
    public bool OneShot { get; init; }
    public bool AllowFirst { get; init; }
    public bool AllowLast { get; init; }
    public Stage2 Stage2 { get; init; } = Stage2.Regularize;
    public double Lambda2 { get; init; } = 0.1;
    public NormKind RegNorm { get; init; } = NormKind.L2;
    /// <summary>Stage 2 training; null picks the recipe's default (regularize: lr 2e-5, 2 epochs; finetune: lr 1e-4, 4 epochs; distill: lr 1e-4, 8 epochs).</summary>
    public double? Lr { get; init; }
    public int? Epochs { get; init; }
    public int Batch { get; init; } = 8;
    public TrainParams Train { get; init; } = TrainParams.All;
    public int Seed { get; init; }
}

/// <summary>The outcome of ELDeR stage 1 for one gate form.</summary>
public sealed class GateSelection
{
    public required GateForm Form { get; init; }
    /// <summary>Removal order, current numbering at the time of selection.</summary>
    public List<int> Order { get; } = new();
    public List<float[]> GatesPerRound { get; } = new();
    public List<StepLog> Steps { get; } = new();
    public double HeldBackCe { get; set; } = double.NaN;
}

/// <summary>
/// ELDeR (arXiv 2505.18232; DESIGN.md §4). Stage 1 learns one gate per layer with an L1 penalty and
/// removes the smallest eligible gate after every pass over the calibration windows (iterative; one-shot
/// as an ablation). Stage 2 is the paper's difference regulariser (gates back to 1, layers in P active,
/// train with CE + λ2·Σ R(x_out − x_in), then delete P), or remove-then-fine-tune, or nothing.
/// </summary>
public static class Elder
{
    /// <summary>Layers that may be removed: alive, and not the first/last unless allowed.</summary>
    public static bool[] Eligible(CausalLM m, bool allowFirst, bool allowLast)
    {
        int L = m.NumLayers;
        var e = new bool[L];
        for (int i = 0; i < L; i++) e[i] = !m.Skip[i] && (allowFirst || i != 0) && (allowLast || i != L - 1);
        return e;
    }

    /// <summary>
    /// Stage 1 for one gate form: k rounds (or one pass with OneShot). Gates start at 1 and carry over
    /// between rounds, as does the Adam state; a removed layer becomes an identity skip. The window order
    /// of round r is a permutation seeded by (seed, r), so a resumed run repeats it exactly.
    /// </summary>
    public static GateSelection SelectLayers(CausalLM m, CalibrationData calib, int k, GateForm form, ElderOptions o,
        RunCheckpoint? ckpt = null, Action<string>? log = null, CancellationToken ct = default)
    {
        int L = m.NumLayers;
        var sel = new GateSelection { Form = form };
        var gates = Enumerable.Repeat(1f, L).ToArray();
        var adam = new HostAdam(L);
        var skipBefore = (bool[])m.Skip.Clone();
        string key = $"elder.stage1.{form}";
        int startRound = 0;
        AdamWOptimizer? wopt = null;

        if (o.TrainAllInStage1) { foreach (var p in m.Parameters) p.Trainable = true; m.EnsureGrads(); wopt = new AdamWOptimizer(m.Backend, m.Parameters); }
        try
        {
            if (ckpt?.TryLoad() is { } s && s.Meta[key] is JsonObject st)
            {
                startRound = st["round"]!.GetValue<int>();
                foreach (var x in st["order"]!.AsArray()) sel.Order.Add(x!.GetValue<int>());
                foreach (var r in st["gates_per_round"]!.AsArray()) sel.GatesPerRound.Add(r!.AsArray().Select(v => v!.GetValue<float>()).ToArray());
                foreach (var x in st["steps"]!.AsArray())
                    sel.Steps.Add(new StepLog(x!["phase"]!.GetValue<string>(), x["round"]!.GetValue<int>(), x["step"]!.GetValue<int>(), x["lr"]!.GetValue<double>(), x["loss"]!.GetValue<double>(), x["ce"]!.GetValue<double>(), x["reg"]!.GetValue<double>()));
                s.Arrays[key + ".gates"].CopyTo(gates, 0);
                adam.M = FromBits(s.Arrays[key + ".m"]);
                adam.V = FromBits(s.Arrays[key + ".v"]);
                adam.StepCount = st["adam_step"]!.GetValue<int>();
                if (wopt is not null) wopt.LoadState(s.Arrays);
                foreach (var l in sel.Order) m.Skip[l] = true;
                log?.Invoke($"elder stage 1 ({form}): resumed after round {startRound}, removed so far [{string.Join(", ", sel.Order)}]");
                if (o.OneShot ? startRound >= 1 : sel.Order.Count >= k) return sel;
            }

            int rounds = o.OneShot ? 1 : k;
            m.GateForm = form;
            for (int round = startRound; round < rounds; round++)
            {
                var alive = m.Skip.Select(x => !x).ToArray();
                var order = PruneUtil.Shuffle(calib.Train.Count, unchecked(o.Seed * 1_000_003 + round * 7919 + (int)form));
                for (int i = 0; i < order.Length; i += o.GateBatch)
                {
                    ct.ThrowIfCancellationRequested();
                    int c = Math.Min(o.GateBatch, order.Length - i);
                    gates.CopyTo(m.Gates, 0);
                    if (wopt is not null) m.ZeroGrads();
                    var r = m.Step(PruneUtil.Batch(calib.Train, order, i, c), new StepOptions { Backward = true, GateGrads = true, WeightGrads = wopt is not null });
                    // d/dS (CE + λ1·Σ_alive |S|) = ∂CE/∂S + λ1·sign(S)
                    var g = new double[L];
                    double l1 = 0;
                    for (int j = 0; j < L; j++)
                    {
                        if (!alive[j]) continue;
                        g[j] = r.GateGrads![j] + o.Lambda1 * Math.Sign(gates[j]);
                        l1 += Math.Abs(gates[j]);
                    }
                    adam.Step(gates, g, o.GateLr, alive);
                    if (wopt is not null) wopt.Step((float)o.Stage1WeightLr);
                    sel.Steps.Add(new StepLog($"stage1-{form}", round, adam.StepCount, o.GateLr, r.Loss + o.Lambda1 * l1, r.Loss, o.Lambda1 * l1));
                }
                sel.GatesPerRound.Add((float[])gates.Clone());
                var elig = Eligible(m, o.AllowFirst, o.AllowLast);
                var cands = Enumerable.Range(0, L).Where(j => elig[j]).OrderBy(j => Math.Abs(gates[j])).ThenBy(j => j).ToList();
                if (cands.Count == 0) throw new InvalidOperationException("no eligible layer left to remove");
                var take = o.OneShot ? cands.Take(k).ToList() : [cands[0]];
                foreach (var j in take) { sel.Order.Add(j); m.Skip[j] = true; }
                var lastSteps = sel.Steps.Where(x => x.Round == round).ToList();
                log?.Invoke($"elder stage 1 ({form}) round {round + 1}/{rounds}: loss {lastSteps.Average(x => x.Loss):F4}, gates [{string.Join(" ", gates.Select(x => x.ToString("F3")))}] → remove {string.Join(", ", take)}");

                if (ckpt is not null)
                {
                    var prev = ckpt.TryLoad();
                    var meta = prev?.Meta ?? new JsonObject();
                    var steps = new JsonArray();
                    foreach (var x in sel.Steps) steps.Add(new JsonObject { ["phase"] = x.Phase, ["round"] = x.Round, ["step"] = x.Step, ["lr"] = x.Lr, ["loss"] = x.Loss, ["ce"] = x.Ce, ["reg"] = x.Reg });
                    meta[key] = new JsonObject
                    {
                        ["round"] = round + 1, ["adam_step"] = adam.StepCount,
                        ["order"] = new JsonArray(sel.Order.Select(x => (JsonNode)x).ToArray()),
                        ["gates_per_round"] = new JsonArray(sel.GatesPerRound.Select(gr => (JsonNode)new JsonArray(gr.Select(v => (JsonNode)v).ToArray())).ToArray()),
                        ["steps"] = steps,
                    };
                    var arrays = prev?.Arrays ?? new Dictionary<string, float[]>();
                    arrays[key + ".gates"] = (float[])gates.Clone();
                    arrays[key + ".m"] = ToBits(adam.M);
                    arrays[key + ".v"] = ToBits(adam.V);
                    wopt?.SaveState(arrays);
                    ckpt.Save(meta, arrays);
                }
            }
            return sel;
        }
        finally
        {
            // The selection is reported through sel; the model goes back to how it was (gates 1, no new skips).
            skipBefore.CopyTo(m.Skip, 0);
            Array.Fill(m.Gates, 1f);
            m.GateForm = GateForm.Output;
            if (wopt is not null) { wopt.Dispose(); m.FreeGrads(); }
        }
    }

    // The gates' Adam moments are float64; they are stored bit for bit (two float slots per double) so a
    // resumed run continues with exactly the same state.
    static float[] ToBits(double[] a) => System.Runtime.InteropServices.MemoryMarshal.Cast<double, float>(a.AsSpan()).ToArray();
    static double[] FromBits(float[] a) => System.Runtime.InteropServices.MemoryMarshal.Cast<float, double>(a.AsSpan()).ToArray();

    /// <summary>
    /// Stage 1 with the gate form as configured; Auto runs both forms and keeps the set whose removal gives
    /// the lower held-back CE (PRUNING.md: which form wins depends on the model).
    /// </summary>
    public static (GateSelection Chosen, List<GateSelection> All) Select(CausalLM m, CalibrationData calib, int k, ElderOptions o,
        RunCheckpoint? ckpt, Action<string>? log, CancellationToken ct, int evalBatch = 8)
    {
        var forms = o.Form switch
        {
            GateChoice.Output => new[] { GateForm.Output },
            GateChoice.Branch => new[] { GateForm.Branch },
            _ => new[] { GateForm.Output, GateForm.Branch },
        };
        var all = new List<GateSelection>();
        foreach (var f in forms)
        {
            var sel = SelectLayers(m, calib, k, f, o, ckpt, log, ct);
            sel.HeldBackCe = PruneUtil.WithRemoved(m, sel.Order, () => PruneUtil.MeanCE(m, calib.HeldBack, evalBatch, ct));
            log?.Invoke($"elder ({f} gate): removing [{string.Join(", ", sel.Order.Select(i => m.OriginalLayerIndex[i]))}] gives held-back CE {sel.HeldBackCe:F4}");
            all.Add(sel);
        }
        return (all.MinBy(s => s.HeldBackCe)!, all);
    }

    /// <summary>
    /// Default stage-2 training settings per recipe (DESIGN.md §4 / PRUNING.md). `--method elder` trains the
    /// configured epochs as the paper does (held-back CE is still reported per epoch); `auto` turns on
    /// KeepBestEpoch so the epoch count is chosen on held-back CE.
    /// </summary>
    public static TrainOptions Stage2Options(Stage2 s, ElderOptions o, IReadOnlyList<int> P) => s switch
    {
        Stage2.Regularize => new TrainOptions
        {
            Lr = o.Lr ?? 2e-5, Epochs = o.Epochs ?? 2, Batch = o.Batch, Which = o.Train, Seed = o.Seed,
            DiffRegLayers = P, DiffRegLambda = (float)o.Lambda2, DiffRegNorm = o.RegNorm, EvalRemoved = P, KeepBestEpoch = false,
        },
        Stage2.Finetune => new TrainOptions { Lr = o.Lr ?? 1e-4, Epochs = o.Epochs ?? 4, Batch = o.Batch, Which = o.Train, Seed = o.Seed, EvalRemoved = null, KeepBestEpoch = false },
        Stage2.Distill => new TrainOptions { Lr = o.Lr ?? 1e-4, Epochs = o.Epochs ?? 8, Batch = o.Batch, Which = o.Train, Seed = o.Seed, EvalRemoved = null, KeepBestEpoch = false, DistillWeight = (float)o.DistillWeight, DistillTemperature = (float)o.DistillTemperature },
        _ => throw new ArgumentOutOfRangeException(nameof(s)),
    };

    /// <summary>
    /// Apply stage 2 to the selected set P (current numbering) and delete P from the model.
    /// Regularize trains with P present (gates 1) and removes afterwards; finetune removes first.
    /// </summary>
    public static TrainResult? ApplyStage2(CausalLM m, CalibrationData calib, IReadOnlyList<int> P, Stage2 s, ElderOptions o,
        RunCheckpoint? ckpt, Action<string>? log, CancellationToken ct, TrainOptions? overrideOptions = null, string key = "stage2")
    {
        PruneUtil.ResetGates(m);
        TrainResult? tr = null;
        switch (s)
        {
            case Stage2.Regularize:
                tr = Trainer.Train(m, calib, overrideOptions ?? Stage2Options(s, o, P), "stage2-regularize", ckpt, key, log, ct);
                m.RemoveLayers(P.ToList());
                break;
            case Stage2.Finetune:
            case Stage2.Distill:
                // removed = identity-skipped while training (the same function as deleting them), deleted after
                foreach (var l in P) m.Skip[l] = true;
                tr = Trainer.Train(m, calib, overrideOptions ?? Stage2Options(s, o, P), $"stage2-{s.ToString().ToLowerInvariant()}", ckpt, key, log, ct);
                foreach (var l in P) m.Skip[l] = false;
                m.RemoveLayers(P.ToList());
                break;
            default:
                m.RemoveLayers(P.ToList());
                break;
        }
        return tr;
    }
}
