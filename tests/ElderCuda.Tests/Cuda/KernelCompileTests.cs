using ElderCuda.Backends.Cuda;
using ElderCuda.Backends.Cuda.Interop;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Cuda;

/// <summary>
/// Every kernel family compiles through our own NVRTC bindings for sm_80 and sm_90. Needs libnvrtc
/// only (no GPU, no driver). Without it the test skips, unless ELDR_REQUIRE_NVRTC=1 (CI, after
/// .ci/install-nvrtc.sh) makes a missing NVRTC a failure.
/// </summary>
public class KernelCompileTests
{
    public static TheoryData<string, int> Cases()
    {
        var d = new TheoryData<string, int>();
        foreach (var f in KernelSources.Families)
            foreach (var arch in new[] { 80, 90 }) d.Add(f, arch);
        return d;
    }

    internal static void RequireNvrtc()
    {
        if (Nvrtc.IsAvailable) return;
        var msg = $"no libnvrtc found (tried {NativeLibraries.CandidateList(NativeLibraries.Nvrtc)}); install with .ci/install-nvrtc.sh";
        if (Environment.GetEnvironmentVariable("ELDR_REQUIRE_NVRTC") == "1") Assert.Fail(msg + " (ELDR_REQUIRE_NVRTC=1)");
        Assert.Skip(msg);
    }

    /// <summary>
    /// Every kernel name the attention launcher can ask for (each dtype, output dtype, path and head dim it
    /// accepts) is an entry of the compiled module, so a launch never fails to find its function on a GPU.
    /// </summary>
    [Fact]
    public void EveryAttentionLaunchNameIsCompiled()
    {
        RequireNvrtc();
        var ptx = System.Text.Encoding.ASCII.GetString(KernelCompiler.CompileWithNvrtc("attention", 80).Ptx);
        var names = new List<string>();
        foreach (var hd in new[] { 16, 32, 48, 64, 80, 96, 100, 128, 160, 256 })
        {
            foreach (var (d, f32Out) in new[] { (DType.F32, false), (DType.BF16, false), (DType.BF16, true) })
            {
                names.Add(CudaBackend.AttentionForwardKernel(d, f32Out, false, hd));
                names.Add(CudaBackend.AttentionBackwardKernel(d, false, hd));
                names.Add(CudaBackend.AttentionBackwardPrepKernel(d, f32Out));
            }
        }
        foreach (var hd in CudaBackend.TensorCoreHeadDims)
        {
            names.Add(CudaBackend.AttentionForwardKernel(DType.BF16, false, true, hd));
            names.Add(CudaBackend.AttentionForwardKernel(DType.BF16, true, true, hd));
            names.Add(CudaBackend.AttentionForwardKernel(DType.BF16, false, true, hd, pipelined: true));
            names.Add(CudaBackend.AttentionForwardKernel(DType.BF16, true, true, hd, pipelined: true));
            names.Add(CudaBackend.AttentionBackwardKernel(DType.BF16, true, hd, pipelined: true));
            names.Add(CudaBackend.AttentionBackwardKernel(DType.BF16, true, hd));
        }
        foreach (var d in new[] { DType.F32, DType.BF16 })
        {
            names.Add(CudaBackend.AttentionCachedKernel(d));
            if (d == DType.BF16) names.Add(CudaBackend.AttentionCachedKernel(d, DType.BF16));
            names.Add(CudaBackend.AttentionCacheAppendKernel(d));
        }
        Assert.Contains("attention_fwd_bf16_tc_f32out_hd128", names);
        Assert.Contains("attention_fwd_bf16_tc2_f32out_hd128", names);
        Assert.Contains("attention_bwd_bf16_tc2_hd128", names);
        foreach (var name in names.Distinct())
            Assert.True(ptx.Contains(".entry " + name + "("), $"{name} is not in the compiled attention module");
    }

    [Fact]
    public void EveryFamilyIsEmbedded()
    {
        var expected = new[] { "act", "adamw", "argmax", "attention", "crossentropy", "elementwise", "embedding", "layernorm", "reduce", "rmsnorm", "rope" };
        Assert.Equal(expected, KernelSources.Families);
        Assert.Contains(KernelSources.Headers, h => h.name == "common.cuh");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FamilyCompiles(string family, int arch)
    {
        RequireNvrtc();
        var (maj, min) = Nvrtc.Version();
        var supported = Nvrtc.SupportedArchs();
        if (!supported.Contains(arch)) Assert.Skip($"NVRTC {maj}.{min} cannot target sm_{arch} (supports {string.Join(",", supported)})");
        var output = KernelCompiler.CompileWithNvrtc(family, arch);
        Assert.NotNull(output.Cubin);
        Assert.True(output.Cubin!.Length > 0);
        var ptx = System.Text.Encoding.ASCII.GetString(output.Ptx);
        // every extern "C" kernel the family defines is in the PTX under its plain name
        foreach (var name in KernelNames(KernelSources.Source(family)))
            Assert.Contains(".entry " + name, ptx);
    }

    [Fact]
    public void CompileErrorCarriesTheLog()
    {
        RequireNvrtc();
        var ex = Assert.Throws<CudaException>(() =>
            Nvrtc.Compile("extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }", "broken.cu", [], KernelCompiler.Options(80), false));
        Assert.Contains("undefined_name", ex.Message);
        Assert.Equal("nvrtcCompileProgram", ex.Function);
    }

    /// <summary>Names of the kernels a family exports, expanded from its instantiation macros in the PTX check.</summary>
    static IEnumerable<string> KernelNames(string src)
    {
        // the macros paste the dtype suffix; check the f32 instantiation of each templated name
        foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(src, @"void (?:__launch_bounds__\([A-Z_]+\) )?([a-z_0-9]+)_##S"))
            yield return m.Groups[1].Value + "_f32";
    }
}
