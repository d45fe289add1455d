using System.Buffers.Binary;
using CsCheck;
using ElderCuda.IO.Safetensors;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.IO;

/// <summary>
/// Property: whatever is done to the bytes of a valid file, opening it and reading every tensor either
/// works or throws SafetensorsException — never another exception type, never a crash.
/// </summary>
public class SafetensorsFuzzTests : SafetensorsTempDirTest
{
    static readonly byte[] JsonChars = "0123456789-,.:[]{}\"e \\"u8.ToArray();

    byte[] ValidFile(out int headerLength)
    {
        string path = PathOf("valid.safetensors");
        SafetensorsWriter.Write(path, [
            SafetensorsWriter.FromFloat32("a.weight", DType.F32, [3, 2], [1, 2, 3, 4, 5, 6]),
            SafetensorsWriter.FromFloat32("b.weight", DType.BF16, [4], [1, -1, 0.5f, 2]),
            SafetensorsWriter.FromFloat32("c", DType.F16, [2, 1], [3, 4]),
            SafetensorsWriter.FromFloat32("ids", DType.I64, [3], [7, 8, 9]),
            SafetensorsWriter.FromFloat32("pos", DType.I32, [2], [1, 2]),
            SafetensorsWriter.FromFloat32("scalar", DType.F32, [], [42]),
            new TensorToWrite("empty", DType.F32, [0, 5], [])],
            new Dictionary<string, string> { ["format"] = "pt" });
        var bytes = File.ReadAllBytes(path);
        headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        return bytes;
    }

    /// <summary>Applies one mutation: <paramref name="mode"/> picks the kind, the rest say where and what.</summary>
    static byte[] Mutate(byte[] valid, int headerLength, int mode, int pos, byte[] noise)
    {
        var b = (byte[])valid.Clone();
        int len = b.Length;
        switch (mode)
        {
            case 0: // flip bits anywhere
                // long arithmetic: pos can be near int.MaxValue, and an int sum would wrap to a negative index
                for (int i = 0; i < noise.Length; i++) b[(int)(((long)pos + (long)i * 7919) % len)] ^= (byte)(noise[i] | 1);
                return b;
            case 1: // truncate
                return b[..(pos % len)];
            case 2: // overwrite a run with raw bytes
                for (int i = 0; i < noise.Length && pos % len + i < len; i++) b[pos % len + i] = noise[i];
                return b;
            case 3: // overwrite inside the header with JSON-ish characters, to reach the field checks
                for (int i = 0; i < noise.Length; i++) b[8 + (int)(((long)pos + i) % headerLength)] = JsonChars[noise[i] % JsonChars.Length];
                return b;
            case 4: // damage the length prefix
                b[pos % 8] = noise[0];
                return b;
            default: // append junk
                return [.. b, .. noise];
        }
    }

    static void OpenAndReadAll(string path)
    {
        using var f = SafetensorsFile.Open(path);
        foreach (var t in f.Tensors)
        {
            var raw = f.ReadRaw(t.Name);
            Assert.Equal(t.Length, raw.Length);
            Assert.Equal(t.ElementCount, f.ReadFloat32(t.Name).Length);
            if (t.DType is DType.I32 or DType.I64) f.ReadInt64(t.Name);
        }
        _ = f.Metadata.Count;
    }

    [Fact]
    public void DamagedFilesEitherReadOrThrowSafetensorsException()
    {
        var valid = ValidFile(out int headerLength);
        int rejected = 0, accepted = 0;
        Gen.Select(Gen.Int[0, 5], Gen.Int[0, int.MaxValue], Gen.Byte.Array[1, 24])
            .Sample((mode, pos, noise) =>
            {
                var bytes = Mutate(valid, headerLength, mode, pos, noise);
                string path = PathOf($"fuzz-{Guid.NewGuid():N}.safetensors");
                File.WriteAllBytes(path, bytes);
                try
                {
                    OpenAndReadAll(path);
                    Interlocked.Increment(ref accepted);
                }
                catch (SafetensorsException e)
                {
                    Assert.Contains(path, e.Message);
                    Interlocked.Increment(ref rejected);
                }
                finally
                {
                    File.Delete(path);
                }
            }, iter: 3000);
        // Both outcomes must actually occur, or the mutations are not exercising the reader.
        Assert.True(rejected > 0, "no mutation was rejected");
        Assert.True(accepted > 0, "no mutation was accepted");
    }
}
