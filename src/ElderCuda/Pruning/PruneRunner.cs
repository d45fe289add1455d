using System.Diagnostics;
using System.Text.Json.Nodes;
using ElderCuda.Model;
using ElderCuda.Training;

namespace ElderCuda.Pruning;

public enum PruneMethod { Elder, ShortGpt, Angular, Sleb, LaCo, Slm, Auto }

public sealed record PruneSettings
{
    public PruneMethod Method { get; init; } = PruneMethod.Elder;
    public double? Ratio { get; init; } = 0.25;
    public int? Count { get; init; }
    public ElderOptions Elder { get; init; } = new();
    public AutoOptions Auto { get; init; } = new();
    /// <summary>Windows SLEB scores on (the first N calibration windows).</summary>
    public int SlebWindows { get; init; } = 32;
    /// <summary>LaCo: cos threshold (0.6 as PRUNING.md), group size; SLM threshold.</summary>
    public double LaCoThreshold { get; init; } = 0.6;
    public int LaCoGroup { get; init; } = 3;
    /// <summary>LaCo: compare a trial merge with the dense model (the paper's Algorithm 1) or with the model merged so far.</summary>
    public bool LaCoCompareToOriginal { get; init; } = true;
    public double SlmThreshold { get; init; } = 0.9;
    /// <summary>Windows LaCo/SLM compare final hidden states on ("a few calibration samples").</summary>
    public int MergeWindows { get; init; } = 8;
    public int EvalBatch { get; init; } = 8;
}

/// <summary>
/// Runs one method on a loaded model and leaves the model pruned (layers deleted and renumbered), filling
/// the report. Resumable through a RunCheckpoint: ELDeR saves after every round, training after every
/// epoch, and every method records its finished selection, so a resumed run skips what is done.
/// </summary>
public static class PruneRunner
{
    public static void Run(CausalLM m, CalibrationData calib, PruneSettings s, PruneReport report,
        RunCheckpoint? ckpt = null, Action<string>? log = null, CancellationToken ct = default)
    {
        int L = m.NumLayers;
        int k = PruneUtil.LayersToRemove(L, s.Ratio, s.Count);
        var sw = Stopwatch.StartNew();
        report.Method = s.Method.ToString().ToLowerInvariant();
        report.LayersBefore = L;
        var orig = m.OriginalLayerIndex.ToArray();
        int bs = s.EvalBatch;

        report.HeldBackCeDense = PruneUtil.MeanCE(m, calib.HeldBack, bs, ct);
        log?.Invoke($"dense held-back CE {report.HeldBackCeDense:F4} on {calib.HeldBack.Count} windows");

        // a finished non-training selection recorded by an interrupted run
        List<int>? Recorded() => ckpt?.TryLoad()?.Meta["selection"] is JsonArray a ? a.Select(x => x!.GetValue<int>()).ToList() : null;
        void Record(List<int> sel)
        {
            if (ckpt is null) return;
            var st = ckpt.TryLoad();
            var meta = st?.Meta ?? new JsonObject();
            meta["selection"] = new JsonArray(sel.Select(x => (JsonNode)x).ToArray());
            ckpt.Save(meta, st?.Arrays ?? new Dictionary<string, float[]>());
        }

        switch (s.Method)
        {
            case PruneMethod.ShortGpt:
            {
                var bi = ShortGpt.BlockInfluence(m, calib.Train, bs, ct);
                report.ScoresPerLayer["shortgpt_bi"] = bi;
                var sel = ShortGpt.Select(bi, k);
                report.RemovalOrder = sel.Select(i => orig[i]).ToList();
                report.Recipe = "ShortGPT: drop the k lowest Block Influence, no training";
                m.RemoveLayers(sel);
                break;
            }
            case PruneMethod.Angular:
            {
                var dist = Angular.Distances(m, calib.Train, k, bs, ct);
                report.ScoresPerLayer[$"angular_d_block{k}_by_start"] = dist;
                int l0 = Angular.BestStart(dist);
                var sel = Enumerable.Range(l0, k).ToList();
                report.RemovalOrder = sel.Select(i => orig[i]).ToList();
                report.Recipe = $"angular distance: drop the block of {k} at the argmin, no healing";
                m.RemoveLayers(sel);
                break;
            }
            case PruneMethod.Sleb:
            {
                var sel = Recorded();
                if (sel is null)
                {
                    var (order, rounds) = Sleb.Select(m, calib.Train.Take(s.SlebWindows).ToList(), k, bs, s.Elder.AllowFirst, s.Elder.AllowLast, log, ct, ckpt);
                    sel = order;
                    for (int r = 0; r < rounds.Count; r++)
                        report.ScoresPerLayer[$"sleb_nll_round{r + 1}"] = Enumerable.Range(0, L).Select(i => rounds[r].NllPerCandidate.TryGetValue(i, out var v) ? v : double.NaN).ToArray();
                    Record(sel);
                }
                report.RemovalOrder = sel.Select(i => orig[i]).ToList();
                report.Recipe = $"SLEB: greedy on total NLL of {Math.Min(s.SlebWindows, calib.Train.Count)} calibration windows, no training";
                m.RemoveLayers(sel);
                break;
            }
            case PruneMethod.LaCo:
            {
                var steps = LaCo.Run(m, calib.Train.Take(s.MergeWindows).ToList(), k, s.LaCoThreshold, s.LaCoGroup, bs, log, ct, s.LaCoCompareToOriginal);
                report.Merges.AddRange(steps);
                report.RemovalOrder = steps.SelectMany(x => x.MergedAwayOriginal).ToList();
                report.Recipe = $"LaCo: θ_l + Σ(θ_k − θ_l) over linear weights, groups ≤ {s.LaCoGroup}, cos ≥ {s.LaCoThreshold} against the {(s.LaCoCompareToOriginal ? "dense" : "merged-so-far")} model (best of sweep if none passes)";
                break;
            }
            case PruneMethod.Slm:
            {
                var wins = Slm.Run(m, calib.Train.Take(s.MergeWindows).ToList(), k, s.SlmThreshold, 0.05, bs, log, ct);
                report.Merges.AddRange(wins);
                report.RemovalOrder = wins.SelectMany(x => x.MergedAwayOriginal).ToList();
                report.Recipe = $"SLM: top-down sliding windows, cos(original, merged) ≥ {s.SlmThreshold} (lowered by 0.05 per sweep if short)";
                report.Notes.Add("SLM merge: the published code collapses θ_b + Σ(θ_j − θ_b) to copying the top layer (in-place add in a loop); this run implements the formula as written, norms from the window's base layer.");
                break;
            }
            case PruneMethod.Elder:
            {
                var eo = s.Elder;
                (GateSelection Chosen, List<GateSelection> All) sel1;
                using (new StageMeter(report, m.Backend, "elder_stage1", log))
                    sel1 = global::ElderCuda.Pruning.Elder.Select(m, calib, k, eo, ckpt, log, ct, bs);
                var (chosen, all) = sel1;
                foreach (var g in all)
                {
                    report.GatesPerRound[g.Form.ToString()] = g.GatesPerRound;
                    report.LossPerStep.AddRange(g.Steps);
                    report.ScoresPerLayer[$"elder_{g.Form.ToString().ToLowerInvariant()}_abs_gate_round1"] = g.GatesPerRound[0].Select(x => (double)Math.Abs(x)).ToArray();
                    report.Candidates.Add(new Candidate($"elder-{g.Form.ToString().ToLowerInvariant()}", g.Order.Select(i => orig[i]).ToList(), g.HeldBackCe));
                }
                report.RemovalOrder = chosen.Order.Select(i => orig[i]).ToList();
                TrainResult? tr;
                using (new StageMeter(report, m.Backend, "elder_stage2", log))
                    tr = global::ElderCuda.Pruning.Elder.ApplyStage2(m, calib, chosen.Order, eo.Stage2, eo, ckpt, log, ct);
                if (tr is not null)
                {
                    report.LossPerStep.AddRange(tr.Steps);
                    var o2 = global::ElderCuda.Pruning.Elder.Stage2Options(eo.Stage2, eo, chosen.Order);
                    // elder trains the configured epochs (KeepBestEpoch off): the model keeps the last epoch
                    int kept = o2.KeepBestEpoch ? tr.BestEpoch : o2.Epochs;
                    report.Stage2Trials.Add(new Stage2Trial(eo.Stage2.ToString().ToLowerInvariant(), o2.Lr, o2.Epochs, kept, tr.HeldBackCe[kept], tr.HeldBackCe));
                }
                bool paper = eo.Form == GateChoice.Output && eo.Stage2 == Stage2.Regularize && !eo.OneShot;
                report.Recipe = (paper ? "ELDeR paper recipe: " : "ELDeR variant: ")
                    + $"{chosen.Form.ToString().ToLowerInvariant()} gate{(eo.Form == GateChoice.Auto ? " (auto, lower held-back CE)" : "")}, "
                    + $"{(eo.OneShot ? "one-shot" : "iterative")} selection, stage 2 {eo.Stage2.ToString().ToLowerInvariant()}";
                break;
            }
            case PruneMethod.Auto:
                AutoPrune.Run(m, calib, k, s.Elder, s.Auto, s.SlebWindows, bs, report, ckpt, log, ct);
                break;
        }
        report.KeptOriginal = m.OriginalLayerIndex.ToList();
        report.LayersAfter = m.NumLayers;
        report.TimingsSeconds["prune"] = sw.Elapsed.TotalSeconds;
        report.HeldBackCePruned = PruneUtil.MeanCE(m, calib.HeldBack, bs, ct);
        log?.Invoke($"pruned: removed [{string.Join(", ", report.Removed)}], held-back CE {report.HeldBackCePruned:F4} (dense {report.HeldBackCeDense:F4})");
    }
}
