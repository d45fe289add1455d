using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using ElderCuda.Tensors;

namespace ElderCuda.IO.Safetensors;

/// <summary>
/// A safetensors file opened for reading. The file is memory-mapped, so opening a multi-gigabyte
/// checkpoint costs only the header; tensor bytes are copied out on request. The header is validated
/// completely in <see cref="Open"/>: once that returns, every tensor lies inside the data section and
/// its byte length matches its shape and dtype. Reads are safe from several threads at once.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    readonly MemoryMappedFile _map;
    readonly MemoryMappedViewAccessor _view;
    readonly byte* _data;          // start of the data section inside the mapping
    readonly Dictionary<string, TensorInfo> _byName;
    bool _disposed;

    public string Path { get; }

    /// <summary>All tensors, in offset order.</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>The header's "__metadata__" map; empty when the file has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    SafetensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* data,
        List<TensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _data = data;
        Tensors = tensors.AsReadOnly();
        Metadata = metadata.AsReadOnly();
        _byName = new Dictionary<string, TensorInfo>(tensors.Count, StringComparer.Ordinal);
        foreach (var t in tensors) _byName.Add(t.Name, t);
    }

    public static SafetensorsFile Open(string path)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new SafetensorsException(path, $"cannot open file: {e.Message}", e);
        }

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        bool pointerAcquired = false;
        try
        {
            long fileLength = stream.Length;
            if (fileLength < 8)
                throw new SafetensorsException(path, $"file is too short ({fileLength} bytes) to hold the 8-byte header length");

            // Read the prefix with the stream: a mapping would also work, but this keeps the
            // "too large / beyond the file" checks independent of the mapping.
            Span<byte> prefix = stackalloc byte[8];
            stream.ReadExactly(prefix);
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (n > SafetensorsHeader.MaxHeaderBytes)
                throw new SafetensorsException(path, $"header length {n} is too large (limit {SafetensorsHeader.MaxHeaderBytes} bytes)");
            if ((long)n > fileLength - 8)
                throw new SafetensorsException(path, $"header length {n} goes beyond the end of the file ({fileLength} bytes)");

            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read,
                HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* basePtr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
            pointerAcquired = true;
            basePtr += view.PointerOffset;

            long headerEnd = 8 + (long)n;
            var header = new ReadOnlySpan<byte>(basePtr + 8, (int)n);
            var (tensors, metadata) = SafetensorsHeader.Parse(path, header, fileLength - headerEnd);
            return new SafetensorsFile(path, map, view, basePtr + headerEnd, tensors, metadata);
        }
        catch (Exception e)
        {
            if (pointerAcquired) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map?.Dispose();
            stream.Dispose();
            if (e is SafetensorsException) throw;
            if (e is IOException or UnauthorizedAccessException)
                throw new SafetensorsException(path, $"cannot read file: {e.Message}", e);
            throw;
        }
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public TensorInfo Info(string name)
    {
        if (_byName.TryGetValue(name, out var t)) return t;
        throw new SafetensorsException(Path, $"no tensor named \"{name}\" (the file has {_byName.Count} tensors)");
    }

    /// <summary>Copies the tensor's bytes into <paramref name="destination"/>, which must be exactly its length.</summary>
    public void ReadRaw(string name, Span<byte> destination)
    {
        var t = Info(name);
        if (destination.Length != t.Length)
            throw new ArgumentException(
                $"{Path}: tensor \"{name}\" has {t.Length} bytes but the destination holds {destination.Length}", nameof(destination));
        Bytes(t).CopyTo(destination);
    }

    public byte[] ReadRaw(string name)
    {
        var t = Info(name);
        if (t.Length > Array.MaxLength)
            throw new SafetensorsException(Path, $"tensor \"{name}\" ({t.Length} bytes) is too large for one array");
        var result = GC.AllocateUninitializedArray<byte>((int)t.Length);
        Bytes(t).CopyTo(result);
        return result;
    }

    /// <summary>Reads a tensor of any supported dtype as float32 (integers are converted by value).</summary>
    public float[] ReadFloat32(string name)
    {
        var t = Info(name);
        var result = GC.AllocateUninitializedArray<float>(CheckedCount(t));
        ForEachChunk(t, (src, first) => DTypes.ToFloat32(t.DType, src, result.AsSpan(first, src.Length / t.DType.SizeOf())));
        return result;
    }

    /// <summary>Reads an I64 or I32 tensor as 64-bit integers.</summary>
    public long[] ReadInt64(string name)
    {
        var t = Info(name);
        if (t.DType is not (DType.I64 or DType.I32))
            throw new SafetensorsException(Path, $"tensor \"{name}\" has dtype {t.DType}; ReadInt64 needs I64 or I32");
        var result = new long[CheckedCount(t)];
        ForEachChunk(t, (src, first) =>
        {
            var dst = result.AsSpan(first);
            if (t.DType == DType.I64)
                MemoryMarshal.Cast<byte, long>(src).CopyTo(dst);
            else
            {
                var ints = MemoryMarshal.Cast<byte, int>(src);
                for (int i = 0; i < ints.Length; i++) dst[i] = ints[i];
            }
        });
        return result;
    }

    int CheckedCount(TensorInfo t)
    {
        long count = t.ElementCount;
        if (count > Array.MaxLength)
            throw new SafetensorsException(Path, $"tensor \"{t.Name}\" ({count} elements) is too large for one array");
        return (int)count;
    }

    delegate void ChunkAction(ReadOnlySpan<byte> bytes, int firstElement);

    /// <summary>
    /// Hands the tensor's bytes over in whole-element chunks of at most 1 GiB: a span is limited to
    /// 2^31 bytes, while a float[] of 2^31 elements may come from a larger F32 or I64 tensor.
    /// </summary>
    void ForEachChunk(TensorInfo t, ChunkAction action)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int size = t.DType.SizeOf();
        long chunkElements = (1L << 30) / size;
        long total = t.ElementCount;
        for (long first = 0; first < total; first += chunkElements)
        {
            long n = Math.Min(chunkElements, total - first);
            action(new ReadOnlySpan<byte>(_data + t.Offset + first * size, (int)(n * size)), (int)first);
        }
    }

    /// <summary>
    /// The tensor's bytes inside the mapping, for tensors that fit one span (callers fill a byte span or
    /// array, so theirs do). Offsets were validated in Open.
    /// </summary>
    ReadOnlySpan<byte> Bytes(TensorInfo t)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (t.Length > int.MaxValue)
            throw new SafetensorsException(Path, $"tensor \"{t.Name}\" ({t.Length} bytes) is too large to read in one piece");
        return new ReadOnlySpan<byte>(_data + t.Offset, (int)t.Length);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
