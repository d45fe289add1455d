using System.Text;
using System.Text.Json.Nodes;

namespace ElderCuda.Training;

/// <summary>
/// Resumable run state: a JSON document plus named float arrays, in one file written atomically
/// (to a temporary name in the same folder, then renamed over the old file), so that an interrupt at
/// any moment leaves either the previous state or the new one, never half of one.
/// </summary>
public sealed class RunCheckpoint
{
    public const string FileName = "state.bin";
    static readonly byte[] Magic = "ELDRCKP1"u8.ToArray();

    public string Dir { get; }
    public RunCheckpoint(string dir) { Dir = dir; }

    public string StatePath => Path.Combine(Dir, FileName);
    public bool Exists => File.Exists(StatePath);

    public void Save(JsonObject meta, IReadOnlyDictionary<string, float[]> arrays)
    {
        Directory.CreateDirectory(Dir);
        string tmp = Path.Combine(Dir, $"{FileName}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            using (var w = new BinaryWriter(fs, Encoding.UTF8))
            {
                w.Write(Magic);
                w.Write(meta.ToJsonString());
                w.Write(arrays.Count);
                foreach (var (name, a) in arrays.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    w.Write(name);
                    w.Write(a.Length);
                    w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()));
                }
                w.Flush();
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, StatePath, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    public (JsonObject Meta, Dictionary<string, float[]> Arrays)? TryLoad()
    {
        if (!Exists) return null;
        using var fs = File.OpenRead(StatePath);
        using var r = new BinaryReader(fs, Encoding.UTF8);
        var magic = r.ReadBytes(Magic.Length);
        if (!magic.AsSpan().SequenceEqual(Magic)) throw new InvalidDataException($"{StatePath}: not an eldr checkpoint");
        var meta = (JsonObject)JsonNode.Parse(r.ReadString())!;
        int n = r.ReadInt32();
        var arrays = new Dictionary<string, float[]>(n);
        for (int i = 0; i < n; i++)
        {
            string name = r.ReadString();
            int len = r.ReadInt32();
            var a = new float[len];
            r.BaseStream.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()));
            arrays[name] = a;
        }
        return (meta, arrays);
    }
}
