using ElderCuda.Training;

namespace ElderCuda.Tests.Pruning;

public class CalibrationTests
{
    [Fact]
    public void HeldBackWindowsOverlapNoCalibrationWindowAndDrawsAreSeeded()
    {
        var stream = Enumerable.Range(0, 20_000).Select(i => i % 97).ToArray();
        var o = new CalibrationOptions { SeqLen = 64, Samples = 100, HeldBack = 30, Seed = 5 };
        var a = Calibration.Draw(stream, o);
        var b = Calibration.Draw(stream, o);
        Assert.Equal(a.TrainStarts, b.TrainStarts);
        Assert.Equal(a.HeldBackStarts, b.HeldBackStarts);
        Assert.Equal(30, a.HeldBack.Count);
        foreach (var h in a.HeldBackStarts)
            foreach (var t in a.TrainStarts)
                Assert.True(h + 64 <= t || t + 64 <= h, $"held-back window at {h} overlaps calibration window at {t}");
        var sorted = a.HeldBackStarts.Order().ToArray();
        for (int i = 1; i < sorted.Length; i++) Assert.True(sorted[i] >= sorted[i - 1] + 64, "held-back windows overlap each other");
        Assert.Equal(stream.AsSpan(a.TrainStarts[3], 64).ToArray(), a.Train[3]);
        Assert.NotEqual(a.TrainStarts, Calibration.Draw(stream, o with { Seed = 6 }).TrainStarts);
    }

    [Fact]
    public void DefaultHeldBackIs32OrAQuarterOfFewSamples()
    {
        Assert.Equal(32, new CalibrationOptions { Samples = 128 }.ResolvedHeldBack);
        Assert.Equal(8, new CalibrationOptions { Samples = 32 }.ResolvedHeldBack);
    }

    [Fact]
    public void FolderIsReadInSortedPathOrderWithEndOfTextAfterEachFileAndTrainFractionKeepsTheHead()
    {
        var dir = PruneTestUtil.TempDir();
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "b"));
            File.WriteAllText(Path.Combine(dir, "b", "x.txt"), "0123456789");
            File.WriteAllText(Path.Combine(dir, "a.txt"), "abcdefghij");
            File.WriteAllText(Path.Combine(dir, "skip.md"), "not text");
            var docs = Calibration.ReadDocuments(dir, 0.5);
            Assert.Equal(["abcde", "01234"], docs);
            // a toy encoder: one id per character
            var ids = Calibration.Tokenize(docs, s => s.Select(c => (int)c).ToArray(), -7);
            Assert.Equal("abcde".Select(c => (int)c).Append(-7).Concat("01234".Select(c => (int)c)).Append(-7), ids);

            var jsonl = Path.Combine(dir, "d.jsonl");
            File.WriteAllLines(jsonl, ["{\"text\":\"one\"}", "", "{\"text\":\"two\",\"id\":2}"]);
            Assert.Equal(["one", "two"], Calibration.ReadDocuments(jsonl));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void CosineScheduleWarmsUpLinearlyThenDecaysToZero()
    {
        var s = new LrSchedule(1.0, 100, 10);
        Assert.Equal(0.1, s.At(1), 12);
        Assert.Equal(1.0, s.At(10), 12);
        Assert.Equal(0.5, s.At(55), 12); // halfway through the decay: (1 + cos(π/2))/2
        Assert.Equal(0.0, s.At(100), 12);
    }
}
