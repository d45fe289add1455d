using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cpu;

/// <summary>
/// The reference backend: plain float32 on the host, parallel over rows, SIMD through TensorPrimitives.
/// Every CUDA kernel is checked against this, so it stays obviously correct: the only blocking is in the matrix
/// products (<see cref="CpuKernels.Gemm"/>), which matmul and attention share, and which the tests check against
/// float64 sums.
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

    /// <summary>
    /// Pooled arrays come zeroed anyway; under <see cref="BackendOptions.PoisonUninitialized"/> float tensors are NaN and
    /// integer ones int.MinValue.
    /// </summary>
    public Tensor AllocUninitialized(DType dtype, params int[] shape)
    {
        var t = new CpuTensor(Storage(dtype), shape);
        if (BackendOptions.PoisonUninitialized)
        {
            if (t.F is { } f) Array.Fill(f, float.NaN);
            else if (t.I is { } i) Array.Fill(i, int.MinValue);
        }
        return t;
    }

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

    public void ToHostInt(Tensor t, Span<int> dst)
    {
        var c = C(t);
        if (c.I is null) throw new ArgumentException($"ToHostInt: {t} is not an integer tensor");
        c.I.AsSpan().CopyTo(dst);
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
    // All three products go through one kernel, CpuKernels.Gemm (C = A·Bᵀ over contiguous rows): the backward
    // products transpose an operand first, which costs O(N·(In + Out)) against the product's O(N·In·Out).
    public unsafe void Matmul(Tensor output, Tensor x, Tensor w, Tensor? bias, bool accumulate = false)
    {
        var o = F(output); var xs = F(x); var ws = F(w); var b = bias is null ? null : F(bias);
        int N = x.Rows, In = x.Cols, Out = w.Rows;
        if (w.Cols != In || output.Cols != Out || output.Rows != N)
            throw new ArgumentException($"matmul shapes: out {output} = x {x} · W {w}ᵀ");
        fixed (float* xp = xs, wp = ws, op = o, bp = b)
            CpuKernels.Gemm(xp, wp, op, N, Out, In, bp, accumulate);
    }

    public unsafe void MatmulBackward(Tensor? dx, Tensor? dw, Tensor? db, Tensor dOut, Tensor x, Tensor w, bool accumulateDx = false)
    {
        var g = F(dOut); int N = dOut.Rows, Out = dOut.Cols, In = w.Cols;
        var ws = F(w);
        var pool = System.Buffers.ArrayPool<float>.Shared;
        if (dx is not null)
        {
            // dx[N, In] = dOut[N, Out]·W[Out, In] = dOut·(Wᵀ)ᵀ
            var wt = pool.Rent(checked(Out * In));
            fixed (float* wp = ws, wtp = wt, gp = g, dxp = F(dx))
            {
                CpuKernels.Transpose(wp, Out, In, wtp);
                CpuKernels.Gemm(gp, wtp, dxp, N, In, Out, null, accumulateDx);
            }
            pool.Return(wt);
        }
        if (dw is not null || db is not null)
        {
            // dW[Out, In] += dOutᵀ[Out, N]·x[N, In] = dOutᵀ·(xᵀ)ᵀ; db[Out] += Σ_n dOut[n, ·]
            var gt = pool.Rent(checked(Out * N));
            fixed (float* gp = g, gtp = gt) CpuKernels.Transpose(gp, N, Out, gtp);
            if (db is not null)
            {
                var dbs = F(db);
                for (int j = 0; j < Out; j++) dbs[j] += TensorPrimitives.Sum(new ReadOnlySpan<float>(gt, j * N, N));
            }
            if (dw is not null)
            {
                var xt = pool.Rent(checked(In * N));
                fixed (float* xp = F(x), xtp = xt, gtp = gt, dwp = F(dw))
                {
                    CpuKernels.Transpose(xp, N, In, xtp);
                    CpuKernels.Gemm(gtp, xtp, dwp, Out, In, N, null, accumulate: true);
                }
                pool.Return(xt);
            }
            pool.Return(gt);
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
        var sw = ColumnSums(N, C, 1, (n, acc) => { float rn = r[n]; for (int i = 0; i < C; i++) acc[i] += (double)g[n * C + i] * xs[n * C + i] * rn; });
        for (int i = 0; i < C; i++) dws[i] += (float)sw[i];
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
        var sums = ColumnSums(N, C, 2, (n, acc) =>
        {
            float m = mu[n], rn = r[n];
            for (int i = 0; i < C; i++) { double gi = g[n * C + i]; acc[i] += gi * (xs[n * C + i] - m) * rn; acc[C + i] += gi; }
        });
        for (int i = 0; i < C; i++) { dws[i] += (float)sums[i]; dbs[i] += (float)sums[C + i]; }
    }

    /// <summary>
    /// Per-column sums over N rows in float64 (a norm's weight and bias gradients), walking rows in memory order:
    /// fixed bands of rows, each summed into its own partials, then the bands added in order, so the result does
    /// not depend on the thread count. <paramref name="addRow"/>(n, acc) adds row n into acc [k·C].
    /// </summary>
    static double[] ColumnSums(int N, int C, int k, Action<int, double[]> addRow)
    {
        const int Band = 64;
        int bands = (N + Band - 1) / Band;
        var partial = new double[bands][];
        Parallel.For(0, bands, b =>
        {
            var acc = new double[k * C];
            for (int n = b * Band; n < Math.Min(N, (b + 1) * Band); n++) addRow(n, acc);
            partial[b] = acc;
        });
        var total = new double[k * C];
        foreach (var p in partial) for (int i = 0; i < total.Length; i++) total[i] += p[i];
        return total;
    }

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
