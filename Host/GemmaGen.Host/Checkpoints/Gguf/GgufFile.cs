using System.Buffers.Binary;

namespace GemmaGen;

/// <summary>One tensor info of a GGUF file.</summary>
public sealed class GgufTensor
{
    internal GgufTensor(string name, long[] shape, uint typeId, GgmlType type, long offset, long byteLength, long elementCount)
    {
        Name = name;
        ShapeArray = shape;
        TypeId = typeId;
        Type = type;
        Offset = offset;
        ByteLength = byteLength;
        ElementCount = elementCount;
    }

    /// <summary>The tensor's name.</summary>
    public string Name { get; }

    /// <summary>Dimensions in ggml order: innermost (<c>ne[0]</c>, the row width) first.</summary>
    public IReadOnlyList<long> Shape => ShapeArray;

    /// <summary>The stored <c>ggml_type</c> id.</summary>
    public uint TypeId { get; }

    /// <summary>The ggml type.</summary>
    public GgmlType Type { get; }

    /// <summary>The ggml type's name (<c>Q4_0</c>, <c>F32</c>, ...).</summary>
    public string TypeName => Type.Name;

    /// <summary>Offset of the first byte, relative to the start of the data section.</summary>
    public long Offset { get; }

    /// <summary>Bytes of data: rows × blocks per row × bytes per block.</summary>
    public long ByteLength { get; }

    /// <summary>Values: the product of the shape.</summary>
    public long ElementCount { get; }

    internal long[] ShapeArray { get; }
}

/// <summary>
/// A GGUF file (versions 2 and 3), memory-mapped read-only: the header (magic <c>GGUF</c>, version, tensor count,
/// metadata count), the metadata key/value pairs, the tensor infos, then the data section at the next multiple of
/// <c>general.alignment</c> (32 when absent). The whole header is checked on open, and no count read from the file
/// drives an allocation before it is checked against the bytes left; every malformed input is refused with a
/// <see cref="CheckpointException"/> naming the file and what is wrong. It only reads the container: it neither
/// dequantizes nor interprets the model. Spans and addresses it hands out stay valid until it is disposed.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    /// <summary>The data alignment when <c>general.alignment</c> is absent.</summary>
    public const uint DefaultAlignment = 32;

    /// <summary>The most dimensions a tensor may have (<c>GGML_MAX_DIMS</c>).</summary>
    public const int MaxDimensions = 4;

    /// <summary>The deepest nesting of arrays accepted.</summary>
    public const int MaxArrayDepth = 16;

    private const uint Magic = 0x46554747; // "GGUF" read little-endian

    private readonly MappedFile _file;
    private readonly Dictionary<string, GgufTensor> _tensors;
    private byte* _data;

    private GgufFile(
        string path, MappedFile file, uint version, uint alignment, long dataOffset,
        byte* data, long dataLength, GgufMetadata metadata, List<GgufTensor> tensors)
    {
        Path = path;
        _file = file;
        Version = version;
        Alignment = alignment;
        DataOffset = dataOffset;
        _data = data;
        DataLength = dataLength;
        Metadata = metadata;
        Tensors = tensors;
        _tensors = tensors.ToDictionary(t => t.Name);
    }

    /// <summary>The file's path, as given to <see cref="Open"/>.</summary>
    public string Path { get; }

    /// <summary>The GGUF version: 2 or 3.</summary>
    public uint Version { get; }

    /// <summary>The data alignment: <c>general.alignment</c>, or <see cref="DefaultAlignment"/>.</summary>
    public uint Alignment { get; }

    /// <summary>File offset where the data section starts.</summary>
    public long DataOffset { get; }

    /// <summary>Bytes from <see cref="DataOffset"/> to the end of the file.</summary>
    public long DataLength { get; }

    /// <summary>The metadata key/value pairs.</summary>
    public GgufMetadata Metadata { get; }

    /// <summary>The tensor infos in file order.</summary>
    public IReadOnlyList<GgufTensor> Tensors { get; }

    /// <summary>Maps <paramref name="path"/> and checks its header, metadata and tensor layout.</summary>
    /// <exception cref="CheckpointException">The file is missing, unreadable or malformed.</exception>
    public static GgufFile Open(string path)
    {
        var file = MappedFile.Open(path, "GGUF file", 8, "the 8-byte magic and version a GGUF file starts with");
        try
        {
            byte* start = file.Start;
            long fileLength = file.Length;
            var reader = new Reader(path, start, fileLength);
            uint magic = reader.UInt32("the magic");
            if (magic != Magic)
                throw new CheckpointException(
                    $"{path}: bad magic 0x{magic:X8} (bytes {Convert.ToHexString(new ReadOnlySpan<byte>(start, 4))}); a GGUF file starts with \"GGUF\"");
            uint version = reader.UInt32("the version");
            if (version is not (2 or 3))
                throw new CheckpointException($"{path}: GGUF version {version} is not supported; expected version 2 or 3");

            ulong tensorCount = reader.UInt64("the tensor count");
            ulong kvCount = reader.UInt64("the metadata count");
            // Smallest possible entries: a key/value is an 8-byte key length, a 4-byte type and a 1-byte value; a
            // tensor info an 8-byte name length, a 4-byte dimension count, one 8-byte dimension, a 4-byte type and
            // an 8-byte offset. Counts that cannot fit are refused before anything is allocated for them.
            reader.RequireCount(kvCount, 13, "metadata key/value pairs", countOffset: 16);
            var entries = new List<KeyValuePair<string, GgufValue>>((int)kvCount);
            var keys = new HashSet<string>();
            for (ulong i = 0; i < kvCount; i++)
            {
                long at = reader.Position;
                string key = reader.String($"the key of metadata entry {i}");
                if (!keys.Add(key))
                    throw new CheckpointException($"{path}: metadata key '{key}' appears twice (the second at offset {at})");
                var type = reader.ValueType($"metadata key '{key}'");
                entries.Add(new(key, new GgufValue(type, reader.Value(type, $"metadata key '{key}'", 0))));
            }
            var metadata = new GgufMetadata(path, entries);

            uint alignment = DefaultAlignment;
            if (metadata.TryGetValue("general.alignment", out var alignmentValue))
            {
                if (alignmentValue.Type != GgufValueType.UInt32)
                    throw new CheckpointException($"{path}: general.alignment is {GgufMetadata.Name(alignmentValue.Type)}, expected uint32");
                alignment = (uint)alignmentValue.Value;
                if (alignment == 0 || (alignment & (alignment - 1)) != 0)
                    throw new CheckpointException($"{path}: general.alignment is {alignment}, expected a power of two");
            }

            reader.RequireCount(tensorCount, 32, "tensor infos", countOffset: 8);
            var infos = new List<(string Name, long[] Shape, uint TypeId, GgmlType Type, ulong Offset, long Bytes, long Elements, long At)>((int)tensorCount);
            var names = new HashSet<string>();
            for (ulong i = 0; i < tensorCount; i++)
            {
                long at = reader.Position;
                string name = reader.String($"the name of tensor info {i}");
                if (!names.Add(name))
                    throw new CheckpointException($"{path}: tensor '{name}' is listed twice (the second at offset {at})");
                string where = $"tensor '{name}'";
                uint dimensions = reader.UInt32($"the dimension count of {where}");
                if (dimensions is 0 or > MaxDimensions)
                    throw new CheckpointException($"{path}: {where} has {dimensions} dimensions at offset {reader.Position - 4}, expected 1 to {MaxDimensions}");
                var shape = new long[dimensions];
                for (int d = 0; d < shape.Length; d++)
                {
                    ulong dim = reader.UInt64($"dimension {d} of {where}");
                    if (dim == 0 || dim > long.MaxValue)
                        throw new CheckpointException($"{path}: {where} has dimension {d} = {(long)dim}, expected a positive size");
                    shape[d] = (long)dim;
                }
                uint typeId = reader.UInt32($"the type of {where}");
                if (!GgmlType.TryGet(typeId, out var type))
                    throw new CheckpointException($"{path}: {where} has unknown ggml type {typeId}; known types: {string.Join(", ", GgmlType.All.Values.Select(t => $"{t.Name} ({t.Id})"))}");
                ulong offset = reader.UInt64($"the data offset of {where}");
                if (shape[0] % type.BlockSize != 0)
                    throw new CheckpointException(
                        $"{path}: {where} has rows of {shape[0]} values, not a multiple of the {type.BlockSize}-value blocks of type {type.Name}");
                if (!TrySize(shape, type, out long bytes, out long elements))
                    throw new CheckpointException(
                        $"{path}: {where} of type {type.Name} and shape {Format(shape)} is larger than a file can hold (its size overflows 64 bits)");
                infos.Add((name, shape, typeId, type, offset, bytes, elements, at));
            }

            long dataOffset = AlignUp(reader.Position, alignment);
            if (dataOffset > fileLength && infos.Count > 0)
                throw new CheckpointException(
                    $"{path}: the data section would start at offset {dataOffset}, past the end of the file ({fileLength} bytes); the file is truncated");
            long dataLength = Math.Max(0, fileLength - dataOffset);

            var tensors = new List<GgufTensor>(infos.Count);
            foreach (var info in infos)
            {
                string where = $"{path}: tensor '{info.Name}'";
                if (info.Offset % alignment != 0)
                    throw new CheckpointException($"{where}: data offset {info.Offset} is not a multiple of the alignment {alignment}");
                if (info.Offset > (ulong)dataLength || info.Bytes > dataLength - (long)info.Offset)
                    throw new CheckpointException(
                        $"{where}: data [{info.Offset}, {info.Offset + (ulong)info.Bytes}) of the data section runs past its end ({dataLength} bytes from file offset {dataOffset}); the file is truncated or the offset is wrong");
                tensors.Add(new GgufTensor(info.Name, info.Shape, info.TypeId, info.Type, (long)info.Offset, info.Bytes, info.Elements));
            }
            CheckOverlaps(path, tensors);
            return new GgufFile(path, file, version, alignment, dataOffset, start + Math.Min(dataOffset, fileLength), dataLength, metadata, tensors);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Finds a tensor info.</summary>
    public bool TryGetTensor(string name, out GgufTensor tensor) => _tensors.TryGetValue(name, out tensor!);

    /// <summary>A tensor info.</summary>
    /// <exception cref="CheckpointException">The file has no tensor of that name.</exception>
    public GgufTensor GetTensor(string name) =>
        _tensors.TryGetValue(name, out var tensor) ? tensor : throw new CheckpointException($"{Path}: no tensor '{name}'");

    /// <summary>A tensor's raw bytes as stored (blocks for quantized types), without copying.</summary>
    /// <exception cref="CheckpointException">The file has no tensor of that name, or it is 2 GiB or larger.</exception>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var tensor = GetTensor(name);
        if (tensor.ByteLength > int.MaxValue)
            throw new CheckpointException($"{Path}: tensor '{name}' is {tensor.ByteLength} bytes, too large for a single span");
        return new ReadOnlySpan<byte>(Data(tensor), (int)tensor.ByteLength);
    }

    /// <summary>The address of a tensor's first byte in the mapping (<see cref="GgufTensor.ByteLength"/> bytes
    /// follow); valid until the file is disposed.</summary>
    /// <exception cref="CheckpointException">The file has no tensor of that name.</exception>
    public nint GetAddress(string name) => (nint)Data(GetTensor(name));

    /// <summary>The caller is done with a tensor's bytes (the loader has copied them): the whole pages they span leave
    /// the process (<see cref="MappedFile.ReleasePages"/>). Spans and addresses handed out stay valid, and read the
    /// same bytes: a page read again is faulted back in from the page cache.</summary>
    /// <param name="name">The GGUF tensor name (<c>blk.0.attn_q.weight</c>).</param>
    /// <exception cref="CheckpointException">The file has no tensor of that name.</exception>
    /// <exception cref="ObjectDisposedException">The file was unmapped.</exception>
    public void Release(string name)
    {
        var tensor = GetTensor(name);
        _file.ReleasePages(Data(tensor), tensor.ByteLength);
    }

    /// <summary>Unmaps the file; spans and addresses handed out become invalid.</summary>
    public void Dispose()
    {
        if (_data == null) return;
        _data = null;
        _file.Dispose();
    }

    private byte* Data(GgufTensor tensor)
    {
        ObjectDisposedException.ThrowIf(_data == null, this);
        return _data + tensor.Offset;
    }

    private static long AlignUp(long offset, uint alignment) => (offset + alignment - 1) / alignment * alignment;

    private static string Format(long[] shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>Bytes and values of a tensor, false when either overflows a long.</summary>
    private static bool TrySize(long[] shape, GgmlType type, out long bytes, out long elements)
    {
        try
        {
            elements = 1;
            foreach (long dim in shape) elements = checked(elements * dim);
            bytes = checked(shape[0] / type.BlockSize * type.BytesPerBlock);
            for (int d = 1; d < shape.Length; d++) bytes = checked(bytes * shape[d]);
            return true;
        }
        catch (OverflowException)
        {
            bytes = elements = 0;
            return false;
        }
    }

    /// <summary>No two tensors share a byte of the data section.</summary>
    private static void CheckOverlaps(string path, List<GgufTensor> tensors)
    {
        GgufTensor? previous = null;
        foreach (var tensor in tensors.OrderBy(t => t.Offset).ThenBy(t => t.ByteLength))
        {
            if (previous != null && tensor.Offset < previous.Offset + previous.ByteLength)
                throw new CheckpointException(
                    $"{path}: tensor '{tensor.Name}' (data [{tensor.Offset}, {tensor.Offset + tensor.ByteLength})) overlaps tensor '{previous.Name}' ([{previous.Offset}, {previous.Offset + previous.ByteLength})); tensors must not share bytes");
            previous = tensor;
        }
    }

    /// <summary>Reads little-endian values from the mapped header, refusing any read past the end.</summary>
    private sealed class Reader(string path, byte* start, long length)
    {
        public long Position { get; private set; }

        private long Remaining => length - Position;

        public uint UInt32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));

        public ulong UInt64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));

        /// <summary>Refuses <paramref name="count"/> items of at least <paramref name="minBytes"/> each when the
        /// rest of the file cannot hold them (an int-sized count is then guaranteed).</summary>
        public void RequireCount(ulong count, int minBytes, string what, long countOffset)
        {
            if (count > (ulong)Remaining / (ulong)minBytes)
                throw new CheckpointException(
                    $"{path}: {count} {what} (count at offset {countOffset}) cannot fit in the {Remaining} bytes left in the file (each takes at least {minBytes} bytes); the count is corrupt or the file truncated");
        }

        public string String(string what)
        {
            ulong size = UInt64($"the length of {what}");
            if (size > (ulong)Remaining || size > int.MaxValue)
                throw new CheckpointException(
                    $"{path}: {what} has length {size} (at offset {Position - 8}), past the end of the file ({Remaining} bytes left)");
            long at = Position;
            var bytes = Take((int)size, what);
            return CheckpointFiles.DecodeUtf8(path, bytes, at, message => new CheckpointException($"{message} (in {what})"));
        }

        public GgufValueType ValueType(string what)
        {
            uint type = UInt32($"the value type of {what}");
            if (type > (uint)GgufValueType.Float64)
                throw new CheckpointException($"{path}: {what} has unknown value type {type} at offset {Position - 4}; GGUF value types are 0 to 12");
            return (GgufValueType)type;
        }

        public object Value(GgufValueType type, string what, int depth) => type switch
        {
            GgufValueType.UInt8 => Take(1, what)[0],
            GgufValueType.Int8 => (sbyte)Take(1, what)[0],
            GgufValueType.UInt16 => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, what)),
            GgufValueType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(Take(2, what)),
            GgufValueType.UInt32 => UInt32(what),
            GgufValueType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(Take(4, what)),
            GgufValueType.Float32 => BinaryPrimitives.ReadSingleLittleEndian(Take(4, what)),
            GgufValueType.Bool => Bool(what),
            GgufValueType.String => String(what),
            GgufValueType.Array => Array(what, depth),
            GgufValueType.UInt64 => UInt64(what),
            GgufValueType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(Take(8, what)),
            GgufValueType.Float64 => BinaryPrimitives.ReadDoubleLittleEndian(Take(8, what)),
            _ => throw new CheckpointException($"{path}: {what} has unknown value type {(uint)type}"),
        };

        private bool Bool(string what)
        {
            byte value = Take(1, what)[0];
            return value switch
            {
                0 => false,
                1 => true,
                _ => throw new CheckpointException($"{path}: {what} is a bool stored as {value} at offset {Position - 1}, expected 0 or 1"),
            };
        }

        private GgufArray Array(string what, int depth)
        {
            if (depth >= MaxArrayDepth)
                throw new CheckpointException($"{path}: {what} nests arrays more than {MaxArrayDepth} deep (at offset {Position})");
            var elementType = ValueType($"the elements of {what}");
            ulong count = UInt64($"the element count of {what}");
            int minBytes = elementType switch
            {
                GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                GgufValueType.Array => 12,
                _ => 8, // string length, 64-bit values
            };
            if (count > (ulong)Remaining / (ulong)minBytes)
                throw new CheckpointException(
                    $"{path}: {what} has {count} {GgufMetadata.Name(elementType)} elements (count at offset {Position - 8}), past the end of the file ({Remaining} bytes left)");
            int n = (int)count;
            return new GgufArray(elementType, elementType switch
            {
                GgufValueType.UInt8 => Take(n, what).ToArray(),
                GgufValueType.Int8 => Fill(n, i => (sbyte)Take(1, what)[0]),
                GgufValueType.UInt16 => Fill(n, i => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, what))),
                GgufValueType.Int16 => Fill(n, i => BinaryPrimitives.ReadInt16LittleEndian(Take(2, what))),
                GgufValueType.UInt32 => Fill(n, i => UInt32(what)),
                GgufValueType.Int32 => Fill(n, i => BinaryPrimitives.ReadInt32LittleEndian(Take(4, what))),
                GgufValueType.Float32 => Fill(n, i => BinaryPrimitives.ReadSingleLittleEndian(Take(4, what))),
                GgufValueType.Bool => Fill(n, i => Bool($"element {i} of {what}")),
                GgufValueType.String => Fill(n, i => String($"element {i} of {what}")),
                GgufValueType.Array => Fill(n, i => Array($"element {i} of {what}", depth + 1)),
                GgufValueType.UInt64 => Fill(n, i => UInt64(what)),
                GgufValueType.Int64 => Fill(n, i => BinaryPrimitives.ReadInt64LittleEndian(Take(8, what))),
                GgufValueType.Float64 => Fill(n, i => BinaryPrimitives.ReadDoubleLittleEndian(Take(8, what))),
                _ => throw new CheckpointException($"{path}: {what} has elements of unknown value type {(uint)elementType}"),
            });
        }

        private static T[] Fill<T>(int count, Func<int, T> read)
        {
            var values = new T[count];
            for (int i = 0; i < values.Length; i++) values[i] = read(i);
            return values;
        }

        private ReadOnlySpan<byte> Take(int count, string what)
        {
            if (count > Remaining)
                throw new CheckpointException(
                    $"{path}: file ends at offset {length} while reading {what} ({count} bytes at offset {Position}); the file is truncated");
            var span = new ReadOnlySpan<byte>(start + Position, count);
            Position += count;
            return span;
        }
    }
}
