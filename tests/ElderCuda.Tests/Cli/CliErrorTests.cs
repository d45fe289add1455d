namespace ElderCuda.Tests.Cli;

/// <summary>Bad input gets one clear line naming the problem, a non-zero exit, and no stack trace.</summary>
public class CliErrorTests
{
    static void AssertCleanFailure(EldrProcess.Result r, params string[] mustMention)
    {
        Assert.NotEqual(0, r.ExitCode);
        Assert.DoesNotContain("   at ", r.Stderr);          // no .NET stack trace
        Assert.DoesNotContain("Unhandled exception", r.Stderr);
        foreach (var m in mustMention) Assert.Contains(m, r.Stderr, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void TruncatedCheckpointIsAClearError()
    {
        var dir = EldrProcess.CopyModel(TestPaths.HfTiny("llama-gqa"));
        var st = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(st);
        File.WriteAllBytes(st, bytes[..(bytes.Length / 2)]);
        var r = EldrProcess.Run("generate", dir, "--prompt", "x", "--device", "cpu");
        // a tiny fixture has no tokenizer: corrupt the weights of a model that has one instead
        var dir2 = EldrProcess.CopyModel(TestPaths.BundledModel);
        var st2 = Path.Combine(dir2, "model.safetensors");
        var b2 = File.ReadAllBytes(st2);
        File.WriteAllBytes(st2, b2[..(b2.Length - 1000)]);
        var r2 = EldrProcess.Run("generate", dir2, "--prompt", "It is", "--device", "cpu");
        AssertCleanFailure(r2, "model.safetensors");
        var r3 = EldrProcess.Run("info", dir2);
        AssertCleanFailure(r3, "model.safetensors");
    }

    /// <summary>
    /// An ELDR_NVRTC or ELDR_CUDA override that names a library which cannot be loaded is an error naming the variable
    /// and the path, not a quiet fall-back to whatever other version the host has (or a "no driver found").
    /// </summary>
    [Fact]
    public void AnOverrideLibraryThatCannotBeLoadedIsNamed()
    {
        var missing = Path.Combine(Path.GetTempPath(), "eldr-no-such-dir", "libnvrtc.so.12");
        var r = EldrProcess.RunWithEnvironment(new Dictionary<string, string> { ["ELDR_NVRTC"] = missing }, "kernels", "--family", "argmax");
        AssertCleanFailure(r, $"ELDR_NVRTC={missing} cannot be loaded");
        var cuda = Path.Combine(Path.GetTempPath(), "eldr-no-such-dir", "libcuda.so.1");
        var r2 = EldrProcess.RunWithEnvironment(new Dictionary<string, string> { ["ELDR_CUDA"] = cuda },
            "generate", TestPaths.BundledModel, "--prompt", "It is", "--max-new-tokens", "1", "--device", "cuda");
        AssertCleanFailure(r2, $"ELDR_CUDA={cuda} cannot be loaded");
    }

    [Fact]
    public void GarbageHeaderIsAClearError()
    {
        var dir = EldrProcess.CopyModel(TestPaths.BundledModel);
        var st = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(st);
        for (int i = 8; i < 64; i++) bytes[i] = (byte)'#';
        File.WriteAllBytes(st, bytes);
        AssertCleanFailure(EldrProcess.Run("info", dir), "model.safetensors");
    }

    [Fact]
    public void UnknownArchitectureListsTheSupportedOnes()
    {
        var dir = EldrProcess.CopyModel(TestPaths.HfTiny("llama-gqa"));
        var cfg = Path.Combine(dir, "config.json");
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("LlamaForCausalLM", "MambaForCausalLM"));
        var r = EldrProcess.Run("info", dir);
        AssertCleanFailure(r, "MambaForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM", "OPTForCausalLM", "PhiForCausalLM");
    }

    [Fact]
    public void MissingFolderAndBadFlagFail()
    {
        AssertCleanFailure(EldrProcess.Run("info", "/nonexistent/model"), "/nonexistent/model");
        var r = EldrProcess.Run("ppl", TestPaths.BundledModel, "--data", "x.txt", "--no-such-flag");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--no-such-flag", r.Stderr + r.Stdout);
        AssertCleanFailure(EldrProcess.Run("ppl", TestPaths.BundledModel, "--data", "/nonexistent.txt", "--device", "cpu"), "/nonexistent.txt");
        AssertCleanFailure(EldrProcess.Run("ppl", TestPaths.BundledModel, "--data", "/nonexistent.txt", "--device", "tpu"), "tpu");
        AssertCleanFailure(EldrProcess.Run("ppl", TestPaths.BundledModel, "--data", "/nonexistent.txt", "--device", "cuda:x"), "cuda:x", "cuda:N");
        AssertCleanFailure(EldrProcess.Run("prune", TestPaths.BundledModel, "--method", "shortgpt", "--device", "gpu"), "'gpu'", "cuda:N");
    }

    [Fact]
    public void DeviceNamesParse()
    {
        Assert.Equal(("auto", 0), ElderCuda.Backends.BackendFactory.ParseDevice("auto"));
        Assert.Equal(("cpu", 0), ElderCuda.Backends.BackendFactory.ParseDevice("cpu"));
        Assert.Equal(("cuda", 0), ElderCuda.Backends.BackendFactory.ParseDevice("cuda"));
        Assert.Equal(("cuda", 0), ElderCuda.Backends.BackendFactory.ParseDevice("cuda:0"));
        Assert.Equal(("cuda", 7), ElderCuda.Backends.BackendFactory.ParseDevice("cuda:7"));
        foreach (var bad in new[] { "gpu", "cuda:", "cuda:-1", "cuda:+1", "cuda: 1", "cuda:1x", "CUDA", "cpu:0" })
            Assert.Throws<ArgumentException>(() => ElderCuda.Backends.BackendFactory.ParseDevice(bad));
    }

    [Fact]
    public void NonPositiveDistillTemperatureFailsBeforeAnyWork()
    {
        var calib = Path.Combine(TestPaths.RepoRoot, "data", "calib-train-sample.txt");
        var outDir = Path.Combine(Path.GetTempPath(), "eldr-bad-temp-" + Guid.NewGuid().ToString("N"));
        AssertCleanFailure(EldrProcess.Run("prune", TestPaths.BundledModel, "--method", "elder", "--stage2", "distill", "--distill-temperature", "0",
            "--calib", calib, "--device", "cpu", "--out", outDir), "--distill-temperature", "> 0");
        AssertCleanFailure(EldrProcess.Run("prune", TestPaths.BundledModel, "--method", "auto", "--auto-distill-temperatures", "1,-2",
            "--calib", calib, "--device", "cpu", "--out", outDir), "--auto-distill-temperatures", "> 0");
        Assert.False(Directory.Exists(outDir), "nothing is written for a bad flag");
    }

    [Fact]
    public void BadZeroShotFileFailsBeforeAnyWork()
    {
        var calib = Path.Combine(TestPaths.RepoRoot, "data", "calib-train-sample.txt");
        var outDir = Path.Combine(Path.GetTempPath(), "eldr-bad-zs-" + Guid.NewGuid().ToString("N"));
        var bad = Path.GetTempFileName();
        try
        {
            File.WriteAllText(bad, "{\"ctx\": \"a\", \"endings\": [\"b\"], \"label\": 0}\n");
            var r = EldrProcess.Run("prune", TestPaths.BundledModel, "--method", "shortgpt", "--calib", calib, "--device", "cpu",
                "--zeroshot", bad, "--out", outDir);
            AssertCleanFailure(r, "line 1", "at least two strings");
            Assert.DoesNotContain("loading", r.Stdout);   // it failed before the model was loaded (the log goes to stdout)
            AssertCleanFailure(EldrProcess.Run("prune", TestPaths.BundledModel, "--method", "shortgpt", "--calib", calib, "--device", "cpu",
                "--zeroshot", bad + ".missing", "--out", outDir), "no such JSONL file");
            Assert.False(Directory.Exists(outDir), "nothing is written for a bad file");
        }
        finally { File.Delete(bad); }
    }
}
