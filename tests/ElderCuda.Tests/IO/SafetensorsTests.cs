using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using ElderCuda.IO.Safetensors;
using ElderCuda.Tensors;

namespace ElderCuda.Tests.IO;

/// <summary>Finds files of the repository from the test's output folder.</summary>
internal static class SafetensorsTestPaths
{
    /// <summary>The folder holding ELDeR.Cuda.sln, found by walking up from the test binaries.</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    static string FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "ELDeR.Cuda.sln")))
                return d.FullName;
        throw new InvalidOperationException($"no ELDeR.Cuda.sln above {AppContext.BaseDirectory}");
    }

    public static string InRepo(params string[] parts) => Path.Combine([RepoRoot, .. parts]);
}

/// <summary>A fresh temporary folder per test, deleted afterwards.</summary>
public abstract class SafetensorsTempDirTest : IDisposable
{
    protected readonly string Dir = Directory.CreateTempSubdirectory("eldr-st-").FullName;

    protected string PathOf(string name) => Path.Combine(Dir, name);

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }
}

public class SafetensorsTests : SafetensorsTempDirTest
{
    static byte[] HeaderBytes(string file)
    {
        var bytes = File.ReadAllBytes(file);
        int n = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(bytes));
        return bytes.AsSpan(8, n).ToArray();
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    [InlineData(DType.I32)]
    [InlineData(DType.I64)]
    public void RoundTripsEveryDType(DType dtype)
    {
        // Values every dtype holds exactly, so float and integer reads must give them back unchanged.
        float[] values = [0, 1, -2, 3, 0.5f * (dtype is DType.I32 or DType.I64 ? 8 : 1), 96, -128, 7];
        var t = SafetensorsWriter.FromFloat32("w", dtype, [2, 4], values);
        var scalar = SafetensorsWriter.FromFloat32("s", dtype, [], [5]);
        var empty = new TensorToWrite("e", dtype, [0, 3], []);
        string file = PathOf("rt.safetensors");
        SafetensorsWriter.Write(file, [t, scalar, empty]);

        using var f = SafetensorsFile.Open(file);
        Assert.Equal(3, f.Tensors.Count);
        var info = f.Info("w");
        Assert.Equal(dtype, info.DType);
        Assert.Equal([2, 4], info.Shape);
        Assert.Equal(8L * dtype.SizeOf(), info.Length);
        Assert.Equal(t.Data, f.ReadRaw("w"));
        var span = new byte[info.Length];
        f.ReadRaw("w", span);
        Assert.Equal(t.Data, span);
        float[] expected = values.ToArray();
        Assert.Equal(expected, f.ReadFloat32("w"));
        Assert.Equal([5f], f.ReadFloat32("s"));
        Assert.Empty(f.Info("s").Shape);
        Assert.Empty(f.ReadFloat32("e"));
        Assert.Equal([0, 3], f.Info("e").Shape);
        if (dtype is DType.I32 or DType.I64)
            Assert.Equal(expected.Select(v => (long)v).ToArray(), f.ReadInt64("w"));
        else
            Assert.Throws<SafetensorsException>(() => f.ReadInt64("w"));
        Assert.Throws<ArgumentException>(() => f.ReadRaw("w", new byte[info.Length + 1]));
    }

    [Fact]
    public void Bf16AndF16RoundTripRoundedValues()
    {
        float[] values = [1.00390625f, 3.14159265f, -1e-3f, 65504f];
        string file = PathOf("h.safetensors");
        SafetensorsWriter.Write(file, [
            SafetensorsWriter.FromFloat32("b", DType.BF16, [4], values),
            SafetensorsWriter.FromFloat32("h", DType.F16, [4], values)]);
        using var f = SafetensorsFile.Open(file);
        Assert.Equal(values.Select(v => DTypes.Bf16ToFloat(DTypes.FloatToBf16(v))), f.ReadFloat32("b"));
        Assert.Equal(values.Select(v => (float)(Half)v), f.ReadFloat32("h"));
    }

    [Fact]
    public void HeaderIsPaddedWithSpacesToAMultipleOf8()
    {
        // Names of every length 1..9 shift the JSON length through all residues mod 8.
        for (int len = 1; len <= 9; len++)
        {
            string file = PathOf($"pad{len}.safetensors");
            SafetensorsWriter.Write(file, [SafetensorsWriter.FromFloat32(new string('x', len), DType.F32, [1], [1f])]);
            var header = HeaderBytes(file);
            Assert.Equal(0, (8 + header.Length) % 8);
            string text = Encoding.UTF8.GetString(header);
            Assert.Equal(text.TrimEnd(' '), text.TrimEnd(' ').Trim());
            Assert.True(text.Length - text.TrimEnd(' ').Length < 8, "at most 7 padding spaces");
            using var doc = JsonDocument.Parse(text);   // padding stays valid JSON
        }
    }

    [Fact]
    public void MatchesTheReferenceWriterByteForByte()
    {
        // The reference's own tests: an empty file is {"} plus 6 spaces; with {"framework":"pt"} metadata
        // the header is 40 bytes; a single F32 tensor's header carries no spaces inside the JSON.
        string a = PathOf("a.safetensors");
        SafetensorsWriter.Write(a, []);
        Assert.Equal([8, 0, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'}', 32, 32, 32, 32, 32, 32], File.ReadAllBytes(a));

        string b = PathOf("b.safetensors");
        SafetensorsWriter.Write(b, [], new Dictionary<string, string> { ["framework"] = "pt" });
        var bytes = File.ReadAllBytes(b);
        Assert.Equal(40UL, BinaryPrimitives.ReadUInt64LittleEndian(bytes));
        Assert.Equal("{\"__metadata__\":{\"framework\":\"pt\"}}     ", Encoding.UTF8.GetString(bytes, 8, 40));

        string c = PathOf("c.safetensors");
        SafetensorsWriter.Write(c, [SafetensorsWriter.FromFloat32("attn0", DType.F32, [1, 1, 2, 3], [0, 1, 2, 3, 4, 5])]);
        Assert.Equal("{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ",
            Encoding.UTF8.GetString(HeaderBytes(c)));
    }

    [Fact]
    public void WriterOrdersByDTypeAlignmentThenName()
    {
        string file = PathOf("order.safetensors");
        SafetensorsWriter.Write(file, [
            SafetensorsWriter.FromFloat32("b", DType.F16, [1], [1]),
            SafetensorsWriter.FromFloat32("a", DType.F16, [1], [1]),
            SafetensorsWriter.FromFloat32("z", DType.I64, [1], [1]),
            SafetensorsWriter.FromFloat32("y", DType.BF16, [1], [1]),
            SafetensorsWriter.FromFloat32("x", DType.I32, [1], [1]),
            SafetensorsWriter.FromFloat32("m", DType.F32, [1], [1]),
            SafetensorsWriter.FromFloat32("l", DType.F32, [1], [1])]);
        using var f = SafetensorsFile.Open(file);
        Assert.Equal(["z", "l", "m", "x", "y", "a", "b"], f.Tensors.Select(t => t.Name));
        // Each tensor starts on a multiple of its element size (the data section starts on 8).
        Assert.All(f.Tensors, t => Assert.Equal(0, t.Offset % t.DType.SizeOf()));
    }

    [Fact]
    public void MetadataRoundTrips()
    {
        string file = PathOf("m.safetensors");
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "pruned layers 3,7 — ünïcode \"quoted\"" };
        SafetensorsWriter.Write(file, [SafetensorsWriter.FromFloat32("w", DType.F32, [2], [1, 2])], meta);
        using var f = SafetensorsFile.Open(file);
        Assert.Equal(meta.OrderBy(kv => kv.Key), f.Metadata.OrderBy(kv => kv.Key));

        string bare = PathOf("bare.safetensors");
        SafetensorsWriter.Write(bare, [SafetensorsWriter.FromFloat32("w", DType.F32, [2], [1, 2])]);
        using var g = SafetensorsFile.Open(bare);
        Assert.Empty(g.Metadata);
    }

    [Fact]
    public void WriteReplacesAnExistingFileAndLeavesNoTemporaryFiles()
    {
        string file = PathOf("w.safetensors");
        SafetensorsWriter.Write(file, [SafetensorsWriter.FromFloat32("old", DType.F32, [1], [1])]);
        SafetensorsWriter.Write(file, [SafetensorsWriter.FromFloat32("new", DType.F32, [1], [2])]);
        using (var f = SafetensorsFile.Open(file))
            Assert.Equal(["new"], f.Tensors.Select(t => t.Name));
        Assert.Equal(["w.safetensors"], Directory.GetFiles(Dir).Select(Path.GetFileName));
    }

    [Fact]
    public void FailedWriteKeepsTheOldFile()
    {
        string file = PathOf("keep.safetensors");
        SafetensorsWriter.Write(file, [SafetensorsWriter.FromFloat32("w", DType.F32, [1], [1])]);
        var before = File.ReadAllBytes(file);
        // The data is checked before writing, but a source that fails while being enumerated is the
        // closest stand-in for an interrupted write that a test can make.
        IEnumerable<TensorToWrite> Failing()
        {
            yield return SafetensorsWriter.FromFloat32("a", DType.F32, [1], [1]);
            throw new IOException("disk gone");
        }
        Assert.Throws<IOException>(() => SafetensorsWriter.Write(file, Failing()));
        Assert.Equal(before, File.ReadAllBytes(file));
        Assert.Single(Directory.GetFiles(Dir));
    }

    [Fact]
    public void WriterRejectsInconsistentTensors()
    {
        string file = PathOf("bad.safetensors");
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(file, [new TensorToWrite("w", DType.F32, [2], new byte[4])]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(file, [
            SafetensorsWriter.FromFloat32("w", DType.F32, [1], [1]), SafetensorsWriter.FromFloat32("w", DType.F32, [1], [1])]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.FromFloat32("w", DType.F32, [3], [1, 2]));
        Assert.False(File.Exists(file));
    }

    [Fact]
    public void InfoOfAMissingTensorNamesFileAndTensor()
    {
        string file = PathOf("one.safetensors");
        SafetensorsWriter.Write(file, [SafetensorsWriter.FromFloat32("w", DType.F32, [1], [1])]);
        using var f = SafetensorsFile.Open(file);
        Assert.False(f.Contains("nope"));
        var e = Assert.Throws<SafetensorsException>(() => f.Info("nope"));
        Assert.Contains(file, e.Message);
        Assert.Contains("nope", e.Message);
    }

    [Fact]
    public void ParallelReadsAgreeAndDisposedFilesRefuseReads()
    {
        string file = PathOf("par.safetensors");
        var tensors = LayerTensors(layers: 8, width: 16);
        SafetensorsWriter.Write(file, tensors);
        var f = SafetensorsFile.Open(file);
        Parallel.For(0, 64, i =>
        {
            var t = tensors[i % tensors.Count];
            Assert.Equal(t.Data, f.ReadRaw(t.Name));
        });
        f.Dispose();
        f.Dispose();   // idempotent
        Assert.Throws<ObjectDisposedException>(() => f.ReadRaw(tensors[0].Name));
    }

    static List<TensorToWrite> LayerTensors(int layers, int width)
    {
        var list = new List<TensorToWrite>();
        for (int l = 0; l < layers; l++)
        {
            var w = Enumerable.Range(0, width * width).Select(i => (float)(l * 1000 + i)).ToArray();
            list.Add(SafetensorsWriter.FromFloat32($"model.layers.{l}.mlp.up_proj.weight", DType.F32, [width, width], w));
            list.Add(SafetensorsWriter.FromFloat32($"model.layers.{l}.input_layernorm.weight", DType.BF16, [width], w.AsSpan(0, width)));
        }
        return list;
    }

    [Fact]
    public void ShardedCheckpointReadsAcrossShards()
    {
        var tensors = LayerTensors(layers: 5, width: 8);   // each layer: 256 + 16 bytes
        long total = tensors.Sum(t => t.Data.LongLength);
        var files = SafetensorsWriter.WriteCheckpoint(Dir, tensors, maxShardBytes: 600);

        // 272 bytes a layer, 600 a shard: two layers per shard, so three shards.
        Assert.Equal(["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors", "model.safetensors.index.json"], files);
        Assert.False(File.Exists(PathOf("model.safetensors")));

        using (var doc = JsonDocument.Parse(File.ReadAllBytes(PathOf("model.safetensors.index.json"))))
        {
            Assert.Equal(total, doc.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
            var map = doc.RootElement.GetProperty("weight_map");
            Assert.Equal(tensors.Count, map.EnumerateObject().Count());
            Assert.Equal("model-00003-of-00003.safetensors", map.GetProperty("model.layers.4.mlp.up_proj.weight").GetString());
        }
        foreach (var shard in files.Take(3))
        {
            using var s = SafetensorsFile.Open(PathOf(shard));
            Assert.Equal("pt", s.Metadata["format"]);
        }

        using var ckpt = Checkpoint.Open(Dir);
        Assert.Equal(Dir, ckpt.Directory);
        Assert.Equal(tensors.Select(t => t.Name).Order(), ckpt.Names.Order());
        foreach (var t in tensors)
        {
            Assert.True(ckpt.Contains(t.Name));
            Assert.Equal(t.Data, ckpt.ReadRaw(t.Name));
            Assert.Equal(t.Shape, ckpt.Info(t.Name).Shape);
        }
        Assert.Equal(4003f, ckpt.ReadFloat32("model.layers.4.mlp.up_proj.weight")[3]);
        Assert.Throws<SafetensorsException>(() => ckpt.Info("missing"));
    }

    [Fact]
    public void SmallCheckpointIsOneFileAndReplacesAnOlderShardedSave()
    {
        var tensors = LayerTensors(layers: 3, width: 4);
        SafetensorsWriter.WriteCheckpoint(Dir, tensors, maxShardBytes: 100);
        Assert.True(File.Exists(PathOf("model.safetensors.index.json")));

        var files = SafetensorsWriter.WriteCheckpoint(Dir, tensors);
        Assert.Equal(["model.safetensors"], files);
        Assert.Equal(["model.safetensors"], Directory.GetFiles(Dir).Select(Path.GetFileName));
        using var ckpt = Checkpoint.Open(Dir);
        Assert.Equal(tensors.Count, ckpt.Names.Count);
        Assert.Equal(tensors[0].Data, ckpt.ReadRaw(tensors[0].Name));
    }

    [Fact]
    public void ReadsTheTinyLlamaFixture()
    {
        string dir = SafetensorsTestPaths.InRepo("tests", "ElderCuda.Tests", "fixtures", "hf-tiny", "llama-gqa");
        using var cfg = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        var c = cfg.RootElement;
        int vocab = c.GetProperty("vocab_size").GetInt32(), hidden = c.GetProperty("hidden_size").GetInt32();
        int layers = c.GetProperty("num_hidden_layers").GetInt32(), inter = c.GetProperty("intermediate_size").GetInt32();
        int heads = c.GetProperty("num_attention_heads").GetInt32(), kv = c.GetProperty("num_key_value_heads").GetInt32();
        int headDim = c.GetProperty("head_dim").GetInt32();

        using var f = SafetensorsFile.Open(Path.Combine(dir, "model.safetensors"));
        Assert.Equal(layers * 9 + 3, f.Tensors.Count);     // 9 per layer + embed, final norm, untied lm_head
        Assert.Equal(39, f.Tensors.Count);
        Assert.All(f.Tensors, t => Assert.Equal(DType.F32, t.DType));
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal([vocab, hidden], f.Info("model.embed_tokens.weight").Shape);
        Assert.Equal([vocab, hidden], f.Info("lm_head.weight").Shape);
        Assert.Equal([heads * headDim, hidden], f.Info("model.layers.0.self_attn.q_proj.weight").Shape);
        Assert.Equal([kv * headDim, hidden], f.Info("model.layers.3.self_attn.k_proj.weight").Shape);
        Assert.Equal([inter, hidden], f.Info("model.layers.1.mlp.gate_proj.weight").Shape);
        Assert.Equal([hidden, inter], f.Info("model.layers.2.mlp.down_proj.weight").Shape);
        // Values decoded independently (Python struct) from the same file.
        var emb = f.ReadFloat32("model.embed_tokens.weight");
        Assert.Equal([-0.006793837528675795f, 0.008105522021651268f, 0.04174767807126045f, -0.018613606691360474f], emb[..4]);

        using var ckpt = Checkpoint.Open(dir);
        Assert.Equal(39, ckpt.Names.Count);
    }

    [Fact]
    public void ReadsTheBundledBf16Llama()
    {
        string dir = SafetensorsTestPaths.InRepo("models", "llama-12L");
        using var cfg = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        var c = cfg.RootElement;
        int vocab = c.GetProperty("vocab_size").GetInt32(), hidden = c.GetProperty("hidden_size").GetInt32();
        int layers = c.GetProperty("num_hidden_layers").GetInt32(), inter = c.GetProperty("intermediate_size").GetInt32();
        int kv = c.GetProperty("num_key_value_heads").GetInt32(), headDim = c.GetProperty("head_dim").GetInt32();

        using var ckpt = Checkpoint.Open(dir);
        Assert.Equal(layers * 9 + 2, ckpt.Names.Count);      // tied embeddings: no lm_head.weight
        Assert.Equal(110, ckpt.Names.Count);
        Assert.False(ckpt.Contains("lm_head.weight"));
        var emb = ckpt.Info("model.embed_tokens.weight");
        Assert.Equal(DType.BF16, emb.DType);
        Assert.Equal([vocab, hidden], emb.Shape);
        Assert.Equal([kv * headDim, hidden], ckpt.Info($"model.layers.{layers - 1}.self_attn.v_proj.weight").Shape);
        Assert.Equal([hidden, inter], ckpt.Info("model.layers.0.mlp.down_proj.weight").Shape);
        var norm = ckpt.ReadFloat32("model.norm.weight");
        Assert.Equal(hidden, norm.Length);
        Assert.Equal([1.921875f, 1.84375f, 1.84375f, 1.859375f], norm[..4]);
        Assert.Equal(363.9140625, norm.Sum(v => (double)v), 6);
    }
}
