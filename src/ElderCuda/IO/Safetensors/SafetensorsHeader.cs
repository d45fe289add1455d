using System.Text.Json;
using System.Text.Unicode;
using ElderCuda.Tensors;

namespace ElderCuda.IO.Safetensors;

/// <summary>
/// Parses and validates the JSON header of a safetensors file. Everything a reader later relies on
/// (offsets inside the data section, byte lengths matching shape × dtype) is checked here, once, so
/// the reading code can trust the entries.
/// </summary>
internal static class SafetensorsHeader
{
    /// <summary>The reference implementation refuses headers over 100 MB; so do we (it also bounds our allocations).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public const string MetadataKey = "__metadata__";

    public static readonly string SupportedDTypes = string.Join(", ", Enum.GetNames<DType>());

    /// <summary>
    /// Parses <paramref name="header"/> (the N bytes after the length prefix) and validates every entry
    /// against a data section of <paramref name="dataLength"/> bytes. Returns the tensors in offset order.
    /// </summary>
    public static (List<TensorInfo> Tensors, Dictionary<string, string> Metadata) Parse(
        string path, ReadOnlySpan<byte> header, long dataLength)
    {
        // Check UTF-8 ourselves so that the error says so, rather than a generic JSON complaint.
        if (!Utf8.IsValid(header))
            throw new SafetensorsException(path, "header is not valid UTF-8");

        JsonDocument doc;
        try
        {
            // JsonDocument copies what it needs; the header span may live in a memory map.
            doc = JsonDocument.Parse(header.ToArray(), new JsonDocumentOptions
            {
                AllowTrailingCommas = false,
                CommentHandling = JsonCommentHandling.Disallow,
                MaxDepth = 16,
            });
        }
        catch (JsonException e)
        {
            throw new SafetensorsException(path, $"header is not valid JSON: {e.Message}", e);
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new SafetensorsException(path, $"header is not a JSON object (found {root.ValueKind})");

            var tensors = new List<TensorInfo>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            // JsonDocument keeps repeated keys and enumerates them all; a set catches them
            // (names are compared after unescaping, so "a" and "\u0061" count as the same).
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in root.EnumerateObject())
            {
                if (!seen.Add(prop.Name))
                    throw new SafetensorsException(path, $"duplicate key \"{prop.Name}\" in header");
                if (prop.Name == MetadataKey)
                    ReadMetadata(path, prop.Value, metadata);
                else
                    tensors.Add(ReadTensor(path, prop.Name, prop.Value, dataLength));
            }

            CheckCoverage(path, tensors, dataLength);
            return (tensors, metadata);
        }
    }

    static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        // The reference reads __metadata__ as a map of string to string and rejects anything else.
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsException(path, $"\"{MetadataKey}\" is not an object of strings (found {value.ValueKind})");
        foreach (var kv in value.EnumerateObject())
        {
            if (kv.Value.ValueKind != JsonValueKind.String)
                throw new SafetensorsException(path, $"\"{MetadataKey}\" value for \"{kv.Name}\" is not a string (found {kv.Value.ValueKind})");
            if (!metadata.TryAdd(kv.Name, kv.Value.GetString()!))
                throw new SafetensorsException(path, $"duplicate key \"{kv.Name}\" in \"{MetadataKey}\"");
        }
    }

    static TensorInfo ReadTensor(string path, string name, JsonElement value, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsException(path, $"tensor \"{name}\": entry is not an object (found {value.ValueKind})");

        JsonElement? dtypeEl = null, shapeEl = null, offsetsEl = null;
        var fields = new HashSet<string>(StringComparer.Ordinal);
        foreach (var f in value.EnumerateObject())
        {
            if (!fields.Add(f.Name))
                throw new SafetensorsException(path, $"tensor \"{name}\": duplicate key \"{f.Name}\"");
            switch (f.Name)
            {
                case "dtype": dtypeEl = f.Value; break;
                case "shape": shapeEl = f.Value; break;
                case "data_offsets": offsetsEl = f.Value; break;
                // Other keys are ignored, as the reference's deserializer ignores unknown fields.
            }
        }

        // dtype
        if (dtypeEl is not { } d)
            throw new SafetensorsException(path, $"tensor \"{name}\": missing \"dtype\"");
        if (d.ValueKind != JsonValueKind.String)
            throw new SafetensorsException(path, $"tensor \"{name}\": \"dtype\" is not a string (found {d.ValueKind})");
        string dtypeName = d.GetString()!;
        if (!DTypes.TryParseSafetensors(dtypeName, out var dtype))
            throw new SafetensorsException(path,
                $"tensor \"{name}\": unsupported dtype {dtypeName} (supported: {SupportedDTypes})");

        // shape: a list of non-negative integers; we hold each dimension in an int.
        if (shapeEl is not { } s)
            throw new SafetensorsException(path, $"tensor \"{name}\": missing \"shape\"");
        if (s.ValueKind != JsonValueKind.Array)
            throw new SafetensorsException(path, $"tensor \"{name}\": \"shape\" is not an array (found {s.ValueKind})");
        var shape = new int[s.GetArrayLength()];
        long elements = 1;
        bool overflow = false;
        int i = 0;
        foreach (var dim in s.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long v))
                throw new SafetensorsException(path, $"tensor \"{name}\": \"shape\" must hold integers (found {dim.GetRawText()})");
            if (v < 0)
                throw new SafetensorsException(path, $"tensor \"{name}\": negative dimension {v} in shape");
            if (v > int.MaxValue)
                throw new SafetensorsException(path, $"tensor \"{name}\": dimension {v} in shape is too large (overflow)");
            shape[i++] = (int)v;
            // Keep multiplying even after an overflow is seen: a later 0 makes the count 0 legitimately.
            if (!overflow)
            {
                try { elements = checked(elements * v); }
                catch (OverflowException) { overflow = true; }
            }
        }
        if (overflow && !shape.Contains(0))
            throw new SafetensorsException(path, $"tensor \"{name}\": shape [{string.Join(",", shape)}] overflows the element count");
        if (overflow) elements = 0;

        long expectedBytes;
        try { expectedBytes = checked(elements * dtype.SizeOf()); }
        catch (OverflowException)
        {
            throw new SafetensorsException(path, $"tensor \"{name}\": shape [{string.Join(",", shape)}] × {dtype} overflows the byte count");
        }

        // data_offsets: [begin, end] relative to the data section.
        if (offsetsEl is not { } o)
            throw new SafetensorsException(path, $"tensor \"{name}\": missing \"data_offsets\"");
        if (o.ValueKind != JsonValueKind.Array || o.GetArrayLength() != 2)
            throw new SafetensorsException(path, $"tensor \"{name}\": \"data_offsets\" is not an array of two integers");
        var begin = o[0];
        var end = o[1];
        if (begin.ValueKind != JsonValueKind.Number || !begin.TryGetInt64(out long b) || b < 0 ||
            end.ValueKind != JsonValueKind.Number || !end.TryGetInt64(out long e) || e < 0)
            throw new SafetensorsException(path, $"tensor \"{name}\": \"data_offsets\" must be two non-negative integers (found {o.GetRawText()})");
        if (b > e)
            throw new SafetensorsException(path, $"tensor \"{name}\": data_offsets begin {b} > end {e}");
        if (e > dataLength)
            throw new SafetensorsException(path, $"tensor \"{name}\": data_offsets [{b},{e}] out of range of the {dataLength}-byte data section");
        if (e - b != expectedBytes)
            throw new SafetensorsException(path,
                $"tensor \"{name}\": byte length {e - b} does not match shape [{string.Join(",", shape)}] × {dtype} = {expectedBytes} bytes");

        return new TensorInfo(name, dtype, shape, b, e - b);
    }

    /// <summary>
    /// Choice, following the reference (Metadata::validate + MetadataIncompleteBuffer): sorted by offset,
    /// the tensors must tile the data section exactly — no overlap, no hole between tensors, nothing left
    /// over at the end. A hole or trailing bytes would be data no tensor owns, which only a damaged or
    /// hand-made file has.
    /// </summary>
    static void CheckCoverage(string path, List<TensorInfo> tensors, long dataLength)
    {
        tensors.Sort((x, y) =>
        {
            int c = x.Offset.CompareTo(y.Offset);
            return c != 0 ? c : x.Length.CompareTo(y.Length);
        });
        long expected = 0;
        TensorInfo? previous = null;
        foreach (var t in tensors)
        {
            if (t.Offset < expected)
                throw new SafetensorsException(path,
                    $"tensor \"{t.Name}\" at [{t.Offset},{t.Offset + t.Length}] overlaps tensor \"{previous!.Name}\" at [{previous.Offset},{expected}]");
            if (t.Offset > expected)
                throw new SafetensorsException(path,
                    $"gap in data section: bytes [{expected},{t.Offset}) before tensor \"{t.Name}\" belong to no tensor");
            expected = t.Offset + t.Length;
            previous = t;
        }
        if (expected != dataLength)
            throw new SafetensorsException(path,
                $"data section has {dataLength} bytes but tensors cover only {expected} (trailing bytes belong to no tensor)");
    }
}
