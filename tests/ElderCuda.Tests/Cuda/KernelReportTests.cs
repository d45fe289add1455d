using System.Text.RegularExpressions;
using ElderCuda.Backends.Cuda;

namespace ElderCuda.Tests.Cuda;

/// <summary>
/// `eldr kernels`' report: ptxas' verbose log parsed per kernel entry (a log in ptxas' own format, CUDA 11 and 12+
/// styles), every entry of a compiled module present (the PTX's .entry list is the independent count), and the
/// --arch parser.
/// </summary>
[Collection("cuda")]   // FirstUseCompileIsAnnouncedThenCached points ELDR_KERNEL_CACHE elsewhere for a moment
public class KernelReportTests
{
    [Fact]
    public void ParsesPtxasVerboseLog()
    {
        const string log = """
            ptxas info    : 0 bytes gmem
            ptxas info    : Compiling entry function 'rope_fwd_f32' for 'sm_80'
            ptxas info    : Function properties for rope_fwd_f32
                0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Used 30 registers, 392 bytes cmem[0]
            ptxas info    : Compiling entry function 'attention_fwd_f32_hd256' for 'sm_80'
            ptxas info    : Function properties for attention_fwd_f32_hd256
            ptxas         .     16 bytes stack frame, 28 bytes spill stores, 36 bytes spill loads
            ptxas info    : Used 64 registers, used 1 barriers, 34816 bytes smem, 400 bytes cmem[0]
            """;
        var r = KernelReport.Parse("x", 80, log);
        Assert.Equal(2, r.Count);
        Assert.Equal(new KernelResources("x", 80, "rope_fwd_f32", 30, 0, 0, 0, 0), r[0]);
        Assert.Equal(new KernelResources("x", 80, "attention_fwd_f32_hd256", 64, 34816, 16, 28, 36), r[1]);
    }

    [Theory]
    [InlineData("argmax", 80)]
    [InlineData("rope", 90)]
    public void EveryEntryOfTheModuleIsReported(string family, int arch)
    {
        KernelCompileTests.RequireNvrtc();
        var ptx = System.Text.Encoding.ASCII.GetString(KernelCompiler.CompileWithNvrtc(family, arch).Ptx);
        var entries = Regex.Matches(ptx, @"\.entry\s+(\w+)").Select(m => m.Groups[1].Value).Order().ToList();
        var report = KernelReport.Compile(family, arch);
        Assert.NotEmpty(entries);
        Assert.Equal(entries, report.Select(k => k.Entry).Order().ToList());
        Assert.All(report, k => { Assert.Equal(arch, k.Arch); Assert.InRange(k.Registers, 1, 255); });
    }

    /// <summary>A compile at first use is announced (a run would otherwise pause for seconds without a word), and the
    /// second use comes from the cache without one.</summary>
    [Fact]
    public void FirstUseCompileIsAnnouncedThenCached()
    {
        KernelCompileTests.RequireNvrtc();
        var dir = Directory.CreateTempSubdirectory("eldr-cache-").FullName;
        var before = Environment.GetEnvironmentVariable("ELDR_KERNEL_CACHE");
        var lines = new List<string>();
        try
        {
            Environment.SetEnvironmentVariable("ELDR_KERNEL_CACHE", dir);
            KernelCompiler.Log = lines.Add;
            var (_, first) = KernelCompiler.GetImage("argmax", 80, nativeDirs: []);
            Assert.Equal("nvrtc", first);
            Assert.Contains(lines, l => l.Contains("compiling kernels/argmax.cu for sm_80"));
            int n = lines.Count;
            var (_, second) = KernelCompiler.GetImage("argmax", 80, nativeDirs: []);
            Assert.StartsWith("cache:", second);
            Assert.Equal(n, lines.Count);
        }
        finally
        {
            KernelCompiler.Log = null;
            Environment.SetEnvironmentVariable("ELDR_KERNEL_CACHE", before);
            Directory.Delete(dir, true);
        }
    }

    /// <summary>`eldr kernels --warm` caches the image its report compiled instead of compiling again: that image is the
    /// one a run compiles (ptxas -v only adds the report), and a run then takes it from the cache.</summary>
    [Fact]
    public void TheReportsImageIsTheRunsImageAndServesFromTheCache()
    {
        KernelCompileTests.RequireNvrtc();
        var dir = Directory.CreateTempSubdirectory("eldr-cache-").FullName;
        var before = Environment.GetEnvironmentVariable("ELDR_KERNEL_CACHE");
        try
        {
            Environment.SetEnvironmentVariable("ELDR_KERNEL_CACHE", dir);
            var (_, output) = KernelReport.CompileWithOutput("rope", 90);
            Assert.NotNull(output.Cubin);
            Assert.Equal(KernelCompiler.CompileWithNvrtc("rope", 90).Cubin, output.Cubin);
            KernelCompiler.Store(KernelCompiler.CacheFile("rope", 90), output.Cubin!);
            var (image, origin) = KernelCompiler.GetImage("rope", 90, nativeDirs: []);
            Assert.StartsWith("cache:", origin);
            Assert.Equal(output.Cubin, image);
        }
        finally
        {
            Environment.SetEnvironmentVariable("ELDR_KERNEL_CACHE", before);
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ArchitecturesParse()
    {
        Assert.Equal([80, 90], Eldr.Cli.KernelsCommand.Archs("sm_80,90"));
        Assert.Equal([90], Eldr.Cli.KernelsCommand.Archs("sm_90 90"));
        Assert.Throws<ArgumentException>(() => Eldr.Cli.KernelsCommand.Archs("sm_7"));
        Assert.Throws<ArgumentException>(() => Eldr.Cli.KernelsCommand.Archs("ampere"));
    }
}
