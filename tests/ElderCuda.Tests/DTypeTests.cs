using ElderCuda.Tensors;

namespace ElderCuda.Tests;

public class DTypeTests
{
    [Theory]
    [InlineData(1.0f, (ushort)0x3F80)]
    [InlineData(-2.0f, (ushort)0xC000)]
    // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to even (0x3F80)
    [InlineData(1.00390625f, (ushort)0x3F80)]
    // 1 + 3·2^-8 is halfway too: ties to even rounds up to 0x3F82
    [InlineData(1.01171875f, (ushort)0x3F82)]
    public void Bf16RoundsToNearestEven(float f, ushort expected)
    {
        Assert.Equal(expected, DTypes.FloatToBf16(f));
        Assert.Equal(f, DTypes.Bf16ToFloat(DTypes.FloatToBf16(f)), 0.01f);
    }

    /// <summary>
    /// Every bfloat16 bit pattern (NaNs, infinities, subnormals, both zeros) widens to the float32 whose top half it is,
    /// bit for bit, through the vectorised bulk conversion; lengths that are not a multiple of the vector width run
    /// the scalar tail too, an offset start checks unaligned spans, and past 1 M values the work is split over all cores.
    /// </summary>
    [Theory]
    [InlineData(0, 65536)]
    [InlineData(3, 65533)]
    [InlineData(1, 13)]
    [InlineData(5, 65536 * 17 + 3)]
    public void Bf16BulkConversionIsExactForEveryPattern(int start, int count)
    {
        var bits = new ushort[Math.Max(65536, start + count)];
        for (int i = 0; i < bits.Length; i++) bits[i] = (ushort)(i * 40503);   // a permutation: neighbours differ
        var src = System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan(start, count));
        var dst = new float[count];
        DTypes.ToFloat32(DType.BF16, src, dst);
        for (int i = 0; i < count; i++)
            Assert.Equal((uint)bits[start + i] << 16, BitConverter.SingleToUInt32Bits(dst[i]));
    }

    /// <summary>float32 bytes → float32 past the parallel threshold (the gradient download): every bit pattern kept, NaN payloads too.</summary>
    [Fact]
    public void F32BulkDecodingKeepsEveryBit()
    {
        var rng = new Random(9);
        var bits = new uint[(1 << 20) + 7];
        for (int i = 0; i < bits.Length; i++) bits[i] = (uint)rng.NextInt64(1L << 32);
        var dst = new float[bits.Length];
        DTypes.ToFloat32(DType.F32, System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan()), dst);
        for (int i = 0; i < bits.Length; i++) Assert.Equal(bits[i], BitConverter.SingleToUInt32Bits(dst[i]));
    }

    /// <summary>
    /// float32 → bfloat16 over a span (vectorised, and on all cores past 1 M values) against round-to-nearest-even worked
    /// out in double arithmetic: for every bf16 top half, low halves at the tie, either side of it, at the ends and at
    /// random, so that ties to even, carries into the exponent, overflow to infinity, subnormals and NaN are all met.
    /// </summary>
    [Fact]
    public void Bf16BulkRoundingIsNearestEvenForEveryTopHalf()
    {
        ushort[] lows = [0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff, 0x4000, 0xc000];
        var rng = new Random(5);
        int per = lows.Length + 2;
        var src = new float[65536 * per + 5];          // past the parallel threshold, with a scalar tail
        for (int h = 0; h < 65536; h++)
        {
            for (int k = 0; k < lows.Length; k++) src[h * per + k] = BitConverter.UInt32BitsToSingle(((uint)h << 16) | lows[k]);
            for (int k = lows.Length; k < per; k++) src[h * per + k] = BitConverter.UInt32BitsToSingle(((uint)h << 16) | (uint)rng.Next(65536));
        }
        for (int i = 65536 * per; i < src.Length; i++) src[i] = (float)(rng.NextDouble() * 2 - 1);
        var got = new ushort[src.Length];
        DTypes.ToBf16(src, got);
        for (int i = 0; i < src.Length; i++)
        {
            float x = src[i]; uint bits = BitConverter.SingleToUInt32Bits(x);
            if (float.IsNaN(x))
            {
                Assert.True(float.IsNaN(DTypes.Bf16ToFloat(got[i])), $"NaN {bits:x8} → {got[i]:x4}");
                Assert.Equal(bits >> 31, (uint)got[i] >> 15);
                continue;
            }
            // the two bf16 neighbours of x (truncation and one step away from zero), chosen by distance, ties to even
            uint t = bits >> 16;
            double a = DTypes.Bf16ToFloat((ushort)t), b = t == 0x7f7f || t == 0xff7f ? Math.CopySign(Math.Pow(2, 128), x) : DTypes.Bf16ToFloat((ushort)(t + 1));
            double da = Math.Abs(x - a), db = Math.Abs(x - b);
            uint expected = da < db ? t : db < da ? t + 1 : ((t & 1) == 0 ? t : t + 1);
            if (float.IsInfinity(x)) expected = t;
            Assert.True(expected == got[i], $"{x:R} ({bits:x8}): expected {expected:x4}, got {got[i]:x4}");
        }
    }
}
