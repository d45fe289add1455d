using System.Buffers.Binary;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using ElderCuda.Tensors;

namespace ElderCuda.IO.Safetensors;

/// <summary>A tensor to be written: raw little-endian bytes of <paramref name="DType"/>, row-major.</summary>
public sealed record TensorToWrite(string Name, DType DType, int[] Shape, byte[] Data);

/// <summary>Writes safetensors files and Hugging Face checkpoint folders (single file or sharded).</summary>
public static class SafetensorsWriter
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    // Non-ASCII names are written as UTF-8 rather than \uXXXX escapes, like the reference (serde_json).
    static readonly JsonWriterOptions CompactJson = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    static readonly JsonWriterOptions IndentedJson = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, Indented = true, IndentSize = 2 };

    /// <summary>
    /// Writes one safetensors file. Tensors are laid out as the reference writer does: by dtype
    /// alignment descending (I64, F32, I32, BF16, F16), then by name (UTF-8 byte order), so the output is
    /// deterministic and every tensor starts at a multiple of its element size. The header is padded
    /// with spaces so the data section starts on an 8-byte boundary.
    /// Writes atomically: to "&lt;path&gt;.tmp-&lt;random&gt;" then renames over <paramref name="path"/>,
    /// so an interrupted write never leaves a half file at <paramref name="path"/>.
    /// </summary>
    public static void Write(string path, IEnumerable<TensorToWrite> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var ordered = Validate(path, tensors);
        byte[] header = BuildHeader(ordered, metadata);

        WriteAtomically(path, stream =>
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            stream.Write(prefix);
            stream.Write(header);
            foreach (var t in ordered) stream.Write(t.Data);
        });
    }

    /// <summary>Encodes float32 values as <paramref name="dtype"/> (bf16 rounds to nearest even).</summary>
    public static TensorToWrite FromFloat32(string name, DType dtype, int[] shape, ReadOnlySpan<float> data)
    {
        long count = ElementCount(shape) ?? throw new ArgumentException($"tensor \"{name}\": invalid shape [{string.Join(",", shape)}]", nameof(shape));
        if (count != data.Length)
            throw new ArgumentException($"tensor \"{name}\": shape [{string.Join(",", shape)}] holds {count} elements but {data.Length} values were given", nameof(data));
        return new TensorToWrite(name, dtype, (int[])shape.Clone(), DTypes.FromFloat32(dtype, data));
    }

    /// <summary>
    /// Writes a Hugging Face checkpoint into <paramref name="dir"/>: model.safetensors when the tensors
    /// total at most <paramref name="maxShardBytes"/>, else model-00001-of-0000N.safetensors ... and
    /// model.safetensors.index.json ({"metadata":{"total_size":N},"weight_map":{...}}), as transformers'
    /// save_pretrained does. Shards are filled in the given tensor order (a tensor larger than the limit
    /// gets a shard of its own). Every file carries "format":"pt" in its metadata because transformers
    /// refuses safetensors files whose metadata lacks it. Files of an earlier save in another layout
    /// (stale shards or index, or a stale single file) are removed after the new files are in place.
    /// Returns the file names written (shards first, then the index when there is one).
    /// </summary>
    public static IReadOnlyList<string> WriteCheckpoint(string dir, IReadOnlyList<TensorToWrite> tensors,
        long maxShardBytes = 5L << 30, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(dir);
        ArgumentNullException.ThrowIfNull(tensors);
        if (maxShardBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxShardBytes), maxShardBytes, "must be positive");
        Directory.CreateDirectory(dir);

        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        if (metadata != null) foreach (var kv in metadata) meta[kv.Key] = kv.Value;
        meta.TryAdd("format", "pt");

        // Check the whole set (duplicates across shards, shapes) before anything touches the disk.
        Validate(System.IO.Path.Combine(dir, SingleFileName), tensors);
        long total = 0;
        foreach (var t in tensors) total += t.Data.LongLength;

        var written = new List<string>();
        if (total <= maxShardBytes)
        {
            Write(System.IO.Path.Combine(dir, SingleFileName), tensors, meta);
            written.Add(SingleFileName);
        }
        else
        {
            var shards = new List<List<TensorToWrite>>();
            var current = new List<TensorToWrite>();
            long currentBytes = 0;
            foreach (var t in tensors)
            {
                if (current.Count > 0 && currentBytes + t.Data.LongLength > maxShardBytes)
                {
                    shards.Add(current);
                    current = [];
                    currentBytes = 0;
                }
                current.Add(t);
                currentBytes += t.Data.LongLength;
            }
            if (current.Count > 0) shards.Add(current);

            var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < shards.Count; i++)
            {
                string file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
                Write(System.IO.Path.Combine(dir, file), shards[i], meta);
                written.Add(file);
                foreach (var t in shards[i]) weightMap[t.Name] = file;
            }

            // The index goes last: a reader that finds it finds every shard it names.
            WriteAtomically(System.IO.Path.Combine(dir, IndexFileName), stream =>
            {
                using (var w = new Utf8JsonWriter(stream, IndentedJson))
                {
                    w.WriteStartObject();
                    w.WriteStartObject("metadata");
                    w.WriteNumber("total_size", total);
                    w.WriteEndObject();
                    w.WriteStartObject("weight_map");
                    foreach (var kv in weightMap) w.WriteString(kv.Key, kv.Value);
                    w.WriteEndObject();
                    w.WriteEndObject();
                }
                stream.WriteByte((byte)'\n');
            });
            written.Add(IndexFileName);
        }

        RemoveStaleFiles(dir, written);
        return written;
    }

    /// <summary>
    /// Deletes checkpoint files of our own naming patterns that this save did not write, so that a
    /// folder never holds both a single file and an index (transformers would pick the single file).
    /// </summary>
    static void RemoveStaleFiles(string dir, List<string> written)
    {
        var keep = new HashSet<string>(written, StringComparer.Ordinal);
        var candidates = Directory.GetFiles(dir, "model-?????-of-?????.safetensors")
            .Append(System.IO.Path.Combine(dir, SingleFileName))
            .Append(System.IO.Path.Combine(dir, IndexFileName));
        foreach (var f in candidates)
            if (!keep.Contains(System.IO.Path.GetFileName(f)) && File.Exists(f))
                File.Delete(f);
    }

    static long? ElementCount(int[] shape)
    {
        long n = 1;
        foreach (int d in shape)
        {
            if (d < 0) return null;
            try { n = checked(n * d); } catch (OverflowException) { return null; }
        }
        return n;
    }

    /// <summary>Checks the tensors and returns them in the reference's file order.</summary>
    static List<TensorToWrite> Validate(string path, IEnumerable<TensorToWrite> tensors)
    {
        var list = new List<TensorToWrite>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            ArgumentNullException.ThrowIfNull(t);
            if (string.IsNullOrEmpty(t.Name))
                throw new ArgumentException($"{path}: a tensor has an empty name");
            if (t.Name == SafetensorsHeader.MetadataKey)
                throw new ArgumentException($"{path}: \"{SafetensorsHeader.MetadataKey}\" is reserved and cannot name a tensor");
            if (!names.Add(t.Name))
                throw new ArgumentException($"{path}: tensor \"{t.Name}\" is given twice");
            long count = ElementCount(t.Shape)
                ?? throw new ArgumentException($"{path}: tensor \"{t.Name}\" has an invalid shape [{string.Join(",", t.Shape)}]");
            long expected = count * t.DType.SizeOf();
            if (t.Data.LongLength != expected)
                throw new ArgumentException(
                    $"{path}: tensor \"{t.Name}\" has {t.Data.LongLength} bytes but shape [{string.Join(",", t.Shape)}] × {t.DType} needs {expected}");
            list.Add(t);
        }
        // Compare UTF-8 bytes of the names: the reference sorts Rust strings, i.e. by bytes.
        var keyed = list.Select(t => (Tensor: t, Key: Encoding.UTF8.GetBytes(t.Name))).ToList();
        keyed.Sort((a, b) =>
        {
            int c = AlignmentRank(b.Tensor.DType).CompareTo(AlignmentRank(a.Tensor.DType));
            return c != 0 ? c : a.Key.AsSpan().SequenceCompareTo(b.Key);
        });
        return keyed.Select(k => k.Tensor).ToList();
    }

    /// <summary>Position of the dtype in the reference's Dtype enum, which is ordered by alignment.</summary>
    static int AlignmentRank(DType t) => t switch
    {
        DType.F16 => 0,
        DType.BF16 => 1,
        DType.I32 => 2,
        DType.F32 => 3,
        DType.I64 => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown dtype"),
    };

    /// <summary>The JSON header, padded with spaces to a multiple of 8 bytes (so 8 + N is too).</summary>
    static byte[] BuildHeader(List<TensorToWrite> ordered, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, CompactJson))
        {
            w.WriteStartObject();
            if (metadata != null)
            {
                w.WriteStartObject(SafetensorsHeader.MetadataKey);
                // Sorted so that the same metadata always gives the same bytes.
                foreach (var kv in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                    w.WriteString(kv.Key, kv.Value);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in ordered)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.DType.ToSafetensors());
                w.WriteStartArray("shape");
                foreach (int d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + t.Data.LongLength);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += t.Data.LongLength;
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    /// <summary>
    /// Writes through a temporary file next to <paramref name="path"/>, flushes it to disk, then renames
    /// it over <paramref name="path"/>; on any failure the temporary file is deleted and the old file
    /// (if any) is left untouched.
    /// </summary>
    static void WriteAtomically(string path, Action<Stream> write)
    {
        string full = System.IO.Path.GetFullPath(path);
        string tmp = $"{full}.tmp-{Guid.NewGuid():N}";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
