using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using GemmaGen.Kernels;

namespace GemmaGen;

/// <summary>One tensor entry of a safetensors header.</summary>
public sealed class SafetensorsTensor
{
    internal SafetensorsTensor(string name, SafetensorsDType dtype, long[] shape, long begin, long end)
    {
        Name = name;
        DType = dtype;
        ShapeArray = shape;
        Begin = begin;
        End = end;
    }

    /// <summary>The tensor's name (the header key).</summary>
    public string Name { get; }

    /// <summary>Element type.</summary>
    public SafetensorsDType DType { get; }

    /// <summary>Dimensions, outermost first; empty for a scalar.</summary>
    public IReadOnlyList<long> Shape => ShapeArray;

    /// <summary>Offset of the first byte, relative to the start of the data buffer.</summary>
    public long Begin { get; }

    /// <summary>Offset one past the last byte, relative to the start of the data buffer.</summary>
    public long End { get; }

    /// <summary>Bytes of data: <see cref="End"/> − <see cref="Begin"/>.</summary>
    public long ByteLength => End - Begin;

    /// <summary>Elements: the product of the shape.</summary>
    public long ElementCount => ByteLength / DType.ElementSize();

    internal long[] ShapeArray { get; }

    internal string ShapeText => Format(ShapeArray);

    internal static string Format(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
}

/// <summary>
/// A safetensors file, memory-mapped read-only: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
/// (<c>{"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}</c>), then the data buffer, which the
/// tensors must cover exactly, without holes or overlaps. The whole header is checked on open; every malformed
/// input is refused with a <see cref="CheckpointException"/> naming the file, the tensor and what was expected.
/// Views and spans it hands out stay valid until it is disposed.
/// </summary>
public sealed unsafe class SafetensorsFile : ITensorSource, IDisposable
{
    /// <summary>The largest header accepted (the reference implementation's limit).</summary>
    public const long MaxHeaderLength = 100_000_000;

    private const string MetadataKey = "__metadata__";

    private readonly MappedFile _file;
    private readonly Dictionary<string, SafetensorsTensor> _tensors;
    private byte* _buffer;

    private SafetensorsFile(
        string path, MappedFile file, byte* buffer, long bufferLength,
        List<SafetensorsTensor> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _file = file;
        _buffer = buffer;
        BufferLength = bufferLength;
        Tensors = tensors;
        _tensors = tensors.ToDictionary(t => t.Name);
        Metadata = metadata;
    }

    /// <summary>The file's path, as given to <see cref="Open"/>.</summary>
    public string Path { get; }

    /// <summary>The path: where the tensors come from, for messages.</summary>
    public string Description => Path;

    /// <summary>Bytes in the data buffer (after the header).</summary>
    public long BufferLength { get; }

    /// <summary>The tensors in header order.</summary>
    public IReadOnlyList<SafetensorsTensor> Tensors { get; }

    /// <summary>The tensor names in header order.</summary>
    public IEnumerable<string> TensorNames => Tensors.Select(t => t.Name);

    /// <summary>The header's <c>__metadata__</c> map; empty when it has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Maps <paramref name="path"/> and checks its header and buffer layout.</summary>
    /// <exception cref="CheckpointException">The file is missing, unreadable or malformed.</exception>
    public static SafetensorsFile Open(string path)
    {
        var file = MappedFile.Open(path, "safetensors file", 8, "the 8-byte header length a safetensors file starts with");
        try
        {
            byte* start = file.Start;
            long fileLength = file.Length;
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(start, 8));
            if (headerLength > MaxHeaderLength)
                throw new CheckpointException($"{path}: header length {headerLength} exceeds the limit of {MaxHeaderLength} bytes");
            if ((long)headerLength > fileLength - 8)
                throw new CheckpointException($"{path}: header length {headerLength} runs past the end of the file ({fileLength} bytes, so at most {fileLength - 8})");

            long bufferLength = fileLength - 8 - (long)headerLength;
            var header = new ReadOnlySpan<byte>(start + 8, (int)headerLength);
            var (tensors, metadata) = ParseHeader(path, header, bufferLength);
            return new SafetensorsFile(path, file, start + 8 + (long)headerLength, bufferLength, tensors, metadata);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Finds a tensor's header entry.</summary>
    public bool TryGetInfo(string name, out SafetensorsTensor tensor) => _tensors.TryGetValue(name, out tensor!);

    /// <summary>A tensor's header entry.</summary>
    /// <exception cref="CheckpointException">The file has no tensor of that name.</exception>
    public SafetensorsTensor GetInfo(string name) =>
        _tensors.TryGetValue(name, out var tensor) ? tensor : throw new CheckpointException($"{Path}: no tensor '{name}'");

    /// <summary>A copy of a tensor's shape.</summary>
    /// <exception cref="CheckpointException">The file has no tensor of that name.</exception>
    public long[] GetShape(string name) => GetInfo(name).ShapeArray.ToArray();

    /// <summary>A tensor's raw little-endian bytes, without copying.</summary>
    /// <exception cref="CheckpointException">The file has no tensor of that name, or it is 2 GiB or larger.</exception>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var tensor = GetInfo(name);
        if (tensor.ByteLength > int.MaxValue)
            throw new CheckpointException($"{Path}: tensor '{name}' is {tensor.ByteLength} bytes, too large for a single span");
        return new ReadOnlySpan<byte>(Data(tensor), (int)tensor.ByteLength);
    }

    /// <summary>An F32 tensor's elements, without copying.</summary>
    /// <exception cref="CheckpointException">The file has no tensor of that name, or it is not F32.</exception>
    public ReadOnlySpan<float> GetF32(string name) => MemoryMarshal.Cast<byte, float>(GetBytes(Expect(name, SafetensorsDType.F32)));

    /// <summary>A copy of an I64 tensor's elements (token ids in goldens).</summary>
    /// <exception cref="CheckpointException">The file has no tensor of that name, or it is not I64.</exception>
    public long[] GetI64(string name) => MemoryMarshal.Cast<byte, long>(GetBytes(Expect(name, SafetensorsDType.I64))).ToArray();

    /// <summary>Finds a weight tensor as a view of the mapped bytes.</summary>
    /// <exception cref="CheckpointException">The tensor exists but its dtype is not F32, BF16 or F16.</exception>
    public bool TryGetTensor(string name, out TensorView tensor)
    {
        if (!_tensors.TryGetValue(name, out var info))
        {
            tensor = default;
            return false;
        }
        var dtype = info.DType.ToTensorDType() ??
            throw new CheckpointException($"{Path}: tensor '{name}' has dtype {info.DType}; model weights must be F32, BF16 or F16");
        tensor = new TensorView(name, dtype, info.ShapeArray.ToArray(), Data(info), info.ByteLength, Path);
        return true;
    }

    /// <summary>The caller is done with a tensor's bytes (the loader has copied them): the whole pages they span leave
    /// the process (<see cref="MappedFile.ReleasePages"/>). Views and spans handed out stay valid, and read the same
    /// bytes: a page read again is faulted back in from the page cache. A name the file does not hold is ignored.</summary>
    /// <exception cref="ObjectDisposedException">The file was unmapped.</exception>
    public void Release(string name)
    {
        if (_tensors.TryGetValue(name, out var info)) _file.ReleasePages(Data(info), info.ByteLength);
    }

    /// <summary>Unmaps the file; views and spans handed out become invalid.</summary>
    public void Dispose()
    {
        if (_buffer == null) return;
        _buffer = null;
        _file.Dispose();
    }

    private byte* Data(SafetensorsTensor tensor)
    {
        ObjectDisposedException.ThrowIf(_buffer == null, this);
        return _buffer + tensor.Begin;
    }

    private string Expect(string name, SafetensorsDType dtype)
    {
        var tensor = GetInfo(name);
        if (tensor.DType != dtype)
            throw new CheckpointException($"{Path}: tensor '{name}' has dtype {tensor.DType}, expected {dtype}");
        return name;
    }

    private static (List<SafetensorsTensor> Tensors, Dictionary<string, string> Metadata) ParseHeader(
        string path, ReadOnlySpan<byte> header, long bufferLength)
    {
        // JsonDocument does not check the UTF-8 of strings; reading a bad one later would throw InvalidOperationException.
        CheckpointFiles.RequireUtf8(path, header, 8, message => new CheckpointException(message));
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header.ToArray());
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{path}: header is not valid JSON: {e.Message}", e);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{path}: header is a JSON {Kind(root)}, expected an object of tensor entries");

            var tensors = new List<SafetensorsTensor>();
            var metadata = new Dictionary<string, string>();
            var seen = new HashSet<string>();
            foreach (var property in root.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                    throw new CheckpointException($"{path}: tensor '{property.Name}' is listed twice in the header");
                if (property.Name == MetadataKey)
                    ReadMetadata(path, property.Value, metadata);
                else
                    tensors.Add(ReadEntry(path, property.Name, property.Value, bufferLength));
            }
            CheckCoverage(path, tensors, bufferLength);
            return (tensors, metadata);
        }
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new CheckpointException($"{path}: {MetadataKey} is a JSON {Kind(value)}, expected an object of strings");
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw new CheckpointException($"{path}: {MetadataKey} entry '{item.Name}' is a JSON {Kind(item.Value)}, expected a string");
            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    private static SafetensorsTensor ReadEntry(string path, string name, JsonElement entry, long bufferLength)
    {
        string where = $"{path}: tensor '{name}'";
        if (entry.ValueKind != JsonValueKind.Object)
            throw new CheckpointException($"{where}: entry is a JSON {Kind(entry)}, expected an object with dtype, shape and data_offsets");

        var dtypeElement = Member(where, entry, "dtype");
        if (dtypeElement.ValueKind != JsonValueKind.String)
            throw new CheckpointException($"{where}: dtype is a JSON {Kind(dtypeElement)}, expected a string such as \"F32\"");
        string dtypeText = dtypeElement.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtypeText, out var dtype))
            throw new CheckpointException($"{where}: unknown dtype '{dtypeText}', expected one of {string.Join(", ", Enum.GetNames<SafetensorsDType>())}");

        var shape = Integers(where, Member(where, entry, "shape"), "shape", length: null);
        var offsets = Integers(where, Member(where, entry, "data_offsets"), "data_offsets", length: 2);
        long begin = offsets[0], end = offsets[1];
        if (begin > end)
            throw new CheckpointException($"{where}: data_offsets [{begin}, {end}) begin after they end, expected begin <= end");
        if (end > bufferLength)
            throw new CheckpointException($"{where}: data_offsets [{begin}, {end}) run past the end of the data buffer ({bufferLength} bytes)");

        long? expected = ExpectedBytes(dtype, shape);
        if (expected != end - begin)
        {
            string need = expected is { } bytes ? $"{bytes} bytes" : "more bytes than a file can hold";
            throw new CheckpointException(
                $"{where}: data_offsets [{begin}, {end}) hold {end - begin} bytes, but dtype {dtype} ({dtype.ElementSize()} bytes) × shape {SafetensorsTensor.Format(shape)} needs {need}");
        }
        return new SafetensorsTensor(name, dtype, shape, begin, end);
    }

    private static JsonElement Member(string where, JsonElement entry, string member) =>
        entry.TryGetProperty(member, out var value) ? value : throw new CheckpointException($"{where}: entry lacks \"{member}\"");

    /// <summary>A JSON array of non-negative integers, of <paramref name="length"/> elements when given.</summary>
    private static long[] Integers(string where, JsonElement array, string member, int? length)
    {
        string expected = length is { } n ? $"an array of {n} non-negative integers" : "an array of non-negative integers";
        if (array.ValueKind != JsonValueKind.Array)
            throw new CheckpointException($"{where}: {member} is a JSON {Kind(array)}, expected {expected}");
        var values = new long[array.GetArrayLength()];
        if (length is { } count && values.Length != count)
            throw new CheckpointException($"{where}: {member} has {values.Length} elements, expected {expected}");
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long value) || value < 0)
                throw new CheckpointException($"{where}: {member} element {i} is {item.GetRawText()}, expected {expected}");
            values[i++] = value;
        }
        return values;
    }

    /// <summary>Element size × product of the shape, or null when that overflows.</summary>
    private static long? ExpectedBytes(SafetensorsDType dtype, long[] shape)
    {
        try
        {
            long bytes = dtype.ElementSize();
            foreach (long dim in shape) bytes = checked(bytes * dim);
            return bytes;
        }
        catch (OverflowException)
        {
            return null;
        }
    }

    /// <summary>The tensors, in data order, must tile [0, bufferLength) exactly.</summary>
    private static void CheckCoverage(string path, List<SafetensorsTensor> tensors, long bufferLength)
    {
        var ordered = tensors.OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
        long covered = 0;
        SafetensorsTensor? previous = null;
        foreach (var tensor in ordered)
        {
            if (tensor.Begin < covered)
                throw new CheckpointException(
                    $"{path}: tensor '{tensor.Name}' (data_offsets [{tensor.Begin}, {tensor.End})) overlaps tensor '{previous!.Name}' ([{previous.Begin}, {previous.End})); tensors must not share bytes");
            if (tensor.Begin > covered)
                throw new CheckpointException(
                    $"{path}: bytes [{covered}, {tensor.Begin}) of the data buffer belong to no tensor (a hole before tensor '{tensor.Name}'); the tensors must cover the buffer without gaps");
            covered = tensor.End;
            previous = tensor;
        }
        if (covered != bufferLength)
            throw new CheckpointException(
                $"{path}: bytes [{covered}, {bufferLength}) at the end of the data buffer belong to no tensor; the tensors must cover the buffer without gaps");
    }

    private static string Kind(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        _ => "null",
    };
}
