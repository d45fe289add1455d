using System.Text.Json.Nodes;
using ElderCuda.Model;
using ElderCuda.Training;

namespace ElderCuda.Pruning;

public sealed record AutoOptions
{
    /// <summary>Stage-2 recipes to try; each is judged on held-back CE once the layers are removed.</summary>
    public IReadOnlyList<Stage2> Recipes { get; init; } = [Stage2.None, Stage2.Finetune, Stage2.Distill, Stage2.Regularize];
    /// <summary>Learning rates tried for fine-tuning (PRUNING.md: about 1e-4 won).</summary>
    public IReadOnlyList<double> FinetuneLrs { get; init; } = [5e-5, 1e-4, 2e-4];
    /// <summary>Learning rates tried for regularize-then-remove.</summary>
    public IReadOnlyList<double> RegularizeLrs { get; init; } = [2e-5, 1e-4];
    /// <summary>Learning rates tried for distill; null = the fine-tune grid. 1e-4: fine-tuning chose it on both models (bench/RESULTS.md).</summary>
    public IReadOnlyList<double>? DistillLrs { get; init; } = [1e-4];
    /// <summary>
    /// Distill: weights α of the dense model's soft targets tried (1 − α on CE). At PRUNING.md's scale pure KD
    /// (α = 1) had the lowest held-back CE on both models, 0.5 next, plain CE last (bench/RESULTS.md).
    /// </summary>
    public IReadOnlyList<double> DistillWeights { get; init; } = [0.5, 1.0];
    /// <summary>Distill: softmax temperatures tried for the KD term (T 2 beat T 1 by 0.004 nats of held-back CE on llama-12L).</summary>
    public IReadOnlyList<double> DistillTemperatures { get; init; } = [1, 2];
    /// <summary>Most epochs per trial; the epoch count is chosen within each trial on held-back CE.</summary>
    public int Epochs { get; init; } = 4;
    /// <summary>
    /// Most epochs per distill trial (null = Epochs). The soft targets overfit less than CE: on llama-12L held-back CE
    /// still fell after 4 epochs under KD, and 8 epochs beat 4 (bench/RESULTS.md).
    /// </summary>
    public int? DistillEpochs { get; init; } = 8;
    /// <summary>
    /// A fixed layer set to remove (0-based, original numbering): skips the candidate search and runs only the
    /// stage-2 selection on it. Null = search the candidate sets.
    /// </summary>
    public IReadOnlyList<int>? FixedLayers { get; init; }
}

/// <summary>
/// "Best available" (DESIGN.md §4, PRUNING.md's recipe): candidate layer sets from the ELDeR gates
/// (output and branch forms), SLEB and ShortGPT; keep the set with the lowest held-back CE once removed;
/// then choose stage 2 (none / remove-then-fine-tune / remove-then-distill from the dense model /
/// regularize-then-remove, over a small grid of learning rates and distillation weights and temperatures,
/// epochs chosen per trial) on held-back CE, and apply the winner. Nothing is chosen on the
/// calibration windows themselves or on evaluation text.
/// </summary>
public static class AutoPrune
{
    public static void Run(CausalLM m, CalibrationData calib, int k, ElderOptions eo, AutoOptions ao, int slebWindows, int evalBatch,
        PruneReport report, RunCheckpoint? ckpt, Action<string>? log, CancellationToken ct)
    {
        var meta = ckpt?.TryLoad()?.Meta;
        List<int> chosen;
        if (meta?["auto.selection"] is JsonObject sj)
        {
            chosen = sj["layers"]!.AsArray().Select(x => x!.GetValue<int>()).ToList();
            foreach (var c in sj["candidates"]!.AsArray())
                report.Candidates.Add(new Candidate(c!["name"]!.GetValue<string>(), c["removed"]!.AsArray().Select(x => x!.GetValue<int>()).ToList(), c["ce"]!.GetValue<double>()));
            log?.Invoke($"auto: resumed with candidate set [{string.Join(", ", chosen.Select(i => m.OriginalLayerIndex[i]))}]");
        }
        else if (ao.FixedLayers is { } fixedSet)
        {
            foreach (var l in fixedSet)
                if (Array.IndexOf(m.OriginalLayerIndex, l) < 0) throw new ArgumentException($"--remove-layers: layer {l} is not in this {m.NumLayers}-layer model");
            if (fixedSet.Distinct().Count() != k)
                throw new ArgumentException($"--remove-layers names {fixedSet.Distinct().Count()} layer(s), but {k} are to be removed (--ratio/--layers)");
            chosen = fixedSet.Distinct().Select(l => Array.IndexOf(m.OriginalLayerIndex, l)).ToList();
            double ce = PruneUtil.WithRemoved(m, chosen, () => PruneUtil.MeanCE(m, calib.HeldBack, evalBatch, ct));
            report.Candidates.Add(new Candidate("fixed", chosen.Select(i => m.OriginalLayerIndex[i]).ToList(), ce));
            log?.Invoke($"auto: fixed layer set [{string.Join(", ", fixedSet.Order())}] (given, not searched) → held-back CE {ce:F4}");
        }
        else
        {
            var cands = new List<(string Name, List<int> Layers)>();
            var (_, gateSels) = Elder.Select(m, calib, k, eo with { Form = GateChoice.Auto }, ckpt, log, ct, evalBatch);
            foreach (var g in gateSels)
            {
                cands.Add(($"elder-{g.Form.ToString().ToLowerInvariant()}", g.Order));
                report.GatesPerRound[g.Form.ToString()] = g.GatesPerRound;
                report.LossPerStep.AddRange(g.Steps);
            }
            var slebWin = calib.Train.Take(slebWindows).ToList();
            var (slebOrder, _) = Sleb.Select(m, slebWin, k, evalBatch, eo.AllowFirst, eo.AllowLast, log, ct, ckpt);
            cands.Add(("sleb", slebOrder));
            var bi = ShortGpt.BlockInfluence(m, calib.Train, evalBatch, ct);
            report.ScoresPerLayer["shortgpt_bi"] = bi;
            cands.Add(("shortgpt", ShortGpt.Select(bi, k, Elder.Eligible(m, true, true))));

            var scored = new List<(string Name, List<int> Layers, double Ce)>();
            foreach (var (name, layers) in cands)
            {
                var dup = scored.FirstOrDefault(s => s.Layers.Order().SequenceEqual(layers.Order()));
                double ce = dup.Layers is not null ? dup.Ce : PruneUtil.WithRemoved(m, layers, () => PruneUtil.MeanCE(m, calib.HeldBack, evalBatch, ct));
                scored.Add((name, layers, ce));
                report.Candidates.Add(new Candidate(name, layers.Select(i => m.OriginalLayerIndex[i]).ToList(), ce));
                log?.Invoke($"auto: candidate {name} removes [{string.Join(", ", layers.Select(i => m.OriginalLayerIndex[i]).Order())}] → held-back CE {ce:F4}");
            }
            var best = scored.MinBy(s => s.Ce);
            chosen = best.Layers;
            log?.Invoke($"auto: chose {best.Name}");
            if (ckpt is not null)
            {
                var st = ckpt.TryLoad();
                var mj = st?.Meta ?? new JsonObject();
                mj["auto.selection"] = new JsonObject
                {
                    ["layers"] = new JsonArray(chosen.Select(x => (JsonNode)x).ToArray()),
                    ["candidates"] = new JsonArray(report.Candidates.Select(c => (JsonNode)new JsonObject
                    {
                        ["name"] = c.Name, ["removed"] = new JsonArray(c.RemovedOriginal.Select(x => (JsonNode)x).ToArray()), ["ce"] = c.HeldBackCe,
                    }).ToArray()),
                };
                ckpt.Save(mj, st?.Arrays ?? new Dictionary<string, float[]>());
            }
        }
        report.RemovalOrder = chosen.Select(i => m.OriginalLayerIndex[i]).ToList();

        // ---- stage 2 trials on the chosen set ----
        var dense = PruneUtil.Snapshot(m);
        var trials = new List<(Stage2 Recipe, double Lr, double Alpha, double Temp)>();
        foreach (var r in ao.Recipes)
        {
            if (r == Stage2.None) trials.Add((r, 0, 0, 1));
            else if (r == Stage2.Distill)
            {
                foreach (var lr in ao.DistillLrs ?? ao.FinetuneLrs)
                    foreach (var a in ao.DistillWeights)
                        foreach (var t in ao.DistillTemperatures) trials.Add((r, lr, a, t));
            }
            else foreach (var lr in r == Stage2.Finetune ? ao.FinetuneLrs : ao.RegularizeLrs) trials.Add((r, lr, 0, 1));
        }
        Dictionary<string, float[]>? bestW = null;
        (Stage2 Recipe, double Lr, double Ce, double Alpha, double Temp) best2 = (Stage2.None, 0, double.PositiveInfinity, 0, 1);
        int done = 0;
        if (ckpt?.TryLoad() is { } saved && saved.Meta["auto.trials"] is JsonObject tj)
        {
            done = tj["done"]!.GetValue<int>();
            foreach (var t in tj["list"]!.AsArray())
                report.Stage2Trials.Add(new Stage2Trial(t!["recipe"]!.GetValue<string>(), t["lr"]!.GetValue<double>(), t["epochs"]!.GetValue<int>(),
                    t["best_epoch"]!.GetValue<int>(), t["ce"]!.GetValue<double>(), t["per_epoch"]!.AsArray().Select(x => x!.GetValue<double>()).ToList(),
                    t["alpha"]?.GetValue<double>() ?? 0, t["temperature"]?.GetValue<double>() ?? 1));
            best2 = (Enum.Parse<Stage2>(tj["best_recipe"]!.GetValue<string>()), tj["best_lr"]!.GetValue<double>(), tj["best_ce"]!.GetValue<double>(),
                tj["best_alpha"]?.GetValue<double>() ?? 0, tj["best_temperature"]?.GetValue<double>() ?? 1);
            var bw = saved.Arrays.Where(kv => kv.Key.StartsWith("auto.best.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key["auto.best.".Length..], kv => kv.Value);
            if (bw.Count > 0) bestW = bw;
        }
        for (int ti = done; ti < trials.Count; ti++)
        {
            var (recipe, lr, alpha, temp) = trials[ti];
            PruneUtil.Restore(m, dense);
            PruneUtil.ResetGates(m);
            Stage2Trial trial;
            if (recipe == Stage2.None)
            {
                double ce = PruneUtil.WithRemoved(m, chosen, () => PruneUtil.MeanCE(m, calib.HeldBack, evalBatch, ct));
                trial = new Stage2Trial("none", 0, 0, 0, ce, [ce]);
            }
            else
            {
                int epochs = recipe == Stage2.Distill ? ao.DistillEpochs ?? ao.Epochs : ao.Epochs;
                var opts = Elder.Stage2Options(recipe, eo, chosen) with { Lr = lr, Epochs = epochs, EvalBatch = evalBatch, KeepBestEpoch = true };
                if (recipe == Stage2.Distill) opts = opts with { DistillWeight = (float)alpha, DistillTemperature = (float)temp };
                if (recipe is Stage2.Finetune or Stage2.Distill) foreach (var l in chosen) m.Skip[l] = true;
                string label = $"auto-{recipe.ToString().ToLowerInvariant()}-lr{lr:G3}" + (recipe == Stage2.Distill ? $"-a{alpha:G3}-T{temp:G3}" : "");
                var tr = Trainer.Train(m, calib, opts, label, ckpt, $"auto.trial.{ti}", log, ct);
                foreach (var l in chosen) m.Skip[l] = false;
                // the trial list holds α 0, T 1 for every recipe but distill
                trial = new Stage2Trial(recipe.ToString().ToLowerInvariant(), lr, epochs, tr.BestEpoch, tr.BestHeldBackCe, tr.HeldBackCe, alpha, temp);
                report.LossPerStep.AddRange(tr.Steps);
            }
            report.Stage2Trials.Add(trial);
            log?.Invoke($"auto: stage 2 {trial.Recipe} lr {lr:G3}" + (recipe == Stage2.Distill ? $" α {alpha:G3} T {temp:G3}" : "")
                        + $" → held-back CE {trial.HeldBackCe:F4} (epoch {trial.EpochKept})");
            if (trial.HeldBackCe < best2.Ce)
            {
                best2 = (recipe, lr, trial.HeldBackCe, alpha, temp);
                bestW = recipe == Stage2.None ? null : PruneUtil.Snapshot(m);
            }
            if (ckpt is not null)
            {
                var st = ckpt.TryLoad();
                var mj = st?.Meta ?? new JsonObject();
                mj["auto.trials"] = new JsonObject
                {
                    ["done"] = ti + 1, ["best_recipe"] = best2.Recipe.ToString(), ["best_lr"] = best2.Lr, ["best_ce"] = best2.Ce,
                    ["best_alpha"] = best2.Alpha, ["best_temperature"] = best2.Temp,
                    ["list"] = new JsonArray(report.Stage2Trials.Select(t => (JsonNode)new JsonObject
                    {
                        ["recipe"] = t.Recipe, ["lr"] = t.Lr, ["epochs"] = t.Epochs, ["best_epoch"] = t.EpochKept, ["ce"] = t.HeldBackCe,
                        ["per_epoch"] = new JsonArray(t.HeldBackCePerEpoch.Select(x => (JsonNode)x).ToArray()),
                        ["alpha"] = t.DistillWeight, ["temperature"] = t.DistillTemperature,
                    }).ToArray()),
                };
                var arrays = new Dictionary<string, float[]>();
                if (bestW is not null) foreach (var (kk, v) in bestW) arrays["auto.best." + kk] = v;
                mj.Remove("train"); // the finished trial's optimiser state is not needed any more
                ckpt.Save(mj, arrays);
            }
        }
        PruneUtil.Restore(m, bestW ?? dense);
        PruneUtil.ResetGates(m);
        report.Recipe = $"auto: layer set from {report.Candidates.MinBy(c => c.HeldBackCe)!.Name}, stage 2 {best2.Recipe.ToString().ToLowerInvariant()}"
                        + (best2.Recipe == Stage2.None ? "" : $" lr {best2.Lr:G3}")
                        + (best2.Recipe == Stage2.Distill ? $" α {best2.Alpha:G3} T {best2.Temp:G3}" : "") + " (chosen on held-back CE)";
        m.RemoveLayers(chosen);
    }
}
