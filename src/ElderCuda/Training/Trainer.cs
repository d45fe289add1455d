using System.Diagnostics;
using System.Text.Json.Nodes;
using ElderCuda.Backends;
using ElderCuda.Model;
using ElderCuda.Pruning;

namespace ElderCuda.Training;

public enum TrainParams { All, NoEmbeddings, OutsidePruned }

public sealed record TrainOptions
{
    public double Lr { get; init; } = 1e-4;
    public int Epochs { get; init; } = 4;
    public int Batch { get; init; } = 8;
    public double WarmupFraction { get; init; } = 0.03;
    public bool Cosine { get; init; } = true;
    public float WeightDecay { get; init; }
    public TrainParams Which { get; init; } = TrainParams.All;
    /// <summary>ELDeR stage 2: layers whose x_out − x_in is regularised (current numbering), λ2, norm.</summary>
    public IReadOnlyList<int>? DiffRegLayers { get; init; }
    public float DiffRegLambda { get; init; }
    public NormKind DiffRegNorm { get; init; } = NormKind.L2;
    public int Seed { get; init; }
    /// <summary>Layers to skip when measuring held-back CE (the set that will be removed after training).</summary>
    public IReadOnlyList<int>? EvalRemoved { get; init; }
    /// <summary>Keep the weights of the epoch with the lowest held-back CE (epochs chosen on held-back data).</summary>
    public bool KeepBestEpoch { get; init; } = true;
    public int EvalBatch { get; init; } = 8;
    /// <summary>
    /// Distillation weight α: train on (1 − α)·CE + α·CE(soft targets of the dense model), the teacher being
    /// the checkpoint the model was loaded from (model.SourceDir). 0 = plain CE.
    /// </summary>
    public float DistillWeight { get; init; }
    /// <summary>Distillation temperature T: KD term α·T²·KL(softmax(teacher/T) ‖ softmax(student/T)); 1 = plain soft targets.</summary>
    public float DistillTemperature { get; init; } = 1f;
    /// <summary>
    /// Keep the teacher's logits of every training window in host memory after the first epoch when they
    /// take at most this many bytes (4·windows·T·V), so later epochs skip the teacher's forward pass. 0 = never.
    /// </summary>
    public long TeacherCacheBytes { get; init; } = 3L << 30;
}

public sealed record StepLog(string Phase, int Round, int Step, double Lr, double Loss, double Ce, double Reg);

public sealed class TrainResult
{
    public List<StepLog> Steps { get; } = new();
    /// <summary>Held-back CE before training (index 0) and after each epoch.</summary>
    public List<double> HeldBackCe { get; } = new();
    public int BestEpoch { get; set; }
    public double BestHeldBackCe => HeldBackCe[BestEpoch];
}

/// <summary>
/// Weight training on the calibration windows: remove-then-fine-tune (CE) or ELDeR stage 2
/// (CE + λ2·ΣR(x_out − x_in), DESIGN.md §4). AdamW, cosine after warmup, batch of windows per step,
/// a shuffled window order per epoch from the seed. Held-back CE is measured before and after each
/// epoch; with KeepBestEpoch the best epoch's weights are restored at the end.
/// Resumable: after each epoch the state (weights' fp32 masters, moments, logs) is saved under key.
/// </summary>
public static class Trainer
{
    public static TrainResult Train(CausalLM model, CalibrationData calib, TrainOptions o, string phase,
        RunCheckpoint? ckpt = null, string key = "train", Action<string>? log = null, CancellationToken ct = default)
    {
        var P = o.DiffRegLayers ?? [];
        // a skipped layer (removed-by-identity while trials share one model) never trains
        foreach (var p in model.Parameters)
            p.Trainable = (p.Layer < 0 || !model.Skip[p.Layer]) && o.Which switch
            {
                TrainParams.NoEmbeddings => p.Layer >= 0 || !p.Name.Contains("embed", StringComparison.Ordinal),
                TrainParams.OutsidePruned => p.Layer >= 0 && !(o.EvalRemoved ?? P).Contains(p.Layer),
                _ => true,
            };
        model.EnsureGrads();
        using var opt = new AdamWOptimizer(model.Backend, model.Parameters) { WeightDecay = o.WeightDecay };
        // the dense teacher for distillation: the checkpoint as loaded, never trained
        using var teacherModel = o.DistillWeight > 0 ? CausalLM.Load(model.SourceDir, model.Backend) : null;
        using var teacher = teacherModel is null ? null : new DistillTeacher(teacherModel, calib.Train, o.TeacherCacheBytes);
        int n = calib.Train.Count;
        int stepsPerEpoch = (n + o.Batch - 1) / o.Batch;
        var sched = new LrSchedule(o.Lr, stepsPerEpoch * o.Epochs, (int)Math.Ceiling(o.WarmupFraction * stepsPerEpoch * o.Epochs), 0, o.Cosine);
        var res = new TrainResult();
        Dictionary<string, float[]>? best = null;
        int startEpoch = 0;

        double HeldBack() => o.EvalRemoved is { Count: > 0 } rem
            ? PruneUtil.WithRemoved(model, rem, () => PruneUtil.MeanCE(model, calib.HeldBack, o.EvalBatch, ct))
            : PruneUtil.MeanCE(model, calib.HeldBack, o.EvalBatch, ct);

        var saved = ckpt?.TryLoad();
        if (saved is { } s && s.Meta["train"]?["key"]?.GetValue<string>() == key)
        {
            var t = s.Meta["train"]!.AsObject();
            startEpoch = t["epoch"]!.GetValue<int>();
            res.BestEpoch = t["best_epoch"]!.GetValue<int>();
            foreach (var x in t["heldback_ce"]!.AsArray()) res.HeldBackCe.Add(x!.GetValue<double>());
            foreach (var x in t["steps"]!.AsArray())
                res.Steps.Add(new StepLog(phase, x!["round"]!.GetValue<int>(), x["step"]!.GetValue<int>(), x["lr"]!.GetValue<double>(),
                    x["loss"]!.GetValue<double>(), x["ce"]!.GetValue<double>(), x["reg"]!.GetValue<double>()));
            opt.LoadState(s.Arrays);
            var b = s.Arrays.Where(kv => kv.Key.StartsWith("best.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key[5..], kv => kv.Value);
            if (b.Count > 0) best = b;
            log?.Invoke($"{phase}: resumed after epoch {startEpoch}");
        }
        else
        {
            res.HeldBackCe.Add(HeldBack());
            log?.Invoke($"{phase}: held-back CE before training {res.HeldBackCe[0]:F4}");
            if (o.KeepBestEpoch) best = PruneUtil.Snapshot(model, p => p.Trainable);
        }

        for (int epoch = startEpoch; epoch < o.Epochs; epoch++)
        {
            long epochStart = Stopwatch.GetTimestamp(), optTicks = 0;
            var hostBefore = opt.HostTimes;
            var order = PruneUtil.Shuffle(n, unchecked(o.Seed * 1_000_003 + epoch * 7919 + 17));
            for (int i = 0; i < n; i += o.Batch)
            {
                ct.ThrowIfCancellationRequested();
                int c = Math.Min(o.Batch, n - i);
                model.ZeroGrads();
                var batch = PruneUtil.Batch(calib.Train, order, i, c);
                var r = model.Step(batch, new StepOptions
                {
                    Backward = true, WeightGrads = true,
                    DiffRegLayers = P.Count > 0 ? P : null, DiffRegLambda = o.DiffRegLambda, DiffRegNorm = o.DiffRegNorm,
                    TeacherLogits = teacher?.Logits(calib.Train, order, i, c),
                    SoftTargetWeight = o.DistillWeight, SoftTargetTemperature = o.DistillTemperature,
                });
                int step = opt.StepCount + 1;
                double lr = sched.At(step);
                long optStart = Stopwatch.GetTimestamp();
                opt.Step((float)lr);
                optTicks += Stopwatch.GetTimestamp() - optStart;
                res.Steps.Add(new StepLog(phase, epoch, step, lr, r.Loss + r.RegLoss, r.Loss, r.RegLoss));
            }
            log?.Invoke($"{phase}: epoch {epoch + 1} timing: " + StepTiming(Stopwatch.GetTimestamp() - epochStart, optTicks, (n + o.Batch - 1) / o.Batch,
                opt.OffloadedToHost ? opt.HostTimes - hostBefore : null));
            double ce = HeldBack();
            res.HeldBackCe.Add(ce);
            if (ce < res.BestHeldBackCe)
            {
                res.BestEpoch = epoch + 1;
                if (o.KeepBestEpoch) best = PruneUtil.Snapshot(model, p => p.Trainable);
            }
            var last = res.Steps.Where(x => x.Round == epoch).ToList();
            log?.Invoke($"{phase}: epoch {epoch + 1}/{o.Epochs} train loss {last.Average(x => x.Loss):F4} (CE {last.Average(x => x.Ce):F4}) held-back CE {ce:F4}");

            if (ckpt is not null)
            {
                var arrays = new Dictionary<string, float[]>();
                opt.SaveState(arrays);
                if (best is not null) foreach (var (k, v) in best) arrays["best." + k] = v;
                var steps = new JsonArray();
                foreach (var x in res.Steps)
                    steps.Add(new JsonObject { ["round"] = x.Round, ["step"] = x.Step, ["lr"] = x.Lr, ["loss"] = x.Loss, ["ce"] = x.Ce, ["reg"] = x.Reg });
                var meta = ckpt.TryLoad()?.Meta ?? new JsonObject();
                meta["train"] = new JsonObject
                {
                    ["key"] = key, ["epoch"] = epoch + 1, ["best_epoch"] = res.BestEpoch,
                    ["heldback_ce"] = new JsonArray(res.HeldBackCe.Select(x => (JsonNode)x).ToArray()), ["steps"] = steps,
                };
                ckpt.Save(meta, MergeArrays(ckpt, arrays));
            }
        }
        if (o.KeepBestEpoch && best is not null && res.BestEpoch != o.Epochs)
        {
            PruneUtil.Restore(model, best);
            log?.Invoke($"{phase}: kept epoch {res.BestEpoch} (lowest held-back CE {res.BestHeldBackCe:F4})");
        }
        model.FreeGrads();
        foreach (var p in model.Parameters) p.Trainable = true;
        return res;
    }

    /// <summary>
    /// "S s/step (forward+backward F s, optimiser O s)", and for a host-offloaded optimiser its three parts, per step: where
    /// a 7B run's time goes (bench/RESULTS.md).
    /// </summary>
    internal static string StepTiming(long epochTicks, long optTicks, int steps, AdamWOptimizer.OffloadTimes? host)
    {
        double f = Stopwatch.Frequency, per = epochTicks / f / steps, opt = optTicks / f / steps;
        var s = $"{per:F3} s/step over {steps} steps (forward+backward {per - opt:F3} s, optimiser {opt:F3} s";
        if (host is { } h) s += $" on the host: gradients down {h.Download / steps:F3} s, AdamW {h.Update / steps:F3} s, weights up {h.Upload / steps:F3} s";
        return s + ")";
    }

    /// <summary>Keep the non-training arrays already in the checkpoint (earlier stages' state) and replace the training ones.</summary>
    static Dictionary<string, float[]> MergeArrays(RunCheckpoint ckpt, Dictionary<string, float[]> train)
    {
        var d = new Dictionary<string, float[]>();
        if (ckpt.TryLoad() is { } s)
            foreach (var (k, v) in s.Arrays)
                if (!k.StartsWith("opt.", StringComparison.Ordinal) && !k.StartsWith("best.", StringComparison.Ordinal)) d[k] = v;
        foreach (var (k, v) in train) d[k] = v;
        return d;
    }
}
