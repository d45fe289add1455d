using System.Text.Json;

namespace ElderCuda.IO.Safetensors;

/// <summary>
/// A checkpoint folder: model.safetensors, or shards listed in model.safetensors.index.json ("weight_map").
/// Like transformers, a single model.safetensors wins when both are present. All files stay
/// memory-mapped until <see cref="Dispose"/>.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    readonly List<SafetensorsFile> _files;
    readonly Dictionary<string, SafetensorsFile> _owner;

    public string Directory { get; }

    /// <summary>Tensor names: shard by shard (in file-name order), each in offset order.</summary>
    public IReadOnlyList<string> Names { get; }

    Checkpoint(string dir, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> owner, List<string> names)
    {
        Directory = dir;
        _files = files;
        _owner = owner;
        Names = names.AsReadOnly();
    }

    public static Checkpoint Open(string dir)
    {
        ArgumentNullException.ThrowIfNull(dir);
        if (!System.IO.Directory.Exists(dir))
            throw new SafetensorsException(dir, "checkpoint folder does not exist");

        string single = Path.Combine(dir, SafetensorsWriter.SingleFileName);
        string index = Path.Combine(dir, SafetensorsWriter.IndexFileName);
        List<string> shardPaths;
        Dictionary<string, string>? weightMap = null;
        if (File.Exists(single))
            shardPaths = [single];
        else if (File.Exists(index))
        {
            weightMap = ReadWeightMap(index);
            shardPaths = weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)
                .Select(f => Path.Combine(dir, f)).ToList();
            foreach (var p in shardPaths)
                if (!File.Exists(p))
                    throw new SafetensorsException(index, $"names shard \"{Path.GetFileName(p)}\", which does not exist in {dir}");
        }
        else
            throw new SafetensorsException(dir,
                $"no {SafetensorsWriter.SingleFileName} or {SafetensorsWriter.IndexFileName} in checkpoint folder");

        var files = new List<SafetensorsFile>();
        try
        {
            var owner = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            var names = new List<string>();
            foreach (var p in shardPaths)
            {
                var f = SafetensorsFile.Open(p);
                files.Add(f);
                foreach (var t in f.Tensors)
                {
                    if (owner.TryGetValue(t.Name, out var other))
                        throw new SafetensorsException(p,
                            $"tensor \"{t.Name}\" is in two shards: {Path.GetFileName(other.Path)} and {Path.GetFileName(p)}");
                    owner.Add(t.Name, f);
                    names.Add(t.Name);
                }
            }
            if (weightMap != null)
            {
                // Every entry of the index must be where the index says it is.
                foreach (var (name, file) in weightMap)
                    if (!owner.TryGetValue(name, out var f) || Path.GetFileName(f.Path) != file)
                        throw new SafetensorsException(index,
                            $"weight_map puts tensor \"{name}\" in {file}, but that shard does not contain it");
            }
            return new Checkpoint(dir, files, owner, names);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    /// <summary>Reads "weight_map" of an index file, refusing repeated tensor names and shard names with folders.</summary>
    static Dictionary<string, string> ReadWeightMap(string index)
    {
        byte[] bytes;
        try
        {
            // Same bound as a safetensors header: a real index is a few hundred kilobytes at most.
            long length = new FileInfo(index).Length;
            if (length > SafetensorsHeader.MaxHeaderBytes)
                throw new SafetensorsException(index, $"index is too large ({length} bytes, limit {SafetensorsHeader.MaxHeaderBytes})");
            bytes = File.ReadAllBytes(index);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SafetensorsException(index, $"cannot read index: {e.Message}", e);
        }
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            if (doc.RootElement.ValueKind != JsonValueKind.Object ||
                !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new SafetensorsException(index, "index has no \"weight_map\" object");
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new SafetensorsException(index, $"weight_map entry for \"{p.Name}\" is not a string");
                string file = p.Value.GetString()!;
                // Shards live in the checkpoint folder itself; a path could point anywhere on disk.
                if (file.Length == 0 || Path.GetFileName(file) != file || file is "." or "..")
                    throw new SafetensorsException(index, $"weight_map entry for \"{p.Name}\" names \"{file}\", which is not a plain file name");
                if (!result.TryAdd(p.Name, file))
                    throw new SafetensorsException(index,
                        $"tensor \"{p.Name}\" is listed twice in weight_map ({result[p.Name]} and {file}), i.e. in two shards");
            }
            return result;
        }
        catch (JsonException e)
        {
            throw new SafetensorsException(index, $"index is not valid JSON: {e.Message}", e);
        }
    }

    public bool Contains(string name) => _owner.ContainsKey(name);

    public TensorInfo Info(string name) => FileOf(name).Info(name);

    public float[] ReadFloat32(string name) => FileOf(name).ReadFloat32(name);

    public byte[] ReadRaw(string name) => FileOf(name).ReadRaw(name);

    SafetensorsFile FileOf(string name)
    {
        if (_owner.TryGetValue(name, out var f)) return f;
        throw new SafetensorsException(Directory, $"no tensor named \"{name}\" in checkpoint ({_owner.Count} tensors)");
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
