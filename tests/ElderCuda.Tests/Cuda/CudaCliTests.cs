using System.Globalization;
using System.Text.Json;
using ElderCuda.Backends.Cuda;
using ElderCuda.Tests.Cli;

namespace ElderCuda.Tests.Cuda;

/// <summary>
/// The `eldr` commands on the GPU (issue 3, item 6), run as a user runs them: a separate process, the device chosen by
/// the command line. Expected numbers are transformers' (golden files, reference.json), or, for perplexity, the CPU
/// backend's, which is the reference engine.
/// </summary>
[Collection("cuda")]
public class CudaCliTests
{
    static void RequireGpu()
    {
        if (!CudaBackend.IsAvailable(out var why)) Assert.Skip("no CUDA device: " + why);
    }

    /// <summary>DESIGN.md §7: `eldr trace` in fp32 mode matches the golden files under 1e-4, every tensor.</summary>
    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("llama3-tied")]
    [InlineData("qwen2")]
    [InlineData("opt")]
    [InlineData("phi")]
    public void TraceInFp32MatchesTransformers(string family)
    {
        RequireGpu();
        var dir = TestPaths.HfTiny(family);
        var tmp = Directory.CreateTempSubdirectory($"eldr-cuda-trace-{family}-").FullName;
        try
        {
            var gold = Path.Combine(dir, "golden.safetensors");
            var outFile = Path.Combine(tmp, "trace.safetensors");
            var r = EldrProcess.Run("trace", dir, "--tokens", gold, "--out", outFile, "--device", "cuda", "--fp32");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains("backend: cuda:", r.Stderr);
            var (worstOut, worstGrad) = TraceGolden.AssertMatches(gold, outFile, 1e-4, 1e-4);
            CudaFixture.Record($"eldr trace --fp32 {family}, outputs", ElderCuda.Tensors.DType.F32, worstOut);
            CudaFixture.Record($"eldr trace --fp32 {family}, gradients", ElderCuda.Tensors.DType.F32, worstGrad);
        }
        finally { Directory.Delete(tmp, true); }
    }

    /// <summary>
    /// Greedy decoding on the GPU in fp32 gives reference.json's ids (transformers, fp32 math on the bf16 weights), with
    /// the KV cache and without it.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GenerateInFp32ReproducesTransformersGreedyIds(bool noKvCache)
    {
        RequireGpu();
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.BundledModel, "reference.json")));
        var prompt = doc.RootElement.GetProperty("greedy_prompt").GetString()!;
        var expected = doc.RootElement.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        string[] args = ["generate", TestPaths.BundledModel, "--prompt", prompt, "--ids", "--device", "cuda", "--fp32", "--max-new-tokens", "40"];
        var r = EldrProcess.Run(noKvCache ? [.. args, "--no-kv-cache"] : args);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("backend: cuda:", r.Stderr);
        var line = r.Stdout.Split('\n').Single(l => l.StartsWith("ids: "));
        var got = line[6..line.IndexOf(']')].Split(", ").Select(int.Parse).ToArray();
        Assert.Equal(expected, got[..expected.Length]);
    }

    /// <summary>
    /// A kernel that faults (the emulated GPU's ELDR_EMUGPU_FAULT: CUDA_ERROR_ILLEGAL_ADDRESS, sticky, as a bad address
    /// gives on a GPU) ends the command with one error line that names the CUDA error. With CUDA_LAUNCH_BLOCKING=1 it
    /// names the kernel: the backend's Dispose, which runs as that exception unwinds, must not replace it with its own
    /// failing cuStreamSynchronize (it did).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AKernelFaultEndsTheCommandWithOneErrorThatNamesIt(bool launchBlocking)
    {
        RequireGpu();
        if (!CudaFixture.Get(ElderCuda.Tensors.DType.F32).DeviceName.StartsWith("emulated GPU"))
            Assert.Skip("needs the emulated GPU's fault injection (ELDR_EMUGPU_FAULT); a real kernel fault would need a broken kernel");
        var env = new Dictionary<string, string> { ["ELDR_EMUGPU_FAULT"] = "rmsnorm_fwd", ["CUDA_LAUNCH_BLOCKING"] = launchBlocking ? "1" : "0" };
        var r = EldrProcess.RunWithEnvironment(env, "generate", TestPaths.BundledModel, "--prompt", "Hello", "--max-new-tokens", "3", "--device", "cuda");
        Assert.Equal(70, r.ExitCode);   // an internal error: not bad input
        var errors = r.Stderr.Split('\n').Where(l => l.StartsWith("eldr:")).ToArray();
        Assert.True(errors.Length == 1, r.Stderr);
        Assert.Contains("CUDA_ERROR_ILLEGAL_ADDRESS", errors[0]);
        if (launchBlocking) Assert.Contains("cuLaunchKernel(rmsnorm_fwd_bf16) failed", errors[0]);
        else Assert.Contains("A GPU kernel failed", errors[0]);
        Assert.DoesNotContain("Unhandled exception", r.Stderr);
    }

    /// <summary>
    /// A cached kernel image the driver refuses (here: RMSNorm's, overwritten with garbage) is deleted and compiled
    /// again, and the command gives the same perplexity as with a sound cache. (The other families' images are copied
    /// from the cache the first run filled, so that only one family compiles again.)
    /// </summary>
    [Fact]
    public void ADamagedCachedKernelImageIsCompiledAgain()
    {
        RequireGpu();
        int arch = CudaFixture.Get(ElderCuda.Tensors.DType.F32).Arch;
        var data = Path.Combine(TestPaths.RepoRoot, "data", "corpus-heldout.txt");
        string[] args = ["ppl", TestPaths.BundledModel, "--data", data, "--seqlen", "64", "--max-windows", "1", "--device", "cuda", "--json"];
        var first = EldrProcess.Run(args);   // the usual cache, filled if it was not
        Assert.True(first.ExitCode == 0, first.Stderr);
        var cache = Directory.CreateTempSubdirectory("eldr-cache-").FullName;
        try
        {
            foreach (var f in Directory.GetFiles(KernelCompiler.CacheDir)) File.Copy(f, Path.Combine(cache, Path.GetFileName(f)));
            var damaged = Path.Combine(cache, Path.GetFileName(KernelCompiler.CacheFile("rmsnorm", arch)));
            Assert.True(File.Exists(damaged), $"the first run cached no {damaged}");
            File.WriteAllBytes(damaged, System.Text.Encoding.ASCII.GetBytes("not a kernel image\0"));
            var second = EldrProcess.RunWithEnvironment(new Dictionary<string, string> { ["ELDR_KERNEL_CACHE"] = cache }, args);
            Assert.True(second.ExitCode == 0, second.Stderr);
            Assert.Contains($"the driver refuses the cached {damaged}", second.Stderr);
            Assert.Contains("compiling rmsnorm.cu again", second.Stderr);
            double Ppl(string stdout)
            {
                using var j = JsonDocument.Parse(stdout.Split('\n').Single(l => l.StartsWith('{')));
                return j.RootElement.GetProperty("ppl").GetDouble();
            }
            Assert.Equal(Ppl(first.Stdout), Ppl(second.Stdout));
            Assert.NotEqual("not a kernel image\0", File.ReadAllText(damaged));
        }
        finally { Directory.Delete(cache, true); }
    }

    /// <summary>
    /// Kernels in a newer PTX than the driver loads (an NVRTC newer than the driver) end the command with one error
    /// that names the NVRTC and the driver's CUDA version and says what to do. Emulated GPU only: it can report an old
    /// driver (ELDR_EMUGPU_DRIVER_VERSION) and a GPU newer than the NVRTC (ELDR_EMUGPU_CC), which makes the loader
    /// compile PTX.
    /// </summary>
    [Fact]
    public void KernelsFromAnNvrtcNewerThanTheDriverAreAClearError()
    {
        RequireGpu();
        if (!CudaFixture.Get(ElderCuda.Tensors.DType.F32).DeviceName.StartsWith("emulated GPU"))
            Assert.Skip("needs the emulated GPU, which can report an old driver (ELDR_EMUGPU_DRIVER_VERSION)");
        var cache = Directory.CreateTempSubdirectory("eldr-cache-").FullName;
        try
        {
            var env = new Dictionary<string, string>
            {
                ["ELDR_KERNEL_CACHE"] = cache, ["ELDR_EMUGPU_DRIVER_VERSION"] = "11000",
                ["ELDR_EMUGPU_CC"] = (ElderCuda.Backends.Cuda.Interop.Nvrtc.SupportedArchs().Max() + 10).ToString(CultureInfo.InvariantCulture),
            };
            var r = EldrProcess.RunWithEnvironment(env, "generate", TestPaths.BundledModel, "--prompt", "Hello", "--max-new-tokens", "2", "--device", "cuda");
            Assert.Equal(2, r.ExitCode);
            var errors = r.Stderr.Split('\n').Where(l => l.StartsWith("eldr:")).ToArray();
            Assert.True(errors.Length == 1, r.Stderr);
            Assert.Contains("CUDA_ERROR_UNSUPPORTED_PTX_VERSION", errors[0]);
            Assert.Contains("the driver (CUDA 11.0)", errors[0]);
            Assert.Contains("NVRTC ", errors[0]);
            Assert.Contains("ELDR_NVRTC=", errors[0]);
        }
        finally { Directory.Delete(cache, true); }
    }

    /// <summary>`--device cuda:N` picks GPU N; a number past the last GPU is one clear error that says how many there are.</summary>
    [Fact]
    public void ADeviceNumberPicksTheGpuAndOnePastTheLastIsNamed()
    {
        RequireGpu();
        int count = ElderCuda.Backends.Cuda.Interop.Driver.DeviceCount();
        var data = Path.Combine(TestPaths.RepoRoot, "data", "corpus-heldout.txt");
        string[] common = ["ppl", TestPaths.BundledModel, "--data", data, "--seqlen", "64", "--max-windows", "1"];
        var ok = EldrProcess.Run([.. common, "--device", $"cuda:{count - 1}"]);
        Assert.True(ok.ExitCode == 0, ok.Stderr);
        Assert.Contains("backend: cuda:", ok.Stderr);
        var bad = EldrProcess.Run([.. common, "--device", $"cuda:{count}"]);
        Assert.Equal(2, bad.ExitCode);
        var errors = bad.Stderr.Split('\n').Where(l => l.StartsWith("eldr:")).ToArray();
        Assert.True(errors.Length == 1, bad.Stderr);
        Assert.Contains($"there is no CUDA device {count}: the driver sees {count}", errors[0]);
    }

    /// <summary>
    /// With a GPU present, `eldr ppl` runs on it without being asked (bf16, the GPU default), and its perplexity is the
    /// CPU engine's within DESIGN.md's 0.5%.
    /// </summary>
    [Fact]
    public void PerplexityUsesTheGpuByDefaultAndMatchesTheCpu()
    {
        RequireGpu();
        var data = Path.Combine(TestPaths.RepoRoot, "data", "corpus-heldout.txt");
        string[] common = ["ppl", TestPaths.BundledModel, "--data", data, "--seqlen", "256", "--max-windows", "2", "--json"];
        var gpu = EldrProcess.Run(common);
        Assert.True(gpu.ExitCode == 0, gpu.Stderr);
        Assert.Contains("backend: cuda:", gpu.Stderr);
        Assert.Contains("(BF16)", gpu.Stderr);
        var cpu = EldrProcess.Run([.. common, "--device", "cpu"]);
        Assert.True(cpu.ExitCode == 0, cpu.Stderr);
        double Ppl(string stdout)
        {
            using var j = JsonDocument.Parse(stdout.Split('\n').Single(l => l.StartsWith('{')));
            Assert.Equal(2, j.RootElement.GetProperty("windows").GetInt32());
            return j.RootElement.GetProperty("ppl").GetDouble();
        }
        double pg = Ppl(gpu.Stdout), pc = Ppl(cpu.Stdout);
        Assert.True(Math.Abs(pg / pc - 1) < 0.005,
            string.Create(CultureInfo.InvariantCulture, $"ppl on the GPU {pg:F4}, on the CPU {pc:F4}"));
    }
}
