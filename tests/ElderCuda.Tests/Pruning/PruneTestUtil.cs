using ElderCuda.Backends.Cpu;
using ElderCuda.Model;
using ElderCuda.Training;

namespace ElderCuda.Tests.Pruning;

static class PruneTestUtil
{
    public static CausalLM Tiny(string family = "llama-gqa") => CausalLM.Load(TestPaths.HfTiny(family), new CpuBackend());

    /// <summary>A synthetic calibration set for the tiny fixtures (vocab 256): a seeded random stream with some repetition so the model has something to predict.</summary>
    public static CalibrationData Calib(int vocab, int samples = 8, int heldBack = 4, int seqLen = 16, int seed = 0)
    {
        var rng = new Random(1234);
        var stream = new int[6000];
        for (int i = 0; i < stream.Length; i++) stream[i] = i >= 3 && rng.NextDouble() < 0.5 ? stream[i - 3] : rng.Next(vocab);
        return Calibration.Draw(stream, new CalibrationOptions { SeqLen = seqLen, Samples = samples, HeldBack = heldBack, Seed = seed });
    }

    public static string TempDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "eldr-test-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(d);
        return d;
    }
}
