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
    /// the scalar tail too, and an offset start checks unaligned spans.
    /// </summary>
    [Theory]
    [InlineData(0, 65536)]
    [InlineData(3, 65533)]
    [InlineData(1, 13)]
    public void Bf16BulkConversionIsExactForEveryPattern(int start, int count)
    {
        var bits = new ushort[65536];
        for (int i = 0; i < bits.Length; i++) bits[i] = (ushort)(i * 40503);   // a permutation: neighbours differ
        var src = System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan(start, count));
        var dst = new float[count];
        DTypes.ToFloat32(DType.BF16, src, dst);
        for (int i = 0; i < count; i++)
            Assert.Equal((uint)bits[start + i] << 16, BitConverter.SingleToUInt32Bits(dst[i]));
    }
}
