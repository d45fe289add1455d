// CPU backend op benchmark at llama-24L's training shapes (N = 8 × 512 tokens, hidden 256, MLP 768, vocab 4096;
// attention B 8, T 512, 4 heads over 2 kv heads, head dim 64). Each op: best wall time of repeated calls over 2 s,
// and GFLOPS from its exact flop count (causal attention: the lower triangle only; backward counted as 2× forward).
// The last line, the host-offloaded AdamW over 64 M values, reports GB/s in that column instead.
// Figures and the commit they compare are in bench/RESULTS.md ("Fifth session").
using System.Diagnostics;
using ElderCuda.Backends.Cpu;
using ElderCuda.Tensors;
var be = new CpuBackend();
var rng = new Random(1);
float[] R(int n) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() - 0.5); return a; }
Tensor T(params int[] s) { int n = 1; foreach (var d in s) n *= d; return be.FromHost(R(n), DType.F32, s); }
void Time(string name, double flops, Action a)
{
    a();
    var tot = Stopwatch.StartNew(); double s = 1e9;
    while (tot.Elapsed.TotalSeconds < 2) { var sw = Stopwatch.StartNew(); a(); s = Math.Min(s, sw.Elapsed.TotalSeconds); }
    Console.WriteLine($"{name,-40} {s * 1e3,9:F2} ms  {flops / s / 1e9,7:F1} GFLOPS");
}
int N = 4096;
foreach (var (In, Out) in new[] { (256, 256), (256, 768), (768, 256), (256, 4096) })
{
    var x = T(N, In); var w = T(Out, In); var o = T(N, Out); var dx = T(N, In); var dw = T(Out, In);
    double f = 2.0 * N * In * Out;
    Time($"fwd  {In}->{Out}", f, () => be.Matmul(o, x, w, null));
    Time($"bdx  {In}->{Out}", f, () => be.MatmulBackward(dx, null, null, o, x, w));
    Time($"bdw  {In}->{Out}", f, () => be.MatmulBackward(null, dw, null, o, x, w));
}
{
    int B = 8, Tq = 512, H = 4, KV = 2, hd = 64;
    var q = T(B * Tq, H * hd); var k = T(B * Tq, KV * hd); var v = T(B * Tq, KV * hd); var o = T(B * Tq, H * hd); var lse = T(B * H * Tq);
    var dq = T(B * Tq, H * hd); var dk = T(B * Tq, KV * hd); var dv = T(B * Tq, KV * hd);
    double f = 2.0 * 2 * B * H * (Tq * (Tq + 1) / 2.0) * hd;
    Time("attn fwd", f, () => be.Attention(o, lse, q, k, v, B, Tq, H, KV, hd, 0.125f));
    Time("attn bwd", 2 * f, () => be.AttentionBackward(dq, dk, dv, o, q, k, v, o, lse, B, Tq, H, KV, hd, 0.125f));
}
{
    // the host-offloaded optimiser's update (AdamW.cs, OnHost): 64 M fp32 elements, in place on the master
    int n = 64 << 20;
    var p = T(n); var g = T(n); var m = T(n); var v = T(n);
    // the GFLOPS column reads as GB/s here: 28 bytes move per element (read p g m v, write p m v)
    Time("adamw 64M (host offload), GB/s", 28.0 * n, () => be.AdamW(p, p, g, m, v, 1e-5f, 0.9f, 0.999f, 1e-8f, 0.01f, 3));
}
