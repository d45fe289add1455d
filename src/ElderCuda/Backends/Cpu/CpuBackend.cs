using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cpu;

/// <summary>
/// The reference backend: plain float32 on the host, parallel over rows, SIMD through TensorPrimitives.
/// Every CUDA kernel is checked against this. Keep it slow and obviously correct.
/// </summary>
public sealed partial class CpuBackend : IBackend
{
    public string Name => "cpu";
    public DType ComputeType => DType.F32;

    static CpuTensor C(Tensor t) => t as CpuTensor ?? throw new ArgumentException($"{t} does not belong to the CPU backend");
    static float[] F(Tensor t) => C(t).F ?? throw new ArgumentException($"{t} is not a float tensor");
    static int[] I(Tensor t) => C(t).I ?? throw new ArgumentException($"{t} is not an integer tensor");

    static DType Storage(DType d) => d is DType.I32 or DType.I64 ? DType.I32 : DType.F32;

    public Tensor Alloc(DType dtype, params int[] shape) => new CpuTensor(Storage(dtype), shape);

    public Tensor FromHost(ReadOnlySpan<float> data, DType dtype, params int[] shape)
    {
        var t = new CpuTensor(Storage(dtype), shape);
        CopyFromHost(t, data);
        return t;
    }

    public void CopyFromHost(Tensor dst, ReadOnlySpan<float> data)
    {
        var c = C(dst);
        if (data.Length != c.Count) throw new ArgumentException($"{data.Length} values for shape {c.ShapeString}");
        if (c.F is not null) data.CopyTo(c.F);
        else for (int i = 0; i < data.Length; i++) c.I![i] = (int)data[i];
    }

    public Tensor FromHostInt(ReadOnlySpan<int> data, params int[] shape)
    {
        var t = new CpuTensor(DType.I32, shape);
        if (data.Length != t.Count) throw new ArgumentException($"{data.Length} values for shape {t.ShapeString}");
        data.CopyTo(t.I);
        return t;
    }

    public void ToHost(Tensor t, Span<float> dst)
    {
        var c = C(t);
        if (c.F is not null) c.F.AsSpan().CopyTo(dst);
        else for (int i = 0; i < c.I!.Length; i++) dst[i] = c.I[i];
    }

    public void Zero(Tensor t)
    {
        var c = C(t);
        if (c.F is not null) Array.Clear(c.F); else Array.Clear(c.I!);
    }

    public void Copy(Tensor dst, Tensor src)
    {
        if (dst.Count != src.Count) throw new ArgumentException($"copy {src} → {dst}: element counts differ");
        var d = C(dst); var s = C(src);
        if (d.F is not null && s.F is not null) s.F.AsSpan().CopyTo(d.F);
        else if (d.I is not null && s.I is not null) s.I.AsSpan().CopyTo(d.I);
        else throw new ArgumentException($"copy {src} → {dst}: int/float mismatch");
    }

    public void Synchronize() { }
    public void Dispose() { }

    static void CheckRows(Tensor a, Tensor b, string op)
    {
        if (a.Rows != b.Rows) throw new ArgumentException($"{op}: rows differ ({a} vs {b})");
    }

    // ---- embedding --------------------------------------------------------------------------------
    public void Embedding(Tensor output, Tensor ids, Tensor table, Tensor? positions, int T, int posOffset)
    {
        var o = F(output); var id = I(ids); var tb = F(table); var pos = positions is null ? null : F(positions);
        int d = table.Cols, n = ids.Rows * ids.Cols, vocab = table.Rows;
        for (int r = 0; r < n; r++)
        {
            int tok = id[r];
            if ((uint)tok >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {tok} outside the vocabulary of {vocab}");
            var dst = o.AsSpan(r * d, d);
            tb.AsSpan(tok * d, d).CopyTo(dst);
            if (pos is not null) TensorPrimitives.Add(dst, pos.AsSpan((r % T + posOffset) * d, d), dst);
        }
    }

    public void EmbeddingBackward(Tensor dTable, Tensor? dPositions, Tensor dOut, Tensor ids, int T, int posOffset)
    {
        var dt = F(dTable); var g = F(dOut); var id = I(ids); var dp = dPositions is null ? null : F(dPositions);
        int d = dTable.Cols, n = (int)ids.Count;
        for (int r = 0; r < n; r++)
        {
            var src = g.AsSpan(r * d, d);
            var row = dt.AsSpan(id[r] * d, d);
            TensorPrimitives.Add(row, src, row);
            if (dp is not null) { var p = dp.AsSpan((r % T + posOffset) * d, d); TensorPrimitives.Add(p, src, p); }
        }
    }

    // ---- linear -----------------------------------------------------------------------------------
    public unsafe void Matmul(Tensor output, Tensor x, Tensor w, Tensor? bias, bool accumulate = false)
    {
        var o = F(output); var xs = F(x); var ws = F(w); var b = bias is null ? null : F(bias);
        int N = x.Rows, In = x.Cols, Out = w.Rows;
        if (w.Cols != In || output.Cols != Out || output.Rows != N)
            throw new ArgumentException($"matmul shapes: out {output} = x {x} · W {w}ᵀ");
        // blocks of 4 rows × 64 outputs keep a slab of W in L1 while 4 rows of x stream through it
        int rowBlocks = (N + 3) / 4, colBlocks = (Out + 63) / 64;
        Parallel.For(0, rowBlocks * colBlocks, blk =>
        {
            int n0 = blk / colBlocks * 4, j0 = blk % colBlocks * 64, j1 = Math.Min(Out, j0 + 64);
            fixed (float* xp = xs, wp = ws, op = o)
            {
                if (n0 + 4 <= N)
                {
                    float* x0 = xp + (long)n0 * In, x1 = x0 + In, x2 = x1 + In, x3 = x2 + In;
                    for (int j = j0; j < j1; j++)
                    {
                        CpuKernels.Dot4(x0, x1, x2, x3, wp + (long)j * In, In, out var s0, out var s1, out var s2, out var s3);
                        float bj = b is null ? 0f : b[j];
                        float* oc = op + (long)n0 * Out + j;
                        if (accumulate) { oc[0] += s0 + bj; oc[Out] += s1 + bj; oc[2 * Out] += s2 + bj; oc[3 * Out] += s3 + bj; }
                        else { oc[0] = s0 + bj; oc[Out] = s1 + bj; oc[2 * Out] = s2 + bj; oc[3 * Out] = s3 + bj; }
                    }
                }
                else
                {
                    for (int n = n0; n < N; n++)
                        for (int j = j0; j < j1; j++)
                        {
                            float v = CpuKernels.Dot(xp + (long)n * In, wp + (long)j * In, In) + (b is null ? 0f : b[j]);
                            op[(long)n * Out + j] = accumulate ? op[(long)n * Out + j] + v : v;
                        }
                }
            }
        });
    }

    public void MatmulBackward(Tensor? dx, Tensor? dw, Tensor? db, Tensor dOut, Tensor x, Tensor w, bool accumulateDx = false)
    {
        var g = F(dOut); int N = dOut.Rows, Out = dOut.Cols, In = w.Cols;
        var ws = F(w);
        if (dx is not null)
        {
            var dxs = F(dx);
            Parallel.For(0, N, n =>
            {
                var row = dxs.AsSpan(n * In, In);
                if (!accumulateDx) row.Clear();
                for (int j = 0; j < Out; j++)
                {
                    float gj = g[n * Out + j];
                    if (gj != 0f) TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(ws, j * In, In), gj, row, row);
                }
            });
        }
        if (dw is not null || db is not null)
        {
            // transpose dOut once so that each output row reads contiguous memory
            var gt = System.Buffers.ArrayPool<float>.Shared.Rent(checked(Out * N));
            for (int n = 0; n < N; n++) for (int j = 0; j < Out; j++) gt[(long)j * N + n] = g[n * Out + j];
            var xs = F(x); var dws = dw is null ? null : F(dw); var dbs = db is null ? null : F(db);
            Parallel.For(0, Out, j =>
            {
                var gj = new ReadOnlySpan<float>(gt, j * N, N);
                if (dbs is not null) dbs[j] += TensorPrimitives.Sum(gj);
                if (dws is null) return;
                var row = dws.AsSpan(j * In, In);
                for (int n = 0; n < N; n++)
                    if (gj[n] != 0f) TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(xs, n * In, In), gj[n], row, row);
            });
            System.Buffers.ArrayPool<float>.Shared.Return(gt);
        }
    }

    // ---- norms ------------------------------------------------------------------------------------
    public void RmsNorm(Tensor output, Tensor rstd, Tensor x, Tensor w, float eps)
    {
        var o = F(output); var r = F(rstd); var xs = F(x); var ws = F(w); int C = x.Cols;
        Parallel.For(0, x.Rows, n =>
        {
            var xr = new ReadOnlySpan<float>(xs, n * C, C);
            double ss = 0; foreach (var v in xr) ss += (double)v * v;
            float rs = (float)(1.0 / Math.Sqrt(ss / C + eps));
            r[n] = rs;
            var orow = o.AsSpan(n * C, C);
            for (int i = 0; i < C; i++) orow[i] = xr[i] * rs * ws[i];
        });
    }

    public void RmsNormBackward(Tensor dx, Tensor dw, Tensor dOut, Tensor x, Tensor w, Tensor rstd)
    {
        var dxs = F(dx); var dws = F(dw); var g = F(dOut); var xs = F(x); var ws = F(w); var r = F(rstd);
        int C = x.Cols, N = x.Rows;
        Parallel.For(0, N, n =>
        {
            float rs = r[n]; double dot = 0;
            for (int i = 0; i < C; i++) dot += (double)g[n * C + i] * ws[i] * xs[n * C + i];
            float k = (float)(dot * rs * rs * rs / C);
            for (int i = 0; i < C; i++) dxs[n * C + i] += rs * g[n * C + i] * ws[i] - k * xs[n * C + i];
        });
        ParallelColumns(C, i => { double s = 0; for (int n = 0; n < N; n++) s += (double)g[n * C + i] * xs[n * C + i] * r[n]; dws[i] += (float)s; });
    }

    public void LayerNorm(Tensor output, Tensor mean, Tensor rstd, Tensor x, Tensor w, Tensor b, float eps)
    {
        var o = F(output); var mu = F(mean); var r = F(rstd); var xs = F(x); var ws = F(w); var bs = F(b); int C = x.Cols;
        Parallel.For(0, x.Rows, n =>
        {
            double s = 0; for (int i = 0; i < C; i++) s += xs[n * C + i];
            double m = s / C, v = 0;
            for (int i = 0; i < C; i++) { double d = xs[n * C + i] - m; v += d * d; }
            float rs = (float)(1.0 / Math.Sqrt(v / C + eps));
            mu[n] = (float)m; r[n] = rs;
            for (int i = 0; i < C; i++) o[n * C + i] = (float)((xs[n * C + i] - m) * rs) * ws[i] + bs[i];
        });
    }

    public void LayerNormBackward(Tensor dx, Tensor dw, Tensor db, Tensor dOut, Tensor x, Tensor w, Tensor mean, Tensor rstd)
    {
        var dxs = F(dx); var dws = F(dw); var dbs = F(db); var g = F(dOut); var xs = F(x); var ws = F(w); var mu = F(mean); var r = F(rstd);
        int C = x.Cols, N = x.Rows;
        Parallel.For(0, N, n =>
        {
            double sg = 0, sgx = 0; float m = mu[n], rs = r[n];
            for (int i = 0; i < C; i++)
            {
                double gh = (double)g[n * C + i] * ws[i];
                sg += gh; sgx += gh * (xs[n * C + i] - m) * rs;
            }
            sg /= C; sgx /= C;
            for (int i = 0; i < C; i++)
            {
                double xh = (xs[n * C + i] - m) * rs;
                dxs[n * C + i] += (float)(rs * ((double)g[n * C + i] * ws[i] - sg - xh * sgx));
            }
        });
        ParallelColumns(C, i =>
        {
            double sw = 0, sb = 0;
            for (int n = 0; n < N; n++) { double gi = g[n * C + i]; sb += gi; sw += gi * (xs[n * C + i] - mu[n]) * r[n]; }
            dws[i] += (float)sw; dbs[i] += (float)sb;
        });
    }

    static void ParallelColumns(int C, Action<int> body) => Parallel.For(0, C, body);

    // ---- rope -------------------------------------------------------------------------------------
    public void Rope(Tensor x, Tensor cos, Tensor sin, int T, int nHeads, int headDim, int rotaryDim, bool inverse)
    {
        var xs = F(x); var cs = F(cos); var sn = F(sin); int half = rotaryDim / 2, W = nHeads * headDim;
        if (x.Cols != W) throw new ArgumentException($"rope: {x} is not [N, {nHeads}·{headDim}]");
        float sign = inverse ? -1f : 1f;
        Parallel.For(0, x.Rows, n =>
        {
            int t = n % T;
            for (int h = 0; h < nHeads; h++)
            {
                int b0 = n * W + h * headDim;
                for (int j = 0; j < half; j++)
                {
                    float c = cs[t * half + j], s = sign * sn[t * half + j];
                    float x1 = xs[b0 + j], x2 = xs[b0 + j + half];
                    xs[b0 + j] = x1 * c - x2 * s;
                    xs[b0 + j + half] = x2 * c + x1 * s;
                }
            }
        });
    }
}
