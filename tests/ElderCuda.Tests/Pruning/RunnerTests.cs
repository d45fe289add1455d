using System.CommandLine;
using System.Text.Json.Nodes;
using ElderCuda.Backends.Cpu;
using ElderCuda.Model;
using ElderCuda.Pruning;
using ElderCuda.Training;

namespace ElderCuda.Tests.Pruning;

public class RunnerTests
{
    [Theory]
    [InlineData(PruneMethod.ShortGpt)]
    [InlineData(PruneMethod.Angular)]
    [InlineData(PruneMethod.Sleb)]
    [InlineData(PruneMethod.LaCo)]
    [InlineData(PruneMethod.Slm)]
    [InlineData(PruneMethod.Elder)]
    [InlineData(PruneMethod.Auto)]
    public void EveryMethodRemovesTheRequestedNumberOfLayersAndReportsIt(PruneMethod method)
    {
        using var m = PruneTestUtil.Tiny("phi");
        var cal = PruneTestUtil.Calib(m.Config.VocabSize);
        var report = new PruneReport();
        var s = new PruneSettings
        {
            Method = method, Count = 2, MergeWindows = 2, SlebWindows = 4, EvalBatch = 4,
            Elder = new ElderOptions { Form = GateChoice.Auto, GateBatch = 2, Batch = 4, Epochs = 1, AllowLast = true },
            Auto = new AutoOptions { FinetuneLrs = [1e-3], DistillLrs = [1e-3], DistillWeights = [1], DistillTemperatures = [2], DistillEpochs = 1, RegularizeLrs = [1e-4], Epochs = 1 },
        };
        PruneRunner.Run(m, cal, s, report);
        Assert.Equal(2, m.NumLayers);
        Assert.Equal(2, report.RemovalOrder.Distinct().Count());
        Assert.Equal(Enumerable.Range(0, 4).Except(report.RemovalOrder).Order(), report.KeptOriginal);
        Assert.Equal(report.KeptOriginal, m.OriginalLayerIndex);
        Assert.False(string.IsNullOrEmpty(report.Recipe));
        Assert.True(double.IsFinite(report.HeldBackCePruned!.Value));
        // report.json is valid JSON with the figures
        var j = JsonNode.Parse(report.ToJson())!;
        Assert.Equal(2, j["removal_order"]!.AsArray().Count);
        if (method == PruneMethod.Elder)
        {
            // per-stage time and memory (item 7's measurement): on the CPU backend no device figure, a host one
            Assert.True(report.TimingsSeconds["elder_stage1"] > 0 && report.TimingsSeconds["elder_stage2"] > 0);
            Assert.False(report.PeakMemoryBytes.ContainsKey("device_elder_stage1"));
            Assert.True(report.PeakMemoryBytes["host_after_elder_stage2"] >= report.PeakMemoryBytes["host_after_elder_stage1"]);
            Assert.True(report.PeakMemoryBytes["host_after_elder_stage1"] > 0);
            Assert.NotNull(j["peak_memory_bytes"]);
        }
        if (method == PruneMethod.Auto)
        {
            Assert.Equal(4, report.Candidates.Count); // elder-output, elder-branch, sleb, shortgpt
            Assert.Equal(4, report.Stage2Trials.Count); // none, finetune, distill, regularize
            // the chosen stage 2 is the trial with the lowest held-back CE, and that is what the model now gives
            Assert.Equal(report.Stage2Trials.Min(t => t.HeldBackCe), report.HeldBackCePruned!.Value, 9);
        }
    }

    [Fact]
    public void PruneCommandWritesACheckpointAndReportThatReload()
    {
        var root = PruneTestUtil.TempDir();
        var outDir = Path.Combine(root, "pruned");
        try
        {
            var cmd = new RootCommand { Eldr.Cli.PruneCommand.Create() };
            int rc = cmd.Parse([
                "prune", "--model", TestPaths.BundledModel, "--calib", Path.Combine(TestPaths.RepoRoot, "data", "calib-train-sample.txt"),
                "--method", "shortgpt", "--layers", "2", "--seqlen", "32", "--samples", "4", "--heldback", "2", "--device", "cpu",
                "--eval", Path.Combine(TestPaths.RepoRoot, "data", "corpus-heldout.txt"), "--eval-windows", "2", "--out", outDir, "--no-plots",
            ]).Invoke();
            Assert.Equal(0, rc);
            var rep = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "report.json")))!;
            Assert.Equal("shortgpt", rep["method"]!.GetValue<string>());
            Assert.Equal(10, rep["layers_after"]!.GetValue<int>());
            Assert.True(rep["pruned_perplexity"]!["perplexity"]!.GetValue<double>() > 1);
            using var back = CausalLM.Load(outDir, new CpuBackend());
            Assert.Equal(10, back.NumLayers);
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void PruneCommandScoresZeroShotOnTheDenseAndTheSavedModel()
    {
        var root = PruneTestUtil.TempDir();
        var outDir = Path.Combine(root, "pruned");
        string items = Path.Combine(root, "items.jsonl");
        File.WriteAllLines(items, [
            """{"ctx": "It is a truth universally acknowledged, that a single man in possession of a good fortune,", "endings": ["must be in want of a wife.", "the the the the.", "Mr. Darcy said nothing."], "label": 0}""",
            """{"ctx": "She was the youngest of the two daughters of a most affectionate,", "endings": ["indulgent father.", "of the of of.", "zebra crossing."], "label": 0}""",
            """{"ctx": "The President said that the Congress", "endings": ["must act now.", "was a fish.", "the of and."], "label": 0}""",
        ]);
        try
        {
            int rc = new RootCommand { Eldr.Cli.PruneCommand.Create() }.Parse([
                "prune", "--model", TestPaths.BundledModel, "--calib", Path.Combine(TestPaths.RepoRoot, "data", "calib-train-sample.txt"),
                "--method", "shortgpt", "--layers", "3", "--seqlen", "32", "--samples", "4", "--heldback", "2", "--device", "cpu",
                "--zeroshot", items, "--out", outDir, "--no-plots",
            ]).Invoke();
            Assert.Equal(0, rc);
            var rep = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "report.json")))!;
            var zsItems = ElderCuda.Eval.ZeroShot.ReadJsonl(items);
            var tok = ElderCuda.IO.Tokenization.TokenizerLoader.Load(TestPaths.BundledModel);
            // what eldr prune reports is what the dense checkpoint and the exported one score
            foreach (var (key, dir) in new[] { ("dense_zero_shot", TestPaths.BundledModel), ("pruned_zero_shot", outDir) })
            {
                using var m = CausalLM.Load(dir, new CpuBackend());
                var z = ElderCuda.Eval.ZeroShot.Evaluate(m, tok, zsItems, 512);
                Assert.Equal(3, rep[key]!["items"]!.GetValue<int>());
                Assert.Equal(z.Acc, rep[key]!["acc"]!.GetValue<double>());
                Assert.Equal(z.AccNorm, rep[key]!["acc_norm"]!.GetValue<double>());
            }
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void PruneCommandResumesOnlyTheSameRun()
    {
        var root = PruneTestUtil.TempDir();
        try
        {
            string ck = Path.Combine(root, "ck");
            int Prune(string outName, string method, params string[] extra) => new RootCommand { Eldr.Cli.PruneCommand.Create() }.Parse([
                "prune", "--model", TestPaths.BundledModel, "--calib", Path.Combine(TestPaths.RepoRoot, "data", "calib-train-sample.txt"),
                "--method", method, "--layers", "1", "--seqlen", "32", "--samples", "4", "--heldback", "2", "--sleb-windows", "2", "--device", "cpu",
                "--out", Path.Combine(root, outName), "--no-plots", "--checkpoint-dir", ck, .. extra,
            ]).Invoke();
            Assert.Equal(0, Prune("a", "sleb"));
            Assert.Equal(2, Prune("b", "sleb")); // state exists and --resume was not given
            Assert.Equal(2, Prune("b", "shortgpt", "--resume")); // other settings
            Assert.Equal(0, Prune("b", "sleb", "--resume"));
            var a = JsonNode.Parse(File.ReadAllText(Path.Combine(root, "a", "report.json")))!;
            var b = JsonNode.Parse(File.ReadAllText(Path.Combine(root, "b", "report.json")))!;
            Assert.Equal(a["removal_order"]!.ToJsonString(), b["removal_order"]!.ToJsonString());
            Assert.Equal(a["held_back_ce_pruned"]!.GetValue<double>(), b["held_back_ce_pruned"]!.GetValue<double>());
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void AutoWithAFixedSetTriesEveryDistillSettingAndKeepsTheBest()
    {
        using var m = PruneTestUtil.Tiny("llama-gqa");
        var cal = PruneTestUtil.Calib(m.Config.VocabSize);
        var report = new PruneReport();
        var s = new PruneSettings
        {
            Method = PruneMethod.Auto, Count = 2, EvalBatch = 4,
            Elder = new ElderOptions { Batch = 4 },
            Auto = new AutoOptions
            {
                Recipes = [Stage2.None, Stage2.Finetune, Stage2.Distill], FinetuneLrs = [1e-3], DistillLrs = [2e-3],
                DistillWeights = [0.5, 1.0], DistillTemperatures = [1, 2], Epochs = 1, DistillEpochs = 2, FixedLayers = [2, 1],
            },
        };
        PruneRunner.Run(m, cal, s, report);
        Assert.Equal([0, 3], report.KeptOriginal);
        Assert.Equal("fixed", Assert.Single(report.Candidates).Name);
        // none + finetune + 2 α × 2 T distill trials, each with its own settings in the report
        Assert.Equal(6, report.Stage2Trials.Count);
        var distill = report.Stage2Trials.Where(t => t.Recipe == "distill").ToList();
        Assert.Equal(4, distill.Count);
        Assert.Equal([(0.5, 1.0), (0.5, 2.0), (1.0, 1.0), (1.0, 2.0)], distill.Select(t => (t.DistillWeight, t.DistillTemperature)));
        Assert.All(distill, t => { Assert.Equal(2e-3, t.Lr); Assert.Equal(2, t.Epochs); Assert.Equal(3, t.HeldBackCePerEpoch.Count); });
        Assert.Equal(1, report.Stage2Trials.Single(t => t.Recipe == "finetune").Epochs);
        Assert.Equal(report.Stage2Trials.Min(t => t.HeldBackCe), report.HeldBackCePruned!.Value, 9);
    }

    [Fact]
    public void RemoveLayersIsParsedAndChecked()
    {
        var root = PruneTestUtil.TempDir();
        try
        {
            int Prune(string method, params string[] extra) => new RootCommand { Eldr.Cli.PruneCommand.Create() }.Parse([
                "prune", "--model", TestPaths.BundledModel, "--calib", Path.Combine(TestPaths.RepoRoot, "data", "calib-train-sample.txt"),
                "--method", method, "--layers", "2", "--seqlen", "32", "--samples", "4", "--heldback", "2", "--device", "cpu",
                "--auto-recipes", "none", "--out", Path.Combine(root, "o"), "--force", "--no-plots", .. extra,
            ]).Invoke();
            Assert.Equal(0, Prune("auto", "--remove-layers", "7, 3"));
            var rep = JsonNode.Parse(File.ReadAllText(Path.Combine(root, "o", "report.json")))!;
            Assert.Equal("[3,7]", rep["removed"]!.ToJsonString());
            Assert.Equal("fixed", rep["candidates"]![0]!["name"]!.GetValue<string>());
            Assert.NotEqual(0, Prune("auto", "--remove-layers", "3"));          // one layer named, two to remove
            Assert.NotEqual(0, Prune("auto", "--remove-layers", "3,12"));       // no layer 12 in a 12-layer model
            Assert.NotEqual(0, Prune("auto", "--remove-layers", "3,x"));
            Assert.NotEqual(0, Prune("shortgpt", "--remove-layers", "3,7"));   // auto only
        }
        finally { Directory.Delete(root, true); }
    }
}
