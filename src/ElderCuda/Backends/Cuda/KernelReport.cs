using System.Text.RegularExpressions;
using ElderCuda.Backends.Cuda.Interop;

namespace ElderCuda.Backends.Cuda;

/// <summary>What ptxas reports for one compiled kernel entry. Shared memory is the static part only: the dynamic
/// shared memory of the tensor-core attention is sized by its launcher at run time.</summary>
public sealed record KernelResources(string Family, int Arch, string Entry, int Registers, int StaticSharedBytes,
    int StackBytes, int SpillStoreBytes, int SpillLoadBytes);

/// <summary>
/// Every kernel of a family compiled through NVRTC with ptxas' verbose report (registers, spills, stack, static shared
/// memory per entry), for an architecture. No GPU or driver is needed, only libnvrtc. `eldr kernels` prints it.
/// </summary>
public static partial class KernelReport
{
    /// <summary>Compiles <paramref name="family"/> for sm_<paramref name="arch"/> with the engine's own options plus
    /// ptxas -v, and parses the report. A compile error throws with the NVRTC log, as a run would.</summary>
    public static IReadOnlyList<KernelResources> Compile(string family, int arch) => CompileWithOutput(family, arch).kernels;

    /// <summary><see cref="Compile"/>, with what NVRTC produced: the PTX (to read) and the cubin, the same image a run
    /// compiles (ptxas -v only adds the report), so it may go into the kernel cache.</summary>
    public static (IReadOnlyList<KernelResources> kernels, Nvrtc.Output output) CompileWithOutput(string family, int arch)
    {
        var options = KernelCompiler.Options(arch).Append("-Xptxas=-v").ToList();
        var output = Nvrtc.Compile(KernelSources.Source(family), family + ".cu", KernelSources.Headers, options, wantCubin: true);
        return (Parse(family, arch, output.Log), output);
    }

    [GeneratedRegex(@"Compiling entry function '(\w+)' for 'sm_(\d+)'")] private static partial Regex EntryLine();
    [GeneratedRegex(@"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")] private static partial Regex FrameLine();
    [GeneratedRegex(@"Used (\d+) registers(?:.*?(\d+) bytes smem)?")] private static partial Regex UsedLine();

    /// <summary>Parses ptxas' verbose log: each entry's "Compiling entry function", its frame line and its "Used" line.</summary>
    public static IReadOnlyList<KernelResources> Parse(string family, int arch, string log)
    {
        var list = new List<KernelResources>();
        string? entry = null; int stack = 0, spillStores = 0, spillLoads = 0;
        foreach (var line in log.Split('\n'))
        {
            if (EntryLine().Match(line) is { Success: true } e) { entry = e.Groups[1].Value; stack = spillStores = spillLoads = 0; continue; }
            if (entry is null) continue;
            if (FrameLine().Match(line) is { Success: true } f)
            {
                stack = int.Parse(f.Groups[1].Value); spillStores = int.Parse(f.Groups[2].Value); spillLoads = int.Parse(f.Groups[3].Value);
                continue;
            }
            if (UsedLine().Match(line) is { Success: true } u)
            {
                int smem = u.Groups[2].Success ? int.Parse(u.Groups[2].Value) : 0;
                list.Add(new KernelResources(family, arch, entry, int.Parse(u.Groups[1].Value), smem, stack, spillStores, spillLoads));
                entry = null;
            }
        }
        return list;
    }
}
