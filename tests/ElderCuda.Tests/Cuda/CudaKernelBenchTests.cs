using ElderCuda.Backends;
using ElderCuda.Backends.Cuda;
using ElderCuda.Model;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.Cuda;

/// <summary>
/// Kernel timings for bench/RESULTS.md (device events, warm-up, median of repeats, fresh random data).
/// Runs only with ELDR_BENCH=1; writes "name\tmedian_ms\textra" lines to $ELDR_BENCH_OUT when set.
/// The torch side of the comparison is bench/gpu/torch_ref.py with the same shapes.
/// </summary>
[Collection("cuda")]
public class CudaKernelBenchTests
{
    static void Report(string name, float ms, string extra = "")
    {
        var line = $"{name}\t{ms:F4}\t{extra}";
        Console.WriteLine(line);
        var path = Environment.GetEnvironmentVariable("ELDR_BENCH_OUT");
        if (!string.IsNullOrEmpty(path)) File.AppendAllText(path, line + "\n");
    }

    static float Median(CudaBackend be, Action work, int reps = 20)
    {
        for (int i = 0; i < 3; i++) work();
        be.Synchronize();
        var t = new List<float>();
        for (int i = 0; i < reps; i++) t.Add(be.TimeMs(work));
        t.Sort();
        return t[t.Count / 2];
    }

    [Fact]
    public void AttentionRmsNormMatmulTimings()
    {
        if (Environment.GetEnvironmentVariable("ELDR_BENCH") != "1") Assert.Skip("set ELDR_BENCH=1 to time kernels");
        var be = CudaFixture.Get(DType.BF16);
        var rng = new Random(42);
        float[] R(long n) { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1); return a; }

        foreach (var (B, T, H, Hkv, hd) in new[] { (1, 2048, 32, 32, 128), (1, 2048, 32, 8, 128) })
        {
            int N = B * T; float scale = 1f / MathF.Sqrt(hd);
            using var q = be.FromHost(R((long)N * H * hd), DType.BF16, N, H * hd);
            using var k = be.FromHost(R((long)N * Hkv * hd), DType.BF16, N, Hkv * hd);
            using var v = be.FromHost(R((long)N * Hkv * hd), DType.BF16, N, Hkv * hd);
            using var o = be.Alloc(DType.BF16, N, H * hd);
            using var lse = be.Alloc(DType.F32, B, H, T);
            using var dO = be.FromHost(R((long)N * H * hd), DType.BF16, N, H * hd);
            using var dq = be.Alloc(DType.BF16, N, H * hd);
            using var dk = be.Alloc(DType.BF16, N, Hkv * hd);
            using var dv = be.Alloc(DType.BF16, N, Hkv * hd);
            foreach (var tc in new[] { true, false })
            {
                be.TensorCoreAttention = tc;
                float f = Median(be, () => be.Attention(o, lse, q, k, v, B, T, H, Hkv, hd, scale));
                float b = Median(be, () => be.AttentionBackward(dq, dk, dv, dO, q, k, v, o, lse, B, T, H, Hkv, hd, scale));
                double flopsF = 4.0 * B * H * (double)T * T * hd / 2;     // causal: half of QKᵀ and PV
                string tag = $"B={B} T={T} H={H}/{Hkv} hd={hd} bf16 {(tc ? "tensor cores" : "fp32 cores")}";
                Report($"attention_fwd {tag}", f, $"{flopsF / f / 1e9:F1} TFLOP/s");
                Report($"attention_bwd {tag}", b, $"{2.5 * flopsF / b / 1e9:F1} TFLOP/s");
            }
            be.TensorCoreAttention = true;
            // the pipelined tensor-core kernels (cp.async, ldmatrix), opt-in until measured here
            be.PipelinedAttention = true;
            try
            {
                float f2 = Median(be, () => be.Attention(o, lse, q, k, v, B, T, H, Hkv, hd, scale));
                float b2 = Median(be, () => be.AttentionBackward(dq, dk, dv, dO, q, k, v, o, lse, B, T, H, Hkv, hd, scale));
                double flopsF = 4.0 * B * H * (double)T * T * hd / 2;
                Report($"attention_fwd B={B} T={T} H={H}/{Hkv} hd={hd} bf16 tensor cores pipelined (tc2)", f2, $"{flopsF / f2 / 1e9:F1} TFLOP/s");
                Report($"attention_bwd B={B} T={T} H={H}/{Hkv} hd={hd} bf16 tensor cores pipelined (tc2)", b2, $"{2.5 * flopsF / b2 / 1e9:F1} TFLOP/s");
            }
            finally { be.PipelinedAttention = false; }
        }

        {
            int N = 4096, C = 4096;
            using var x = be.FromHost(R((long)N * C), DType.BF16, N, C);
            using var w = be.FromHost(R(C), DType.BF16, C);
            using var y = be.Alloc(DType.BF16, N, C);
            using var rstd = be.Alloc(DType.F32, N);
            using var dy = be.FromHost(R((long)N * C), DType.BF16, N, C);
            using var dx = be.Alloc(DType.BF16, N, C);
            using var dw = be.Alloc(DType.F32, C);
            float f = Median(be, () => be.RmsNorm(y, rstd, x, w, 1e-5f));
            float b = Median(be, () => be.RmsNormBackward(dx, dw, dy, x, w, rstd));
            Report($"rmsnorm_fwd N={N} C={C} bf16", f, $"{2.0 * N * C * 2 / f / 1e6:F0} GB/s");
            Report($"rmsnorm_bwd N={N} C={C} bf16", b, $"{4.0 * N * C * 2 / b / 1e6:F0} GB/s");
        }

        {
            int M = 4096;
            using var a = be.FromHost(R((long)M * M), DType.BF16, M, M);
            using var w = be.FromHost(R((long)M * M), DType.BF16, M, M);
            using var c = be.Alloc(DType.BF16, M, M);
            float t = Median(be, () => be.Matmul(c, a, w, null));
            Report($"matmul {M}^3 bf16 (cublasGemmEx)", t, $"{2.0 * M * M * (double)M / t / 1e9:F1} TFLOP/s");
        }
        Report("device", 0, be.DeviceName + "; " + be.VersionString());
    }

    /// <summary>A whole training step (forward, backward, weight gradients) of the bundled llama-12L.</summary>
    [Fact]
    public void BundledModelTrainingStep()
    {
        if (Environment.GetEnvironmentVariable("ELDR_BENCH") != "1") Assert.Skip("set ELDR_BENCH=1 to time kernels");
        int B = 8, T = 512;
        var rng = new Random(7);
        var ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(1000)).ToArray();
        var batch = new TokenBatch(ids, B, T);
        var opts = new StepOptions { Backward = true, WeightGrads = true };
        foreach (var d in new[] { DType.BF16, DType.F32 })
        {
            var be = CudaFixture.Get(d);
            using var m = CausalLM.Load(TestPaths.BundledModel, be);
            for (int i = 0; i < 2; i++) m.Step(batch, opts);
            be.Synchronize();
            var t = new List<double>();
            for (int i = 0; i < 5; i++)
            {
                var sw = System.Diagnostics.Stopwatch.StartNew();
                m.Step(batch, opts);
                be.Synchronize();
                t.Add(sw.Elapsed.TotalMilliseconds);
            }
            t.Sort();
            Report($"llama-12L train step B={B} T={T} cuda {d}", (float)t[2], $"{B * T / t[2] * 1000:F0} tokens/s (host clock, synchronized)");
        }
        {
            using var cpu = new ElderCuda.Backends.Cpu.CpuBackend();
            using var m = CausalLM.Load(TestPaths.BundledModel, cpu);
            var small = new TokenBatch(ids[..(2 * T)], 2, T);
            m.Step(small, opts);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            m.Step(small, opts);
            double ms = sw.Elapsed.TotalMilliseconds;
            Report($"llama-12L train step B=2 T={T} cpu F32", (float)ms, $"{2 * T / ms * 1000:F0} tokens/s");
        }
    }
}
