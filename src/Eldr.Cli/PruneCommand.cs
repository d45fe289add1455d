using System.CommandLine;
using System.Diagnostics;
using ElderCuda.Backends;
using ElderCuda.IO;
using ElderCuda.IO.Tokenization;
using ElderCuda.Model;
using ElderCuda.Pruning;
using ElderCuda.Training;
using Spectre.Console;

namespace Eldr.Cli;

/// <summary>`eldr prune`: depth pruning with ELDeR and its baselines, export as a Hugging Face checkpoint.</summary>
public static class PruneCommand
{
    public static Command Create()
    {
        var cmd = new Command("prune", "Remove whole layers (ELDeR, ShortGPT, angular, SLEB, LaCo, SLM, auto) and write a Hugging Face checkpoint");
        Option<T> Opt<T>(string name, string desc, Func<T>? def = null)
        {
            var o = new Option<T>(name) { Description = desc };
            if (def is not null) o.DefaultValueFactory = _ => def();
            cmd.Options.Add(o);
            return o;
        }

        var dirArg = new Argument<string?>("dir") { Description = "Hugging Face model folder", Arity = ArgumentArity.ZeroOrOne };
        cmd.Arguments.Add(dirArg);
        var model = Opt<string?>("--model", "Hugging Face model folder (config.json, *.safetensors, tokenizer files)");
        // the model is the positional DIR (or --model, kept for scripts)
        var output = Opt<string?>("--out", "Output folder for the pruned checkpoint, report.json and plots (written atomically)");
        var force = Opt<bool>("--force", "Replace --out if it exists");
        var method = Opt<string>("--method", "elder | shortgpt | angular | sleb | laco | slm | auto", () => "elder");
        var ratio = Opt<double>("--ratio", "Fraction of layers to remove (rounded)", () => 0.25);
        var count = Opt<int?>("--layers", "Number of layers to remove (overrides --ratio)");
        var calib = Opt<string>("--calib", "Calibration text: a .txt file, a folder of *.txt, WikiText-2 raw, or .jsonl with \"text\"");
        calib.Required = true;
        var seqlen = Opt<int?>("--seqlen", "Calibration window length (default min(max_position_embeddings, 2048))");
        var samples = Opt<int>("--samples", "Calibration windows", () => 128);
        var heldback = Opt<int?>("--heldback", "Held-back windows, never trained on; automatic choices use them (default 32, or 25% when --samples < 128)");
        var seed = Opt<int>("--seed", "Random seed (window positions, window order)", () => 0);
        var trainFraction = Opt<double>("--train-fraction", "Use only the first fraction of each calibration file (0.95 = the reference's training split)", () => 1.0);
        var evalFile = Opt<string?>("--eval", "Held-out text for dense vs pruned perplexity (DESIGN.md §6 protocol)");
        var evalSeqlen = Opt<int?>("--eval-seqlen", "Perplexity window length (default = --seqlen)");
        var evalWindows = Opt<int?>("--eval-windows", "Evaluate only the first N windows");
        var noDenseEval = Opt<bool>("--no-dense-eval", "Skip the dense perplexity and zero-shot scores (saves time when they are known)");
        var zeroShotFile = Opt<string?>("--zeroshot", "JSONL multiple-choice items (as eldr zeroshot reads them) for dense vs pruned acc / acc_norm");
        var zeroShotItems = Opt<int?>("--zeroshot-items", "Score only the first N zero-shot items");
        var batch = Opt<int>("--batch", "Windows per training step (stage 2 / fine-tune)", () => 8);
        var evalBatch = Opt<int>("--eval-batch", "Windows per forward pass when scoring", () => 8);
        var device = Cli.DeviceOption; cmd.Options.Add(device);
        var fp32 = Opt<bool>("--fp32", "CUDA: compute in float32 (parity mode) instead of bf16");
        // ELDeR
        var gateForm = Opt<string>("--gate-form", "ELDeR gate: output (paper) | branch | auto (both, lower held-back CE)", () => "output");
        var trainable = Opt<string>("--stage1-train", "ELDeR stage 1 trains: gates | all", () => "gates");
        var oneShot = Opt<bool>("--one-shot", "ELDeR ablation: one pass, remove the k smallest gates");
        var lambda1 = Opt<double>("--lambda1", "ELDeR L1 weight on the gates", () => 5e-3);
        var gateLr = Opt<double>("--gate-lr", "Adam lr for the gates", () => 1e-2);
        var gateBatch = Opt<int>("--gate-batch", "Windows per gate step", () => 1);
        var allowFirst = Opt<bool>("--allow-first", "Let ELDeR/SLEB remove the first layer");
        var allowLast = Opt<bool>("--allow-last", "Let ELDeR/SLEB remove the last layer");
        var stage2 = Opt<string>("--stage2", "regularize (paper) | finetune (remove, then fine-tune) | distill (remove, then fine-tune on the dense model's soft targets mixed with CE) | none", () => "regularize");
        var distillWeight = Opt<double>("--distill-weight", "Stage 2 distill: weight α of the dense model's soft targets (1 − α on CE)", () => 1.0);
        var distillTemp = Opt<double>("--distill-temperature", "Stage 2 distill: softmax temperature T of the soft-target term (its gradient scaled by T²)", () => 2.0);
        var lambda2 = Opt<double>("--lambda2", "Stage-2 weight of Σ R(x_out − x_in) (R normalised: RMS for l2, mean |·| for l1)", () => 0.1);
        var regNorm = Opt<string>("--reg-norm", "l2 | l1", () => "l2");
        var lr = Opt<double?>("--lr", "Stage-2 AdamW lr (default 2e-5 regularize, 1e-4 finetune and distill)");
        var epochs = Opt<int?>("--epochs", "Stage-2 epochs (default 2 regularize, 4 finetune, 8 distill)");
        var trainWhich = Opt<string>("--train-params", "all | no-embed | outside (layers outside the pruned set)", () => "all");
        // auto
        var autoRecipes = Opt<string>("--auto-recipes", "auto: stage-2 recipes to try", () => "none,finetune,distill,regularize");
        var autoFtLrs = Opt<string>("--auto-ft-lrs", "auto: fine-tune learning rates", () => "5e-5,1e-4,2e-4");
        var autoRegLrs = Opt<string>("--auto-reg-lrs", "auto: regularize learning rates", () => "2e-5,1e-4");
        var autoEpochs = Opt<int>("--auto-epochs", "auto: most epochs per trial (best epoch kept)", () => 4);
        var autoDistillLrs = Opt<string>("--auto-distill-lrs", "auto: distill learning rates", () => "1e-4");
        var autoDistillWeights = Opt<string>("--auto-distill-weights", "auto: distill weights α tried", () => "0.5,1");
        var autoDistillTemps = Opt<string>("--auto-distill-temperatures", "auto: distill temperatures tried", () => "1,2");
        var autoDistillEpochs = Opt<int>("--auto-distill-epochs", "auto: most epochs per distill trial (best epoch kept)", () => 8);
        var removeLayers = Opt<string?>("--remove-layers", "auto: remove this fixed set (0-based, original numbering, e.g. 1,5,8) instead of searching candidate sets; stage 2 is still chosen on held-back CE");
        // baselines
        var slebWindows = Opt<int>("--sleb-windows", "SLEB: windows scored per candidate", () => 32);
        var threshold = Opt<double?>("--threshold", "LaCo (default 0.6) / SLM (default 0.9) cosine threshold");
        var group = Opt<int>("--laco-group", "LaCo: most layers per merge group", () => 3);
        var lacoCompare = Opt<string>("--laco-compare", "LaCo: compare trial merges with the dense model (original, the paper's) or the model merged so far (current)", () => "original");
        lacoCompare.AcceptOnlyFromAmong("original", "current");
        var mergeWindows = Opt<int>("--merge-windows", "LaCo/SLM: windows for the final-hidden-state cosine", () => 8);
        // run control
        var ckptDir = Opt<string?>("--checkpoint-dir", "Save resumable state after every round/epoch here");
        var resume = Opt<bool>("--resume", "Continue the run saved in --checkpoint-dir");
        var noPlots = Opt<bool>("--no-plots", "Do not write PNG plots");

        cmd.SetAction(pr =>
        {
            using var cts = new CancellationTokenSource();
            ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); AnsiConsole.MarkupLine("[yellow]interrupt: stopping after the current step; nothing half-written is left[/]"); };
            Console.CancelKeyPress += onCancel;
            try
            {
                // Cli.Guard turns known failures into one clear line; an interrupt says where the resumable state is
                int rc = Cli.Guard(() => Run(pr, cts.Token));
                if (rc == 130 && pr.GetValue(ckptDir) is { } d) Console.Error.WriteLine($"eldr: state saved in {d}; rerun with --resume to continue");
                return rc;
            }
            finally { Console.CancelKeyPress -= onCancel; }
        });
        return cmd;

        int Run(ParseResult pr, CancellationToken ct)
        {
            var total = Stopwatch.StartNew();
            void Log(string s) => AnsiConsole.MarkupLine($"[grey]{DateTime.Now:HH:mm:ss}[/] {Markup.Escape(s)}");
            static T ParseEnum<T>(string v, string opt) where T : struct, Enum
                => Enum.TryParse<T>(v.Replace("-", ""), true, out var r) ? r : throw new ArgumentException($"{opt}: '{v}' is not one of {string.Join(", ", Enum.GetNames<T>()).ToLowerInvariant()}");
            static List<double> Doubles(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(x => double.Parse(x, System.Globalization.CultureInfo.InvariantCulture)).ToList();

            string modelDir = pr.GetValue(dirArg) ?? pr.GetValue(model) ?? throw new ArgumentException("name the model folder: eldr prune DIR ...");
            string? outDir = pr.GetValue(output);
            if (outDir is not null && Directory.Exists(outDir) && !pr.GetValue(force))
                throw new IOException($"{outDir} already exists (pass --force to replace it)");
            var m_ = ParseEnum<PruneMethod>(pr.GetValue(method)!, "--method");
            if (pr.GetValue(removeLayers) is not null && m_ != PruneMethod.Auto) throw new ArgumentException("--remove-layers applies to --method auto only");
            // a bad temperature would otherwise surface only in stage 2, after stage 1's work
            if (!(pr.GetValue(distillTemp) > 0)) throw new ArgumentException($"--distill-temperature must be > 0 (got {pr.GetValue(distillTemp)})");
            if (Doubles(pr.GetValue(autoDistillTemps)!).Any(t => !(t > 0))) throw new ArgumentException($"--auto-distill-temperatures must all be > 0 (got {pr.GetValue(autoDistillTemps)})");
            // the zero-shot items are read before any work, so a bad file fails at once
            var zsItems = pr.GetValue(zeroShotFile) is { } zf ? ElderCuda.Eval.ZeroShot.ReadJsonl(zf, pr.GetValue(zeroShotItems)) : null;
            string? ck = pr.GetValue(ckptDir);
            if (pr.GetValue(resume) && ck is null) throw new ArgumentException("--resume needs --checkpoint-dir");
            var ckpt = ck is null ? null : new RunCheckpoint(ck);
            if (ckpt is not null && ckpt.Exists && !pr.GetValue(resume))
                throw new IOException($"{ck} holds state of an earlier run: pass --resume to continue it, or choose another --checkpoint-dir");

            IBackend backend = BackendFactory.Create(pr.GetValue(device)!, pr.GetValue(fp32));
            using var _b = backend;
            var sw = Stopwatch.StartNew();
            Log($"loading {modelDir} on {backend.Name}");
            // fail before loading when even the weights and one batch will not fit; training state
            // (fp32 master, AdamW moments) moves to host memory by itself when it does not fit
            Cli.CheckMemory(backend, modelDir, pr.GetValue(seqlen) ?? Math.Min(ModelConfig.Load(modelDir).MaxPositionEmbeddings, 2048), pr.GetValue(batch), training: false);
            using var lm = CausalLM.Load(modelDir, backend);
            var tok = TokenizerLoader.Load(modelDir);
            double tLoad = sw.Elapsed.TotalSeconds;

            int T = pr.GetValue(seqlen) ?? Math.Min(lm.Config.MaxPositionEmbeddings, 2048);
            var copt = new CalibrationOptions { SeqLen = T, Samples = pr.GetValue(samples), HeldBack = pr.GetValue(heldback), Seed = pr.GetValue(seed), TrainFraction = pr.GetValue(trainFraction) };
            sw.Restart();
            string src = pr.GetValue(calib)!;
            var docs = Calibration.ReadDocuments(src, copt.TrainFraction);
            int eot = tok.TokenToId(Calibration.EndOfText) ?? tok.EosId ?? lm.Config.EosTokenId
                      ?? throw new ArgumentException("the tokenizer has no <|endoftext|> or EOS token to separate documents");
            var stream = Calibration.Tokenize(docs, tok.Encode, eot);
            var cal = Calibration.Draw(stream, copt, src);
            Log($"calibration: {docs.Count} document(s), {stream.Length} tokens, {cal.Train.Count}×{T} windows + {cal.HeldBack.Count} held-back");
            double tCal = sw.Elapsed.TotalSeconds;

            var eopt = new ElderOptions
            {
                Form = ParseEnum<GateChoice>(pr.GetValue(gateForm)!, "--gate-form"),
                TrainAllInStage1 = ParseEnum<Stage1Train>(pr.GetValue(trainable)!, "--stage1-train") == Stage1Train.All,
                OneShot = pr.GetValue(oneShot), Lambda1 = pr.GetValue(lambda1), GateLr = pr.GetValue(gateLr), GateBatch = pr.GetValue(gateBatch),
                AllowFirst = pr.GetValue(allowFirst), AllowLast = pr.GetValue(allowLast),
                Stage2 = ParseEnum<Stage2>(pr.GetValue(stage2)!, "--stage2"), Lambda2 = pr.GetValue(lambda2), DistillWeight = pr.GetValue(distillWeight),
                DistillTemperature = pr.GetValue(distillTemp),
                RegNorm = ParseEnum<NormKind>(pr.GetValue(regNorm)!, "--reg-norm"), Lr = pr.GetValue(lr), Epochs = pr.GetValue(epochs),
                Batch = pr.GetValue(batch), Seed = pr.GetValue(seed),
                Train = pr.GetValue(trainWhich) switch
                {
                    "all" => TrainParams.All, "no-embed" => TrainParams.NoEmbeddings, "outside" => TrainParams.OutsidePruned,
                    var v => throw new ArgumentException($"--train-params: '{v}' is not one of all, no-embed, outside"),
                },
            };
            var settings = new PruneSettings
            {
                Method = m_, Ratio = pr.GetValue(ratio), Count = pr.GetValue(count), Elder = eopt,
                Auto = new AutoOptions
                {
                    Recipes = pr.GetValue(autoRecipes)!.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(r => ParseEnum<Stage2>(r, "--auto-recipes")).ToList(),
                    FinetuneLrs = Doubles(pr.GetValue(autoFtLrs)!), RegularizeLrs = Doubles(pr.GetValue(autoRegLrs)!), Epochs = pr.GetValue(autoEpochs),
                    DistillLrs = Doubles(pr.GetValue(autoDistillLrs)!),
                    DistillWeights = Doubles(pr.GetValue(autoDistillWeights)!), DistillTemperatures = Doubles(pr.GetValue(autoDistillTemps)!),
                    DistillEpochs = pr.GetValue(autoDistillEpochs),
                    FixedLayers = pr.GetValue(removeLayers) is { } rl
                        ? rl.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(x => int.TryParse(x.Trim(), out var v) ? v : throw new ArgumentException($"--remove-layers: '{x}' is not a layer index")).ToList()
                        : null,
                },
                SlebWindows = pr.GetValue(slebWindows), LaCoGroup = pr.GetValue(group), LaCoCompareToOriginal = pr.GetValue(lacoCompare) == "original", MergeWindows = pr.GetValue(mergeWindows),
                LaCoThreshold = pr.GetValue(threshold) ?? 0.6, SlmThreshold = pr.GetValue(threshold) ?? 0.9, EvalBatch = pr.GetValue(evalBatch),
            };
            var report = new PruneReport { Model = Path.GetFullPath(modelDir), Backend = backend.Name };
            foreach (var o in cmd.Options)
                if (pr.GetResult(o) is { } r) report.Settings[o.Name.TrimStart('-')] = r.Implicit ? DefaultText(pr, o) : pr.GetValue<object?>(o.Name);
            report.Calibration = new()
            {
                ["source"] = src, ["documents"] = docs.Count, ["tokens"] = stream.Length, ["seqlen"] = T, ["samples"] = cal.Train.Count,
                ["heldback"] = cal.HeldBack.Count, ["seed"] = copt.Seed, ["train_fraction"] = copt.TrainFraction,
                ["train_starts"] = cal.TrainStarts, ["heldback_starts"] = cal.HeldBackStarts,
            };
            report.TimingsSeconds["load"] = tLoad;
            if (ckpt is not null)
            {
                // a resumed run must be the same run: same settings (except the run-control flags), same calibration windows
                var fingerprint = new System.Text.Json.Nodes.JsonObject
                {
                    ["settings"] = System.Text.Json.Nodes.JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(
                        report.Settings.Where(kv => kv.Key is not ("resume" or "force" or "out" or "no-plots")).ToDictionary(), PruneReport.Json)),
                    ["train_starts"] = string.Join(",", cal.TrainStarts), ["heldback_starts"] = string.Join(",", cal.HeldBackStarts),
                };
                var st = ckpt.TryLoad();
                if (st is { } prev)
                {
                    if (prev.Meta["run"]?.ToJsonString() != fingerprint.ToJsonString())
                        throw new ArgumentException($"{ck}: the saved state belongs to a run with other settings or calibration windows; resume with the same options");
                    Log($"resuming the run saved in {ck}");
                }
                else ckpt.Save(new System.Text.Json.Nodes.JsonObject { ["run"] = fingerprint }, new Dictionary<string, float[]>());
            }
            report.TimingsSeconds["calibration_tokenize"] = tCal;

            int[]? evalTokens = null;
            int evalT = pr.GetValue(evalSeqlen) ?? T;
            if (pr.GetValue(evalFile) is { } ef)
            {
                if (!File.Exists(ef)) throw new FileNotFoundException($"{ef}: evaluation text not found");
                evalTokens = tok.Encode(File.ReadAllText(ef));
            }
            ZeroShotFigures? ZeroShotOf(string label)
            {
                if (zsItems is null) return null;
                var s3 = Stopwatch.StartNew();
                ElderCuda.Eval.ZeroShotResult z = null!;
                AnsiConsole.Progress().AutoClear(true).Start(ctx =>
                {
                    var task = ctx.AddTask($"zero-shot ({label})", maxValue: 1.0);
                    z = ElderCuda.Eval.ZeroShot.Evaluate(lm, tok, zsItems, Cli.DefaultSeqLen(lm.Config), new Progress<double>(v => task.Value = v), ct);
                });
                report.TimingsSeconds[$"zeroshot_{label}"] = s3.Elapsed.TotalSeconds;
                Log($"{label} zero-shot acc {z.Acc:F4} ± {z.AccStderr:F4}, acc_norm {z.AccNorm:F4} ± {z.AccNormStderr:F4} ({z.Items} items)");
                return new ZeroShotFigures(z.Items, z.Acc, z.AccStderr, z.AccNorm, z.AccNormStderr, pr.GetValue(zeroShotFile)!);
            }
            EvalFigures? Ppl(string label)
            {
                if (evalTokens is null) return null;
                var s2 = Stopwatch.StartNew();
                (double Ppl, double Nll, long Count, int Windows) r = default;
                AnsiConsole.Progress().AutoClear(true).Start(ctx =>
                {
                    var task = ctx.AddTask($"perplexity ({label})");
                    r = PruneUtil.Perplexity(lm, evalTokens, evalT, pr.GetValue(evalWindows), pr.GetValue(evalBatch), (d, n) => task.Value = 100.0 * d / n, ct);
                });
                report.TimingsSeconds[$"perplexity_{label}"] = s2.Elapsed.TotalSeconds;
                Log($"{label} perplexity {r.Ppl:F2} ({r.Windows} windows of {evalT})");
                return new EvalFigures(r.Ppl, r.Nll, r.Count, r.Windows, evalT, pr.GetValue(evalFile)!);
            }

            if (!pr.GetValue(noDenseEval)) { report.DensePerplexity = Ppl("dense"); report.DenseZeroShot = ZeroShotOf("dense"); }
            PruneRunner.Run(lm, cal, settings, report, ckpt, Log, ct);
            // evaluate what a saved checkpoint holds: weights rounded to the file's dtype
            PruneUtil.RoundToFileDType(lm);
            report.PrunedPerplexity = Ppl("pruned");
            report.PrunedZeroShot = ZeroShotOf("pruned");
            report.TimingsSeconds["total"] = total.Elapsed.TotalSeconds;

            if (outDir is not null)
            {
                sw.Restart();
                HfExport.Export(lm, outDir, pr.GetValue(force), extra: dir =>
                {
                    if (!pr.GetValue(noPlots)) report.Plots = Plots.WriteAll(report, dir, report.Notes);
                    report.TimingsSeconds["export"] = sw.Elapsed.TotalSeconds;
                    File.WriteAllText(Path.Combine(dir, "report.json"), report.ToJson());
                }, ct: ct);
                Log($"wrote {outDir} ({lm.NumLayers} layers; removed {string.Join(", ", report.Removed)})");
            }
            else AnsiConsole.WriteLine(report.ToJson());
            var table = new Table().AddColumns("", "value");
            table.AddRow("recipe", Markup.Escape(report.Recipe));
            table.AddRow("removed (original)", string.Join(", ", report.Removed));
            table.AddRow("held-back CE dense → pruned", $"{report.HeldBackCeDense:F4} → {report.HeldBackCePruned:F4}");
            if (report.PrunedPerplexity is { } pp) table.AddRow("perplexity dense → pruned", $"{report.DensePerplexity?.Perplexity:F2} → {pp.Perplexity:F2}");
            if (report.PrunedZeroShot is { } zp)
                table.AddRow("zero-shot acc / acc_norm dense → pruned",
                    $"{report.DenseZeroShot?.Acc:F4} / {report.DenseZeroShot?.AccNorm:F4} → {zp.Acc:F4} / {zp.AccNorm:F4} ({zp.Items} items)");
            AnsiConsole.Write(table);
            return 0;
        }
    }

    enum Stage1Train { Gates, All }

    static object? DefaultText(ParseResult pr, Option o) => pr.GetValue<object?>(o.Name);
}
