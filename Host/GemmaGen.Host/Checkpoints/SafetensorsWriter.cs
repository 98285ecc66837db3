using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace GemmaGen;

/// <summary>
/// Writes a safetensors file: tensors are laid out in the order they were added, and the JSON header is padded
/// with spaces so the data buffer starts at a multiple of 8 bytes.
/// </summary>
public sealed class SafetensorsWriter
{
    private readonly List<Entry> _entries = [];
    private readonly Dictionary<string, string> _metadata = [];

    /// <summary>Adds an F32 tensor.</summary>
    /// <param name="name">Tensor name.</param>
    /// <param name="values">Elements, row-major; their count must equal the product of <paramref name="shape"/>.</param>
    /// <param name="shape">Dimensions, outermost first.</param>
    public SafetensorsWriter AddF32(string name, float[] values, params long[] shape) => Add(name, SafetensorsDType.F32, values, shape);

    /// <summary>Adds an I64 tensor (token ids).</summary>
    /// <param name="name">Tensor name.</param>
    /// <param name="values">Elements, row-major; their count must equal the product of <paramref name="shape"/>.</param>
    /// <param name="shape">Dimensions, outermost first.</param>
    public SafetensorsWriter AddI64(string name, long[] values, params long[] shape) => Add(name, SafetensorsDType.I64, values, shape);

    /// <summary>Adds a tensor of any dtype from elements whose bytes are its little-endian encoding (for example
    /// <see cref="Half"/> for F16, <see cref="ushort"/> bits for BF16, or raw bytes copied from another file).</summary>
    /// <param name="name">Tensor name.</param>
    /// <param name="dtype">The dtype the header records.</param>
    /// <param name="values">The data; its byte size must equal the dtype size × the product of <paramref name="shape"/>.</param>
    /// <param name="shape">Dimensions, outermost first.</param>
    /// <exception cref="ArgumentException">The name is taken or reserved, or the size does not match.</exception>
    public SafetensorsWriter Add<T>(string name, SafetensorsDType dtype, T[] values, params long[] shape)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(values);
        if (name == "__metadata__" || _entries.Any(e => e.Name == name))
            throw new ArgumentException($"tensor name '{name}' is reserved or already added", nameof(name));
        if (shape.Any(d => d < 0)) throw new ArgumentException($"tensor '{name}': negative dimension in [{string.Join(", ", shape)}]", nameof(shape));
        long expected = dtype.ElementSize() * shape.Aggregate(1L, (product, d) => checked(product * d));
        long actual = (long)values.Length * Unsafe.SizeOf<T>();
        if (actual != expected)
            throw new ArgumentException(
                $"tensor '{name}': {actual} bytes of data, but dtype {dtype} × shape [{string.Join(", ", shape)}] needs {expected}", nameof(values));
        _entries.Add(new Entry(name, dtype, shape.ToArray(), actual, stream => stream.Write(MemoryMarshal.AsBytes(values.AsSpan()))));
        return this;
    }

    /// <summary>Adds a <c>__metadata__</c> entry.</summary>
    public SafetensorsWriter AddMetadata(string key, string value)
    {
        _metadata[key] = value;
        return this;
    }

    /// <summary>Writes the file, replacing any file at <paramref name="path"/>.</summary>
    public void Save(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        WriteTo(stream);
    }

    /// <summary>Writes the header and then every tensor's data to <paramref name="stream"/>.</summary>
    public void WriteTo(Stream stream)
    {
        var header = Header();
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
        foreach (var entry in _entries) entry.Write(stream);
    }

    private byte[] Header()
    {
        using var json = new MemoryStream();
        using (var writer = new Utf8JsonWriter(json))
        {
            writer.WriteStartObject();
            if (_metadata.Count > 0)
            {
                writer.WriteStartObject("__metadata__");
                foreach (var (key, value) in _metadata) writer.WriteString(key, value);
                writer.WriteEndObject();
            }
            long offset = 0;
            foreach (var entry in _entries)
            {
                writer.WriteStartObject(entry.Name);
                writer.WriteString("dtype", entry.DType.ToString());
                writer.WriteStartArray("shape");
                foreach (long d in entry.Shape) writer.WriteNumberValue(d);
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                writer.WriteNumberValue(offset + entry.ByteLength);
                writer.WriteEndArray();
                writer.WriteEndObject();
                offset += entry.ByteLength;
            }
            writer.WriteEndObject();
        }
        int padding = (int)((8 - json.Length % 8) % 8);
        for (int i = 0; i < padding; i++) json.WriteByte((byte)' ');
        return json.ToArray();
    }

    private sealed record Entry(string Name, SafetensorsDType DType, long[] Shape, long ByteLength, Action<Stream> Write);
}
