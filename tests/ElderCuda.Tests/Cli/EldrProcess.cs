using System.Diagnostics;

namespace ElderCuda.Tests.Cli;

/// <summary>Runs the real `eldr` (built beside the tests) as a child process, as a user would.</summary>
public static class EldrProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(params string[] args) => RunWithEnvironment(new Dictionary<string, string>(), args);

    /// <summary>As <see cref="Run"/>, with these environment variables set for the process.</summary>
    public static Result RunWithEnvironment(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (k, v) in environment) psi.Environment[k] = v;
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "eldr.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("ELDR_DEBUG");
        using var p = Process.Start(psi)!;
        var so = p.StandardOutput.ReadToEndAsync();
        var se = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(10))) { p.Kill(true); throw new TimeoutException("eldr " + string.Join(" ", args)); }
        return new Result(p.ExitCode, so.Result, se.Result);
    }

    /// <summary>A copy of a model folder in a fresh temp dir, to be damaged by a test.</summary>
    public static string CopyModel(string src)
    {
        var dst = Path.Combine(Path.GetTempPath(), "eldr-test-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dst);
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(dst, Path.GetFileName(f)));
        return dst;
    }
}
