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

    /// <summary>Runs <paramref name="body"/> with ELDR_KERNEL_CACHE pointing at an empty folder and the loader's log
    /// collected in the list it is given; restores both afterwards.</summary>
    static void WithEmptyKernelCache(Action<List<string>> body)
    {
        var dir = Directory.CreateTempSubdirectory("eldr-cache-").FullName;
        var before = Environment.GetEnvironmentVariable("ELDR_KERNEL_CACHE");
        var lines = new List<string>();
        try
        {
            Environment.SetEnvironmentVariable("ELDR_KERNEL_CACHE", dir);
            KernelCompiler.Log = lines.Add;
            body(lines);
        }
        finally
        {
            KernelCompiler.Log = null;
            Environment.SetEnvironmentVariable("ELDR_KERNEL_CACHE", before);
            Directory.Delete(dir, true);
        }
    }

    /// <summary>A compile at first use is announced (a run would otherwise pause for seconds without a word), and the
    /// second use comes from the cache without one.</summary>
    [Fact]
    public void FirstUseCompileIsAnnouncedThenCached()
    {
        KernelCompileTests.RequireNvrtc();
        WithEmptyKernelCache(lines =>
        {
            var (_, first) = KernelCompiler.GetImage("argmax", 80, nativeDirs: []);
            Assert.Equal("nvrtc", first);
            Assert.Contains(lines, l => l.Contains("compiling kernels/argmax.cu for sm_80"));
            int n = lines.Count;
            var (_, second) = KernelCompiler.GetImage("argmax", 80, nativeDirs: []);
            Assert.StartsWith("cache:", second);
            Assert.Equal(n, lines.Count);
        });
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

    /// <summary>
    /// A GPU newer than the NVRTC gets PTX for the newest architecture that NVRTC knows below it (the driver compiles
    /// PTX for later GPUs; a cubin runs only on its own architecture); a GPU older than every architecture the NVRTC
    /// knows is an error that names both.
    /// </summary>
    [Fact]
    public void TargetIsTheDevicesCubinOrPtxForTheNewestOlderArchitecture()
    {
        // what nvrtcGetSupportedArchs returns in NVRTC 11.8 and 12.4 (Debian 12's and 13's)
        int[] nvrtc118 = [35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90];
        int[] nvrtc124 = [50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90];
        int[] startsAt75 = [75, 80, 86, 89, 90, 100, 120];   // a made-up later NVRTC that has dropped sm_70
        Assert.Equal(new KernelCompiler.Target(90, 90, false), KernelCompiler.TargetFor(90, nvrtc118, (11, 8)));
        Assert.Equal(new KernelCompiler.Target(86, 86, false), KernelCompiler.TargetFor(86, nvrtc118, (11, 8)));
        Assert.Equal(new KernelCompiler.Target(100, 90, true), KernelCompiler.TargetFor(100, nvrtc118, (11, 8)));
        Assert.Equal(new KernelCompiler.Target(120, 90, true), KernelCompiler.TargetFor(120, nvrtc124, (12, 4)));
        Assert.Equal(new KernelCompiler.Target(88, 87, true), KernelCompiler.TargetFor(88, nvrtc124, (12, 4)));
        Assert.Equal(new KernelCompiler.Target(120, 120, false), KernelCompiler.TargetFor(120, startsAt75, (99, 0)));
        Assert.Equal(new KernelCompiler.Target(110, 100, true), KernelCompiler.TargetFor(110, startsAt75, (99, 0)));
        Assert.Equal("compute_90", KernelCompiler.TargetFor(100, nvrtc118, (11, 8)).GpuArchitecture);
        Assert.Equal("sm_90", KernelCompiler.TargetFor(90, nvrtc118, (11, 8)).GpuArchitecture);
        var e = Assert.Throws<Backends.Cuda.Interop.CudaException>(() => KernelCompiler.TargetFor(70, startsAt75, (99, 0)));
        Assert.Contains("NVRTC 99.0 cannot compile for sm_70", e.Message);
        Assert.Contains("sm_75 to sm_120", e.Message);
    }

    /// <summary>
    /// With the NVRTC at hand: for a GPU one architecture newer than it knows, the loader compiles PTX (".target" the
    /// newest it knows, no cubin), says so, and caches it as PTX apart from the cubins.
    /// </summary>
    [Fact]
    public void AGpuNewerThanNvrtcGetsPtx()
    {
        KernelCompileTests.RequireNvrtc();
        var supported = Backends.Cuda.Interop.Nvrtc.SupportedArchs();
        int newest = supported.Max(), future = newest + 1;
        WithEmptyKernelCache(lines =>
        {
            var (image, origin) = KernelCompiler.GetImage("argmax", future, nativeDirs: []);
            Assert.Equal("nvrtc:ptx", origin);
            var text = System.Text.Encoding.ASCII.GetString(image).TrimEnd('\0');
            Assert.Matches($@"(?m)^\.target sm_{newest}\b", text);
            Assert.Contains(".entry argmax_fwd_f32", text);
            Assert.Contains(lines, l => l.Contains($"does not know sm_{future}") && l.Contains($"compute_{newest}"));
            var (again, second) = KernelCompiler.GetImage("argmax", future, nativeDirs: []);
            Assert.StartsWith("cache:", second);
            Assert.EndsWith(".ptx", second);
            Assert.Equal(image, again);
        });
    }
}
