using System.Diagnostics;
using ElderCuda.Backends.Cuda;
using ElderCuda.Backends.Cuda.Interop;

namespace ElderCuda.Tests.Cuda;

/// <summary>
/// The ahead-of-time kernel build (CMakeLists.txt) writes, beside each cubin, the SHA-256 the engine compares
/// before it trusts a native image (KernelCompiler.SourceHash). If the two hashes disagree, every image the
/// build makes is silently ignored as stale. This runs the real CMake project with a stand-in for nvcc (a
/// script that writes a placeholder cubin), so it needs cmake but no CUDA toolkit; without cmake it skips. It
/// then checks that the loader prefers those images, and passes over a stale one.
/// </summary>
public class NativeImageBuildTests
{
    static (int code, string output) Run(string file, string args, string cwd)
    {
        var psi = new ProcessStartInfo(file, args) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(true); return (-1, $"{file} {args}: timed out"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    [Fact]
    public void CMakeSidecarHashesAreTheOnesTheEngineChecks()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("the stand-in nvcc is a shell script");
        var cmake = FindOnPath("cmake");
        if (cmake is null) Assert.Skip("cmake is not on PATH; the ahead-of-time kernel build cannot be checked here");

        var tmp = Directory.CreateTempSubdirectory("eldr-cmake-").FullName;
        try
        {
            // stand-in for nvcc: write a placeholder where -o points
            var fake = Path.Combine(tmp, "nvcc");
            File.WriteAllText(fake, "#!/bin/sh\nwhile [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then printf fake > \"$2\"; fi; shift; done\n");
            File.SetUnixFileMode(fake, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var native = Path.Combine(tmp, "native");
            var build = Path.Combine(tmp, "build");
            var (c1, o1) = Run(cmake, $"-S \"{TestPaths.RepoRoot}\" -B \"{build}\" -DNVCC=\"{fake}\" -DELDR_NATIVE_DIR=\"{native}\" -DELDR_CUDA_ARCHS=80;90", tmp);
            Assert.True(c1 == 0, "cmake configure failed:\n" + o1);
            var (c2, o2) = Run(cmake, $"--build \"{build}\"", tmp);
            Assert.True(c2 == 0, "cmake build failed:\n" + o2);

            Assert.NotEmpty(KernelSources.Families);
            foreach (var family in KernelSources.Families)
                foreach (var arch in new[] { 80, 90 })
                {
                    var cubin = Path.Combine(native, $"{family}.sm_{arch}.cubin");
                    Assert.True(File.Exists(cubin), $"{cubin} was not built");
                    var side = File.ReadAllText(cubin + ".sha256").Trim().Split(' ')[0];
                    Assert.Equal(KernelCompiler.SourceHash(family), side);
                    // the loader takes the built image in preference to NVRTC
                    var (image, origin) = KernelCompiler.GetImage(family, arch, [native]);
                    Assert.Equal("native:" + cubin, origin);
                    Assert.Equal("fake"u8.ToArray(), image);
                }

            // a stale image (its sidecar names other sources) is passed over for NVRTC
            if (Nvrtc.IsAvailable)
            {
                var fam = KernelSources.Families[0];
                File.WriteAllText(Path.Combine(native, $"{fam}.sm_80.cubin.sha256"), new string('0', 64) + "  stale.cu\n");
                var (_, staleOrigin) = KernelCompiler.GetImage(fam, 80, [native]);
                Assert.False(staleOrigin.StartsWith("native:", StringComparison.Ordinal), $"stale image used: {staleOrigin}");
            }
        }
        finally { Directory.Delete(tmp, true); }
    }
}
