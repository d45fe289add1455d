using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using ElderCuda.Backends.Cuda;
using ElderCuda.Backends.Cuda.Interop;

namespace Eldr.Cli;

/// <summary>
/// `eldr kernels`: compiles every kernel family through NVRTC, as a run would, and prints what ptxas reports per entry
/// (registers, spills, stack, static shared memory). It needs libnvrtc only, no GPU. With --warm the images also go
/// into the kernel cache, so that a later run on a GPU of that architecture, with the same NVRTC, does not compile at
/// first use.
/// </summary>
public static class KernelsCommand
{
    public static Command Create()
    {
        var arch = new Option<string?>("--arch") { Description = "architectures, e.g. 90 or sm_80,sm_90 (default: the GPU's, or 80 and 90 without one)" };
        var family = new Option<string[]>("--family") { Description = "only these kernel families (kernels/<family>.cu)", AllowMultipleArgumentsPerToken = true };
        var warm = new Option<bool>("--warm") { Description = $"also write the compiled images to the kernel cache ($ELDR_KERNEL_CACHE, default {KernelCompiler.CacheDir})" };
        var json = new Option<bool>("--json") { Description = "one JSON object per kernel entry, one per line" };
        var ptxDir = new Option<string?>("--ptx") { Description = "also write each family's PTX to DIR/<family>.sm_XY.ptx, to read" };
        var cmd = new Command("kernels", "compile every CUDA kernel with NVRTC (no GPU needed) and report registers, spills and shared memory per kernel")
            { arch, family, warm, json, ptxDir };
        cmd.SetAction(pr => Cli.Guard(() =>
        {
            (int, int) version;
            try { version = Nvrtc.Version(); }
            catch (CudaException e) { throw new PlatformNotSupportedException(e.Message, e); }   // names the libraries tried
            var archs = Archs(pr.GetValue(arch));
            var families = pr.GetValue(family) is { Length: > 0 } f ? f : KernelSources.Families.ToArray();
            foreach (var name in families)
                if (!KernelSources.Families.Contains(name))
                    throw new ArgumentException($"no kernel family '{name}' (have: {string.Join(", ", KernelSources.Families)})");
            var (maj, min) = version;
            var supported = Nvrtc.SupportedArchs();
            foreach (var a in archs)
                if (!supported.Contains(a))
                    throw new ArgumentException($"NVRTC {maj}.{min} cannot target sm_{a} (it supports {string.Join(", ", supported.Select(s => "sm_" + s))})");
            bool asJson = pr.GetValue(json);
            if (pr.GetValue(ptxDir) is { } ptxOut) Directory.CreateDirectory(ptxOut);
            if (!asJson) Console.Error.WriteLine($"NVRTC {maj}.{min}; {families.Length} families × {archs.Count} architectures");

            var rows = new List<(KernelResources k, double seconds)>();
            var warmed = new List<string>();
            int done = 0, total = archs.Count * families.Length;
            KernelCompiler.Log = null;   // this command has its own progress bar and says what it compiled
            Cli.WithProgress("compiling kernels", progress =>
            {
                foreach (var a in archs)
                    foreach (var name in families)
                    {
                        var sw = Stopwatch.StartNew();
                        IReadOnlyList<KernelResources> report; Nvrtc.Output output;
                        try { (report, output) = KernelReport.CompileWithOutput(name, a); }
                        catch (CudaException e) { throw new InvalidOperationException($"kernels/{name}.cu does not compile for sm_{a}: {e.Message}", e); }
                        double s = sw.Elapsed.TotalSeconds;
                        if (report.Count == 0)
                            throw new InvalidOperationException($"ptxas reported no kernels for kernels/{name}.cu (sm_{a}); NVRTC {maj}.{min} may not accept -Xptxas=-v");
                        if (pr.GetValue(ptxDir) is { } pd) File.WriteAllBytes(Path.Combine(pd, $"{name}.sm_{a}.ptx"), output.Ptx.AsSpan().TrimEnd((byte)0).ToArray());
                        if (pr.GetValue(warm))
                        {
                            // the image just compiled is the one a run would compile: cache it rather than compile again
                            var file = KernelCompiler.CacheFile(name, a);
                            if (!File.Exists(file)) KernelCompiler.Store(file, output.Cubin ?? output.Ptx);
                            warmed.Add($"{name} sm_{a}: {file}");
                        }
                        foreach (var k in report) rows.Add((k, s));
                        progress.Report(++done / (double)total);
                    }
            });
            foreach (var line in warmed) Console.Error.WriteLine("  " + line);
            if (asJson)
            {
                foreach (var (k, _) in rows)
                    Console.WriteLine(JsonSerializer.Serialize(new
                    {
                        family = k.Family, arch = $"sm_{k.Arch}", kernel = k.Entry, registers = k.Registers, static_smem_bytes = k.StaticSharedBytes,
                        stack_bytes = k.StackBytes, spill_store_bytes = k.SpillStoreBytes, spill_load_bytes = k.SpillLoadBytes,
                    }));
                return 0;
            }

            int w = Math.Max(6, rows.Max(r => r.k.Entry.Length));
            Console.WriteLine($"{"arch",-6} {"kernel".PadRight(w)} {"regs",5} {"smem",7} {"stack",6} {"spill st/ld",12}");
            foreach (var (k, _) in rows.OrderBy(r => r.k.Arch).ThenBy(r => r.k.Family, StringComparer.Ordinal).ThenBy(r => r.k.Entry, StringComparer.Ordinal))
                Console.WriteLine($"sm_{k.Arch,-3} {k.Entry.PadRight(w)} {k.Registers,5} {k.StaticSharedBytes,7} {k.StackBytes,6} {$"{k.SpillStoreBytes}/{k.SpillLoadBytes}",12}");
            int spilling = rows.Count(r => r.k.SpillStoreBytes + r.k.SpillLoadBytes > 0);
            Console.WriteLine($"{rows.Count} kernels, {spilling} spilling registers; compiled in {rows.DistinctBy(r => (r.k.Family, r.k.Arch)).Sum(r => r.seconds):F1} s" +
                              " (smem: static shared memory only; the tensor-core attention's dynamic part is sized at launch)");
            return 0;
        }));
        return cmd;
    }

    /// <summary>"90", "sm_90", "80,90" or "sm_80 sm_90"; none: the first GPU's architecture, else 80 and 90.</summary>
    public static List<int> Archs(string? spec)
    {
        if (string.IsNullOrWhiteSpace(spec))
        {
            if (CudaBackend.IsAvailable(out _))
                return [Driver.DeviceAttribute(Driver.DeviceGet(0), Driver.AttrComputeCapabilityMajor) * 10
                        + Driver.DeviceAttribute(Driver.DeviceGet(0), Driver.AttrComputeCapabilityMinor)];
            return [80, 90];
        }
        var list = new List<int>();
        foreach (var part in spec.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries))
        {
            var s = part.StartsWith("sm_", StringComparison.OrdinalIgnoreCase) ? part[3..] : part;
            if (!int.TryParse(s, out int a) || a < 30 || a > 200)
                throw new ArgumentException($"--arch: '{part}' is not an architecture such as 90 or sm_90");
            if (!list.Contains(a)) list.Add(a);
        }
        return list;
    }
}
