using System.Buffers.Binary;
using System.Text;
using ElderCuda.IO.Safetensors;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.IO;

/// <summary>
/// Damaged or malicious files: each must give a SafetensorsException whose message names the file and
/// the problem, never another exception, an out-of-range read or a huge allocation.
/// </summary>
public class SafetensorsHostileTests : SafetensorsTempDirTest
{
    /// <summary>Writes 8-byte length + header + <paramref name="dataBytes"/> zero bytes.</summary>
    string Make(string header, int dataBytes = 0, ulong? declaredLength = null, string name = "bad.safetensors")
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        string path = PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static void AssertRejected(string path, params string[] phrases)
    {
        var e = Assert.Throws<SafetensorsException>(() =>
        {
            using var f = SafetensorsFile.Open(path);
        });
        Assert.Contains(path, e.Message);
        foreach (var p in phrases) Assert.Contains(p, e.Message);
    }

    const string Good = "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

    [Fact]
    public void ValidBaselineOpens()
    {
        using var f = SafetensorsFile.Open(Make("{" + Good + "}", 8));
        Assert.Equal(new float[2], f.ReadFloat32("w"));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    public void FileShorterThan8Bytes(int length)
    {
        string path = PathOf("short.safetensors");
        File.WriteAllBytes(path, new byte[length]);
        AssertRejected(path, "too short");
    }

    [Fact]
    public void MissingFile() => AssertRejected(PathOf("absent.safetensors"), "cannot open");

    [Fact]
    public void HeaderLengthBeyondTheFile() => AssertRejected(Make("{}", declaredLength: 1000), "header length 1000", "beyond the end");

    [Theory]
    [InlineData(100_000_001UL)]
    [InlineData(ulong.MaxValue)]
    public void HeaderLengthOver100MB(ulong n) => AssertRejected(Make("{}", declaredLength: n), "too large");

    [Fact]
    public void HeaderNotUtf8()
    {
        string path = PathOf("utf8.safetensors");
        byte[] header = [(byte)'{', (byte)'"', 0xff, 0xfe, (byte)'"', (byte)':', (byte)'1', (byte)'}'];
        var bytes = new byte[8 + header.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        File.WriteAllBytes(path, bytes);
        AssertRejected(path, "not valid UTF-8");
    }

    [Theory]
    [InlineData("{\"w\":")]
    [InlineData("not json")]
    [InlineData("{}{}")]
    [InlineData("{\"a\":1,}")]
    public void HeaderNotJson(string header) => AssertRejected(Make(header), "not valid JSON");

    [Theory]
    [InlineData("[1,2]")]
    [InlineData("\"text\"")]
    [InlineData("42")]
    public void HeaderNotAnObject(string header) => AssertRejected(Make(header), "not a JSON object");

    [Fact]
    public void RepeatedTensorName() =>
        AssertRejected(Make("{" + Good + "," + Good.Replace("[0,8]", "[8,16]") + "}", 16), "duplicate key \"w\"");

    [Fact]
    public void RepeatedTensorNameSpelledWithAnEscape() =>
        AssertRejected(Make("{" + Good + "," + Good.Replace("\"w\"", "\"\\u0077\"").Replace("[0,8]", "[8,16]") + "}", 16), "duplicate key");

    [Theory]
    [InlineData("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "missing \"dtype\"")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", "missing \"shape\"")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", "missing \"data_offsets\"")]
    public void MissingField(string header, string phrase) => AssertRejected(Make(header, 8), phrase);

    [Theory]
    [InlineData("{\"w\":[1]}", "entry is not an object")]
    [InlineData("{\"w\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", "\"dtype\" is not a string")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", "\"shape\" is not an array")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", "\"shape\" must hold integers")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", "\"shape\" must hold integers")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", "\"data_offsets\" is not an array of two integers")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"a\":0}}}", "\"data_offsets\" is not an array of two integers")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",\"8\"]}}", "\"data_offsets\" must be two non-negative integers")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", "\"data_offsets\" must be two non-negative integers")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "duplicate key \"dtype\"")]
    [InlineData("{\"__metadata__\":{\"format\":1}," + Good + "}", "is not a string")]
    [InlineData("{\"__metadata__\":[]," + Good + "}", "is not an object of strings")]
    public void IllTypedField(string header, string phrase) => AssertRejected(Make(header, 8), phrase);

    [Theory]
    [InlineData("F64")]
    [InlineData("U8")]
    [InlineData("f32")]
    public void UnsupportedDType(string dtype)
    {
        string path = Make("{" + Good.Replace("F32", dtype) + "}", 8);
        AssertRejected(path, $"unsupported dtype {dtype}", "F32", "F16", "BF16", "I64", "I32");
    }

    [Fact]
    public void NegativeDimension() =>
        AssertRejected(Make("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2,-1],\"data_offsets\":[0,8]}}", 8), "negative dimension");

    [Theory]
    [InlineData("[2147483647,2147483647,2147483647]")]   // product overflows 64 bits
    [InlineData("[4294967296]")]                          // a dimension beyond int
    [InlineData("[99999999999999999999999]")]             // beyond even 64-bit integers
    [InlineData("[1152921504606846976]")]                 // fits int64, but not in an int dimension
    public void OverflowingShape(string shape)
    {
        string path = Make("{\"w\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[0,8]}}", 8);
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(path));
        Assert.Contains(path, e.Message);
        Assert.True(e.Message.Contains("overflow") || e.Message.Contains("must hold integers"), e.Message);
    }

    [Fact]
    public void ElementsTimesDTypeSizeOverflows()
    {
        // (2^31-1)² × 2 elements still fits a long, but × 8 bytes per I64 does not.
        string path = Make("{\"w\":{\"dtype\":\"I64\",\"shape\":[2147483647,2147483647,2],\"data_offsets\":[0,8]}}", 8);
        AssertRejected(path, "overflows");
    }

    [Fact]
    public void OffsetsOutOfRange() =>
        AssertRejected(Make("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8), "out of range");

    [Fact]
    public void HugeOffsetsOutOfRange() =>
        AssertRejected(Make("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[9223372036854775800,9223372036854775807]}}", 8), "out of range");

    [Fact]
    public void BeginAfterEnd() =>
        AssertRejected(Make("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8), "begin 8 > end 0");

    [Fact]
    public void OverlappingTensors()
    {
        string header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}," +
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
        AssertRejected(Make(header, 12), "overlaps");
    }

    [Fact]
    public void ShapeTimesDTypeIsNotTheByteLength() =>
        AssertRejected(Make("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "does not match");

    [Fact]
    public void GapBetweenTensors()
    {
        // Following the reference: offsets must tile the data section exactly, so a hole is an error.
        string header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}," +
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
        AssertRejected(Make(header, 12), "gap");
    }

    [Fact]
    public void BytesAfterTheLastTensor() => AssertRejected(Make("{" + Good + "}", 12), "trailing");

    [Fact]
    public void DataSectionShorterThanTheTensors() => AssertRejected(Make("{" + Good + "}", 4), "out of range");

    [Fact]
    public void CheckpointFolderWithoutModelFiles()
    {
        var e = Assert.Throws<SafetensorsException>(() => Checkpoint.Open(Dir));
        Assert.Contains(Dir, e.Message);
        Assert.Contains("no model.safetensors or model.safetensors.index.json", e.Message);
        var e2 = Assert.Throws<SafetensorsException>(() => Checkpoint.Open(PathOf("nowhere")));
        Assert.Contains("does not exist", e2.Message);
    }

    void WriteIndex(string weightMapJson) =>
        File.WriteAllText(PathOf("model.safetensors.index.json"),
            "{\"metadata\":{\"total_size\":8},\"weight_map\":" + weightMapJson + "}");

    [Fact]
    public void IndexNamingAMissingShard()
    {
        SafetensorsWriter.Write(PathOf("model-00001-of-00002.safetensors"), [SafetensorsWriter.FromFloat32("a", DType.F32, [1], [1])]);
        WriteIndex("{\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00002-of-00002.safetensors\"}");
        var e = Assert.Throws<SafetensorsException>(() => Checkpoint.Open(Dir));
        Assert.Contains("model.safetensors.index.json", e.Message);
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void IndexListingATensorTwice()
    {
        SafetensorsWriter.Write(PathOf("s1.safetensors"), [SafetensorsWriter.FromFloat32("a", DType.F32, [1], [1])]);
        SafetensorsWriter.Write(PathOf("s2.safetensors"), [SafetensorsWriter.FromFloat32("b", DType.F32, [1], [1])]);
        WriteIndex("{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"a\":\"s2.safetensors\"}");
        var e = Assert.Throws<SafetensorsException>(() => Checkpoint.Open(Dir));
        Assert.Contains("model.safetensors.index.json", e.Message);
        Assert.Contains("two shards", e.Message);
    }

    [Fact]
    public void TensorStoredInTwoShards()
    {
        SafetensorsWriter.Write(PathOf("s1.safetensors"), [SafetensorsWriter.FromFloat32("a", DType.F32, [1], [1])]);
        SafetensorsWriter.Write(PathOf("s2.safetensors"), [
            SafetensorsWriter.FromFloat32("a", DType.F32, [1], [2]), SafetensorsWriter.FromFloat32("b", DType.F32, [1], [1])]);
        WriteIndex("{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}");
        var e = Assert.Throws<SafetensorsException>(() => Checkpoint.Open(Dir));
        Assert.Contains("s2.safetensors", e.Message);
        Assert.Contains("\"a\" is in two shards", e.Message);
    }

    [Fact]
    public void IndexPointingOutsideTheFolder()
    {
        WriteIndex("{\"a\":\"../elsewhere.safetensors\"}");
        var e = Assert.Throws<SafetensorsException>(() => Checkpoint.Open(Dir));
        Assert.Contains("not a plain file name", e.Message);
    }

    [Fact]
    public void IndexNamingATensorItsShardLacks()
    {
        SafetensorsWriter.Write(PathOf("s1.safetensors"), [SafetensorsWriter.FromFloat32("a", DType.F32, [1], [1])]);
        WriteIndex("{\"a\":\"s1.safetensors\",\"ghost\":\"s1.safetensors\"}");
        var e = Assert.Throws<SafetensorsException>(() => Checkpoint.Open(Dir));
        Assert.Contains("\"ghost\"", e.Message);
        Assert.Contains("does not contain it", e.Message);
    }

    [Fact]
    public void BrokenShardIsNamedInTheCheckpointError()
    {
        string shard = Make("{" + Good + "}", 4, name: "s1.safetensors");
        WriteIndex("{\"w\":\"s1.safetensors\"}");
        var e = Assert.Throws<SafetensorsException>(() => Checkpoint.Open(Dir));
        Assert.Contains(shard, e.Message);
    }
}
