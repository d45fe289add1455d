using System.Text.Json.Nodes;
using ElderCuda.Backends.Cpu;
using ElderCuda.IO;
using ElderCuda.IO.Safetensors;
using ElderCuda.Model;
using ElderCuda.Pruning;

namespace ElderCuda.Tests.Pruning;

public class ExportTests
{
    static float[] Logits(CausalLM m, TokenBatch b) => m.Step(b, new StepOptions { KeepLogits = true }).Logits!;

    [Theory]
    [InlineData("llama3-tied", new[] { 1 })]
    [InlineData("opt", new[] { 0, 2 })]
    [InlineData("phi", new[] { 3 })]
    public void ExportedCheckpointReloadsWithTheSameLogits(string family, int[] remove)
    {
        using var m = PruneTestUtil.Tiny(family);
        int L = m.NumLayers;
        m.RemoveLayers(remove);
        var batch = PruneUtil.Batch(PruneTestUtil.Calib(m.Config.VocabSize).Train, 0, 2);
        var before = Logits(m, batch);
        var root = PruneTestUtil.TempDir();
        var outDir = Path.Combine(root, "pruned");
        try
        {
            HfExport.Export(m, outDir);
            // nothing temporary left beside the output
            Assert.Equal(["pruned"], Directory.GetFileSystemEntries(root).Select(Path.GetFileName));
            using var back = CausalLM.Load(outDir, new CpuBackend());
            Assert.Equal(L - remove.Length, back.NumLayers);
            var after = Logits(back, batch);
            Assert.Equal(before, after); // F32 fixtures: the same weights give bit-identical logits

            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")))!;
            Assert.Equal(L - remove.Length, cfg["num_hidden_layers"]!.GetValue<int>());
            using var ck = Checkpoint.Open(outDir);
            // renumbered 0..L'−1, nothing of a removed index left over
            var layerIdx = ck.Names.Where(n => n.Contains("layers.")).Select(n => int.Parse(n.Split("layers.")[1].Split('.')[0])).Distinct().Order();
            Assert.Equal(Enumerable.Range(0, L - remove.Length), layerIdx);
            if (m.Config.TieWordEmbeddings) Assert.DoesNotContain("lm_head.weight", ck.Names);
            Assert.True(File.Exists(Path.Combine(outDir, "generation_config.json")));
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void BundledBf16ModelExportsInBf16AndReloadsWithTheSameLogits()
    {
        using var m = CausalLM.Load(TestPaths.BundledModel, new CpuBackend());
        m.RemoveLayers([3, 5, 8]);
        PruneUtil.RoundToFileDType(m);
        var ids = Enumerable.Range(0, 64).Select(i => (i * 37) % m.Config.VocabSize).ToArray();
        var before = Logits(m, TokenBatch.Single(ids));
        var root = PruneTestUtil.TempDir();
        var outDir = Path.Combine(root, "out");
        try
        {
            HfExport.Export(m, outDir);
            using var ck = Checkpoint.Open(outDir);
            Assert.All(ck.Names, n => Assert.Equal(ElderCuda.Tensors.DType.BF16, ck.Info(n).DType));
            Assert.DoesNotContain("lm_head.weight", ck.Names); // tied
            foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt" })
                Assert.Equal(File.ReadAllBytes(Path.Combine(TestPaths.BundledModel, f)), File.ReadAllBytes(Path.Combine(outDir, f)));
            using var back = CausalLM.Load(outDir, new CpuBackend());
            Assert.Equal(before, Logits(back, TokenBatch.Single(ids)));
            Assert.Equal([0, 1, 2, 4, 6, 7, 9, 10, 11], m.OriginalLayerIndex);
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void ExportRefusesToOverwriteAndACancelledExportLeavesNothing()
    {
        using var m = PruneTestUtil.Tiny("llama-gqa");
        var root = PruneTestUtil.TempDir();
        var outDir = Path.Combine(root, "o");
        try
        {
            Directory.CreateDirectory(outDir);
            Assert.Throws<IOException>(() => HfExport.Export(m, outDir));
            Directory.Delete(outDir);
            using var cts = new CancellationTokenSource();
            Assert.ThrowsAny<OperationCanceledException>(() => HfExport.Export(m, outDir, extra: _ => cts.Cancel(), ct: cts.Token));
            Assert.Empty(Directory.GetFileSystemEntries(root));
        }
        finally { Directory.Delete(root, true); }
    }
}
