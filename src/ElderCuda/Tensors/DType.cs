using System.Runtime.CompilerServices;

namespace ElderCuda.Tensors;

/// <summary>Storage types the engine reads and writes. Names follow the safetensors header spelling.</summary>
public enum DType { F32, F16, BF16, I64, I32 }

public static class DTypes
{
    public static int SizeOf(this DType t) => t switch
    {
        DType.F32 => 4, DType.I32 => 4, DType.F16 => 2, DType.BF16 => 2, DType.I64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown dtype"),
    };

    /// <summary>The safetensors header spelling ("F32", "BF16", ...).</summary>
    public static string ToSafetensors(this DType t) => t.ToString();

    public static bool TryParseSafetensors(string s, out DType t)
    {
        switch (s)
        {
            case "F32": t = DType.F32; return true;
            case "F16": t = DType.F16; return true;
            case "BF16": t = DType.BF16; return true;
            case "I64": t = DType.I64; return true;
            case "I32": t = DType.I32; return true;
            default: t = default; return false;
        }
    }

    /// <summary>bfloat16 → float32 is exact: the upper 16 bits of the float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Bf16ToFloat(ushort b) => BitConverter.Int32BitsToSingle(b << 16);

    /// <summary>float32 → bfloat16 with round-to-nearest-even, as torch does; NaN stays NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FloatToBf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 0x40);
        uint rounding = 0x7fff + ((u >> 16) & 1);
        return (ushort)((u + rounding) >> 16);
    }

    /// <summary>
    /// <see cref="FloatToBf16"/> over a span, a vector at a time and, for large spans, on all cores: the host-offloaded
    /// optimiser converts every trained weight each step (6.7 B of them at Llama-2-7B's size).
    /// </summary>
    public static void ToBf16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        if (dst.Length < src.Length) throw new ArgumentException($"{dst.Length} bf16 slots for {src.Length} floats");
        unsafe
        {
            fixed (float* ps = src)
            fixed (ushort* pd = dst)
            {
                float* s0 = ps; ushort* d0 = pd;
                InChunks(src.Length, (start, len) => ToBf16Chunk(new ReadOnlySpan<float>(s0 + start, len), new Span<ushort>(d0 + start, len)));
            }
        }
    }

    /// <summary>body(start, length) over [0, n): in one piece below 1 M elements, else in 256 K pieces on all cores.</summary>
    static void InChunks(int n, Action<int, int> body)
    {
        const int chunk = 1 << 18;
        if (n < 4 * chunk) { body(0, n); return; }
        Parallel.For(0, (n + chunk - 1) / chunk, c => body(c * chunk, Math.Min(chunk, n - c * chunk)));
    }

    static void ToBf16Chunk(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        int i = 0, n = src.Length;
        if (System.Numerics.Vector.IsHardwareAccelerated)
        {
            var u = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(src);
            int w = System.Numerics.Vector<uint>.Count;
            var absMask = new System.Numerics.Vector<uint>(0x7fffffffu);
            var inf = new System.Numerics.Vector<uint>(0x7f800000u);
            var bias = new System.Numerics.Vector<uint>(0x7fffu);
            var one = System.Numerics.Vector<uint>.One;
            var quiet = new System.Numerics.Vector<uint>(0x40u);
            for (; i <= n - 2 * w; i += 2 * w)
            {
                var lo = Round(new System.Numerics.Vector<uint>(u.Slice(i, w)));
                var hi = Round(new System.Numerics.Vector<uint>(u.Slice(i + w, w)));
                System.Numerics.Vector.Narrow(lo, hi).CopyTo(dst.Slice(i, 2 * w));
            }

            // the scalar rule, lane by lane: NaN keeps its top half with the quiet bit set; otherwise round to nearest even
            System.Numerics.Vector<uint> Round(System.Numerics.Vector<uint> x)
            {
                var nan = System.Numerics.Vector.GreaterThan(x & absMask, inf);
                var top = System.Numerics.Vector.ShiftRightLogical(x, 16);
                var rounded = System.Numerics.Vector.ShiftRightLogical(x + bias + (top & one), 16);
                return System.Numerics.Vector.ConditionalSelect(nan, top | quiet, rounded);
            }
        }
        for (; i < n; i++) dst[i] = FloatToBf16(src[i]);
    }

    public static float F16ToFloat(ushort h) => (float)BitConverter.UInt16BitsToHalf(h);
    public static ushort FloatToF16(float f) => BitConverter.HalfToUInt16Bits((Half)f);

    /// <summary>
    /// Decode raw little-endian bytes of <paramref name="t"/> into float32; large spans on all cores (the host-offloaded
    /// optimiser brings every gradient down each step: 27 GB of fp32 at Llama-2-7B's size).
    /// </summary>
    public static void ToFloat32(DType t, ReadOnlySpan<byte> src, Span<float> dst)
    {
        int n = dst.Length;
        if (src.Length != (long)n * t.SizeOf())
            throw new ArgumentException($"byte length {src.Length} does not match {n} elements of {t}");
        int size = t.SizeOf();
        unsafe
        {
            fixed (byte* ps = src)
            fixed (float* pd = dst)
            {
                byte* s0 = ps; float* d0 = pd;
                InChunks(n, (start, len) => ToFloat32Chunk(t, new ReadOnlySpan<byte>(s0 + (long)start * size, len * size), new Span<float>(d0 + start, len)));
            }
        }
    }

    static void ToFloat32Chunk(DType t, ReadOnlySpan<byte> src, Span<float> dst)
    {
        int n = dst.Length;
        switch (t)
        {
            case DType.F32:
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(src).CopyTo(dst);
                break;
            case DType.BF16:
            {
                var s = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(src);
                int i = 0;
                if (System.Numerics.Vector.IsHardwareAccelerated)
                {
                    // widen and shift a vector at a time (bf16 is the top half of a float32): decoding converts B·V
                    // logits per token, and the scalar loop took milliseconds of each 7B decode step
                    var d = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(dst);
                    int w = System.Numerics.Vector<ushort>.Count, h = w / 2;
                    for (; i <= n - w; i += w)
                    {
                        System.Numerics.Vector.Widen(new System.Numerics.Vector<ushort>(s.Slice(i, w)), out var lo, out var hi);
                        System.Numerics.Vector.ShiftLeft(lo, 16).CopyTo(d.Slice(i, h));
                        System.Numerics.Vector.ShiftLeft(hi, 16).CopyTo(d.Slice(i + h, h));
                    }
                }
                for (; i < n; i++) dst[i] = Bf16ToFloat(s[i]);
                break;
            }
            case DType.F16:
            {
                var s = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(src);
                for (int i = 0; i < n; i++) dst[i] = F16ToFloat(s[i]);
                break;
            }
            case DType.I32:
            {
                var s = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(src);
                for (int i = 0; i < n; i++) dst[i] = s[i];
                break;
            }
            case DType.I64:
            {
                var s = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(src);
                for (int i = 0; i < n; i++) dst[i] = s[i];
                break;
            }
        }
    }

    /// <summary>Encode float32 into raw little-endian bytes of <paramref name="t"/>.</summary>
    public static byte[] FromFloat32(DType t, ReadOnlySpan<float> src)
    {
        var bytes = GC.AllocateUninitializedArray<byte>(checked(src.Length * t.SizeOf()));   // every byte is written below
        switch (t)
        {
            case DType.F32:
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(src).CopyTo(bytes);
                break;
            case DType.BF16:
                ToBf16(src, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan()));
                break;
            case DType.F16:
            {
                var d = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan());
                for (int i = 0; i < src.Length; i++) d[i] = FloatToF16(src[i]);
                break;
            }
            case DType.I32:
            {
                var d = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(bytes.AsSpan());
                for (int i = 0; i < src.Length; i++) d[i] = checked((int)src[i]);
                break;
            }
            case DType.I64:
            {
                var d = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(bytes.AsSpan());
                for (int i = 0; i < src.Length; i++) d[i] = (long)src[i];
                break;
            }
        }
        return bytes;
    }
}
