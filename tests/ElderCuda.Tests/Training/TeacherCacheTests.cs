using ElderCuda.Tests.Pruning;
using ElderCuda.Training;

namespace ElderCuda.Tests.Training;

/// <summary>
/// Distillation's teacher-logit cache is only a saving: training with it (the teacher's logits from host memory
/// after epoch 1, assembled in a reused buffer and uploaded) gives the same weights as recomputing the teacher every step.
/// </summary>
public class TeacherCacheTests
{
    static float[][] Train(long cacheBytes)
    {
        using var m = PruneTestUtil.Tiny("llama-gqa");
        var calib = PruneTestUtil.Calib(m.Config.VocabSize, samples: 6, heldBack: 2);
        Trainer.Train(m, calib, new TrainOptions
        {
            Lr = 1e-3, Epochs = 3, Batch = 4, KeepBestEpoch = false, DistillWeight = 1f, DistillTemperature = 2f,
            TeacherCacheBytes = cacheBytes,
        }, "test");
        return m.Parameters.Select(p => m.ReadParameter(p.Name)).ToArray();
    }

    [Fact]
    public void CachedTeacherGivesTheSameTrainingAsRecomputing()
    {
        var recomputed = Train(0);
        var cached = Train(1L << 30);
        using var fresh = PruneTestUtil.Tiny("llama-gqa");
        Assert.True(Rel.Error(recomputed[1], fresh.ReadParameter(fresh.Parameters[1].Name)) > 1e-5, "the weights did not move");
        for (int i = 0; i < recomputed.Length; i++)
            Assert.Equal(recomputed[i], cached[i]);
    }
}
