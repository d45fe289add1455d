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
}
