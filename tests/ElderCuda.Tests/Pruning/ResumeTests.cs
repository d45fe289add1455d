using ElderCuda.Model;
using ElderCuda.Pruning;
using ElderCuda.Training;

namespace ElderCuda.Tests.Pruning;

/// <summary>An interrupted run resumed from its checkpoint ends exactly where an uninterrupted one does.</summary>
public class ResumeTests
{
    static readonly ElderOptions Opts = new()
    {
        AllowLast = true, GateBatch = 2, Lambda1 = 5e-2, GateLr = 5e-2, Seed = 3, Batch = 4, Epochs = 3, Lr = 1e-3,
    };

    /// <summary>Stage 1 (2 rounds) then a stage 2; optionally cancelled when a log line contains cancelAt.</summary>
    static (List<int> Order, Dictionary<string, float[]> Weights, List<float[]> Gates, List<double> Ce) Run(Stage2 s2, RunCheckpoint? ck, string? cancelAt)
    {
        using var m = PruneTestUtil.Tiny();
        var cal = PruneTestUtil.Calib(m.Config.VocabSize);
        using var cts = new CancellationTokenSource();
        void Log(string line) { if (cancelAt is not null && line.Contains(cancelAt)) cts.Cancel(); }
        var sel = Elder.SelectLayers(m, cal, 2, GateForm.Output, Opts, ck, Log, cts.Token);
        var tr = Elder.ApplyStage2(m, cal, sel.Order, s2, Opts, ck, Log, cts.Token);
        return (sel.Order, PruneUtil.Snapshot(m), sel.GatesPerRound, tr!.HeldBackCe);
    }

    [Theory]
    [InlineData(Stage2.Finetune, "round 1/")]
    [InlineData(Stage2.Finetune, "epoch 1/")]
    [InlineData(Stage2.Regularize, "epoch 2/")]
    public void ResumeAfterAnInterruptGivesTheSameResult(Stage2 s2, string cancelAt)
    {
        var reference = Run(s2, null, null);
        var dir = PruneTestUtil.TempDir();
        try
        {
            var ck = new RunCheckpoint(dir);
            Assert.ThrowsAny<OperationCanceledException>(() => Run(s2, ck, cancelAt));
            Assert.True(ck.Exists);
            Assert.Single(Directory.GetFiles(dir)); // only state.bin: no temporary file left behind
            var resumed = Run(s2, ck, null);
            Assert.Equal(reference.Order, resumed.Order);
            Assert.Equal(reference.Gates.Count, resumed.Gates.Count);
            for (int i = 0; i < reference.Gates.Count; i++) Assert.Equal(reference.Gates[i], resumed.Gates[i]);
            Assert.Equal(reference.Ce, resumed.Ce);
            Assert.Equal(reference.Weights.Keys.Order(), resumed.Weights.Keys.Order());
            foreach (var (k, v) in reference.Weights) Assert.Equal(v, resumed.Weights[k]);
        }
        finally { Directory.Delete(dir, true); }
    }
}
