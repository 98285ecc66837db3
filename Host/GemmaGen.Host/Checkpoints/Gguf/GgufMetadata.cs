namespace GemmaGen;

/// <summary>The type of a GGUF metadata value, as stored in the file.</summary>
public enum GgufValueType : uint
{
    /// <summary>Unsigned 8-bit integer.</summary>
    UInt8 = 0,

    /// <summary>Signed 8-bit integer.</summary>
    Int8 = 1,

    /// <summary>Unsigned 16-bit integer.</summary>
    UInt16 = 2,

    /// <summary>Signed 16-bit integer.</summary>
    Int16 = 3,

    /// <summary>Unsigned 32-bit integer.</summary>
    UInt32 = 4,

    /// <summary>Signed 32-bit integer.</summary>
    Int32 = 5,

    /// <summary>32-bit IEEE float.</summary>
    Float32 = 6,

    /// <summary>One byte, 0 or 1.</summary>
    Bool = 7,

    /// <summary>UTF-8 string with a 64-bit length.</summary>
    String = 8,

    /// <summary>Element type, 64-bit count, elements.</summary>
    Array = 9,

    /// <summary>Unsigned 64-bit integer.</summary>
    UInt64 = 10,

    /// <summary>Signed 64-bit integer.</summary>
    Int64 = 11,

    /// <summary>64-bit IEEE float.</summary>
    Float64 = 12,
}

/// <summary>A GGUF array value: its element type and elements.</summary>
public sealed class GgufArray
{
    internal GgufArray(GgufValueType elementType, Array values)
    {
        ElementType = elementType;
        Values = values;
    }

    /// <summary>The type of every element.</summary>
    public GgufValueType ElementType { get; }

    /// <summary>The elements as a typed array: <c>byte[]</c>, <c>sbyte[]</c>, <c>ushort[]</c>, <c>short[]</c>,
    /// <c>uint[]</c>, <c>int[]</c>, <c>float[]</c>, <c>bool[]</c>, <c>string[]</c>, <see cref="GgufArray"/><c>[]</c>,
    /// <c>ulong[]</c>, <c>long[]</c> or <c>double[]</c>, by <see cref="ElementType"/>.</summary>
    public Array Values { get; }

    /// <summary>Number of elements.</summary>
    public int Count => Values.Length;
}

/// <summary>One metadata value: its type and the value (a CLR integer, float, bool, string or
/// <see cref="GgufArray"/> matching the type).</summary>
/// <param name="Type">The stored type.</param>
/// <param name="Value">The value.</param>
public sealed record GgufValue(GgufValueType Type, object Value);

/// <summary>
/// The key/value metadata of a GGUF file, in file order, with typed accessors. The Get accessors throw a
/// <see cref="CheckpointException"/> naming the file and the key when it is missing or has another type.
/// </summary>
public sealed class GgufMetadata
{
    private readonly string _path;
    private readonly Dictionary<string, GgufValue> _values;

    internal GgufMetadata(string path, List<KeyValuePair<string, GgufValue>> entries)
    {
        _path = path;
        Keys = entries.Select(e => e.Key).ToArray();
        _values = entries.ToDictionary(e => e.Key, e => e.Value);
    }

    /// <summary>The keys in file order.</summary>
    public IReadOnlyList<string> Keys { get; }

    /// <summary>Number of keys.</summary>
    public int Count => Keys.Count;

    /// <summary>Whether the key is present.</summary>
    public bool Contains(string key) => _values.ContainsKey(key);

    /// <summary>Finds a value of any type.</summary>
    public bool TryGetValue(string key, out GgufValue value) => _values.TryGetValue(key, out value!);

    /// <summary>A value of any type.</summary>
    /// <exception cref="CheckpointException">The key is missing.</exception>
    public GgufValue GetValue(string key) =>
        _values.TryGetValue(key, out var value) ? value : throw new CheckpointException($"{_path}: no metadata key '{key}'");

    /// <summary>Finds a string value.</summary>
    /// <exception cref="CheckpointException">The key exists with another type.</exception>
    public bool TryGetString(string key, out string value)
    {
        value = "";
        if (!_values.TryGetValue(key, out var found)) return false;
        value = (string)Expect(key, found, GgufValueType.String).Value;
        return true;
    }

    /// <summary>A string value.</summary>
    /// <exception cref="CheckpointException">The key is missing or not a string.</exception>
    public string GetString(string key) => (string)Expect(key, GetValue(key), GgufValueType.String).Value;

    /// <summary>A uint32 value (the type llama.cpp stores counts and lengths in).</summary>
    /// <exception cref="CheckpointException">The key is missing or not a uint32.</exception>
    public uint GetUInt32(string key) => (uint)Expect(key, GetValue(key), GgufValueType.UInt32).Value;

    /// <summary>Finds a value of any integer type, widened to long.</summary>
    /// <exception cref="CheckpointException">The key exists but is not an integer, or is a uint64 beyond long.</exception>
    public bool TryGetInteger(string key, out long value)
    {
        value = 0;
        if (!_values.TryGetValue(key, out var found)) return false;
        value = Integer(key, found);
        return true;
    }

    /// <summary>A value of any integer type, widened to long.</summary>
    /// <exception cref="CheckpointException">The key is missing, not an integer, or a uint64 beyond long.</exception>
    public long GetInteger(string key) => Integer(key, GetValue(key));

    /// <summary>Finds a float32 or float64 value, as a double (a float32 converts exactly).</summary>
    /// <exception cref="CheckpointException">The key exists with another type.</exception>
    public bool TryGetFloat(string key, out double value)
    {
        value = 0;
        if (!_values.TryGetValue(key, out var found)) return false;
        value = Float(key, found);
        return true;
    }

    /// <summary>A float32 or float64 value, as a double (a float32 converts exactly).</summary>
    /// <exception cref="CheckpointException">The key is missing or not a float.</exception>
    public double GetFloat(string key) => Float(key, GetValue(key));

    /// <summary>Finds a bool value.</summary>
    /// <exception cref="CheckpointException">The key exists with another type.</exception>
    public bool TryGetBool(string key, out bool value)
    {
        value = false;
        if (!_values.TryGetValue(key, out var found)) return false;
        value = (bool)Expect(key, found, GgufValueType.Bool).Value;
        return true;
    }

    /// <summary>A bool value.</summary>
    /// <exception cref="CheckpointException">The key is missing or not a bool.</exception>
    public bool GetBool(string key) => (bool)Expect(key, GetValue(key), GgufValueType.Bool).Value;

    /// <summary>An array value of any element type.</summary>
    /// <exception cref="CheckpointException">The key is missing or not an array.</exception>
    public GgufArray GetArray(string key) => (GgufArray)Expect(key, GetValue(key), GgufValueType.Array).Value;

    /// <summary>An array's elements, which must be of <paramref name="elementType"/> (<typeparamref name="T"/> the
    /// matching CLR type, as listed for <see cref="GgufArray.Values"/>).</summary>
    /// <exception cref="CheckpointException">The key is missing, not an array, or its elements have another type.</exception>
    public T[] GetArray<T>(string key, GgufValueType elementType)
    {
        var array = GetArray(key);
        if (array.ElementType != elementType || array.Values is not T[] values)
            throw new CheckpointException($"{_path}: metadata key '{key}' is an array of {Name(array.ElementType)}, expected an array of {Name(elementType)}");
        return values;
    }

    /// <summary>An array of strings.</summary>
    /// <exception cref="CheckpointException">The key is missing or not an array of strings.</exception>
    public string[] GetStringArray(string key) => GetArray<string>(key, GgufValueType.String);

    internal static string Name(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 => "uint8",
        GgufValueType.Int8 => "int8",
        GgufValueType.UInt16 => "uint16",
        GgufValueType.Int16 => "int16",
        GgufValueType.UInt32 => "uint32",
        GgufValueType.Int32 => "int32",
        GgufValueType.Float32 => "float32",
        GgufValueType.Bool => "bool",
        GgufValueType.String => "string",
        GgufValueType.Array => "array",
        GgufValueType.UInt64 => "uint64",
        GgufValueType.Int64 => "int64",
        GgufValueType.Float64 => "float64",
        _ => $"type {(uint)type}",
    };

    private GgufValue Expect(string key, GgufValue value, GgufValueType type) =>
        value.Type == type ? value : throw new CheckpointException($"{_path}: metadata key '{key}' is {Name(value.Type)}, expected {Name(type)}");

    private long Integer(string key, GgufValue value) => value.Value switch
    {
        byte v => v,
        sbyte v => v,
        ushort v => v,
        short v => v,
        uint v => v,
        int v => v,
        long v => v,
        ulong v when v <= long.MaxValue => (long)v,
        ulong v => throw new CheckpointException($"{_path}: metadata key '{key}' is {v}, beyond the largest supported integer {long.MaxValue}"),
        _ => throw new CheckpointException($"{_path}: metadata key '{key}' is {Name(value.Type)}, expected an integer"),
    };

    private double Float(string key, GgufValue value) => value.Value switch
    {
        float v => v,
        double v => v,
        _ => throw new CheckpointException($"{_path}: metadata key '{key}' is {Name(value.Type)}, expected float32 or float64"),
    };
}
