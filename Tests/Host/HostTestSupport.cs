using System.Buffers.Binary;
using System.Text;
using GemmaGen.Kernels;
using Xunit;

namespace GemmaGen.Tests.Host;

/// <summary>Paths of the fixtures copied next to the test assembly.</summary>
internal static class Fixtures
{
    /// <summary>The fixture root, <c>Fixtures/</c> in the output directory.</summary>
    public static string Root => System.IO.Path.Combine(AppContext.BaseDirectory, "Fixtures");

    /// <summary>A fixture folder (<c>tiny-gqa</c>) or a file in one.</summary>
    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    /// <summary>A golden.safetensors, opened.</summary>
    public static SafetensorsFile Golden(string model) => SafetensorsFile.Open(Path(model, "golden.safetensors"));

    /// <summary>A golden's prompt ids as a <c>--tokens</c> value.</summary>
    public static string TokenList(long[] ids) => string.Join(",", ids);
}

/// <summary>A fresh directory under the system temp folder, deleted on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory() => System.IO.Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "gemmagen-host-tests-" + Guid.NewGuid().ToString("N"));

    /// <summary>A path inside the directory.</summary>
    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>A new subdirectory.</summary>
    public string Directory(string name) => System.IO.Directory.CreateDirectory(File(name)).FullName;

    public void Dispose() => System.IO.Directory.Delete(Path, recursive: true);
}

/// <summary>Builds safetensors files byte by byte, for the malformed cases a writer never produces.</summary>
internal static class RawSafetensors
{
    /// <summary>Writes <c>u64 header length, header, data</c>; the length written is <paramref name="declaredLength"/>
    /// when given, the header's byte count otherwise.</summary>
    public static void Write(string path, string header, int dataBytes, ulong? declaredLength = null)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)json.Length);
        json.CopyTo(bytes, 8);
        System.IO.File.WriteAllBytes(path, bytes);
    }
}

/// <summary>Comparisons of packed weights.</summary>
internal static class WeightAssert
{
    /// <summary>Every packed value of <paramref name="actual"/> equals <paramref name="map"/> of the same value of
    /// <paramref name="expected"/>.</summary>
    /// <param name="norms">Compare the norm vectors too (held as 1 + w, which <paramref name="map"/> of a rounding does
    /// not describe: compare those against the checkpoint instead).</param>
    public static void Equal(ModelWeights expected, ModelWeights actual, Func<float, float> map, bool norms = true)
    {
        Matrix(expected.Embed, actual.Embed, map);
        Assert.Equal(expected.LmHead is null, actual.LmHead is null);
        if (norms) Vector(expected.FinalNorm, actual.FinalNorm, map);
        Assert.Equal(expected.Layers.Length, actual.Layers.Length);
        for (int l = 0; l < expected.Layers.Length; l++)
        {
            LayerWeights e = expected.Layers[l], a = actual.Layers[l];
            if (norms) Vector(e.InputNorm, a.InputNorm, map);
            if (norms) Vector(e.PostAttentionNorm, a.PostAttentionNorm, map);
            if (norms) Vector(e.PreFeedforwardNorm, a.PreFeedforwardNorm, map);
            if (norms) Vector(e.PostFeedforwardNorm, a.PostFeedforwardNorm, map);
            Matrix(e.Qkv, a.Qkv, map);
            Matrix(e.O, a.O, map);
            Matrix(e.GateUp, a.GateUp, map);
            Matrix(e.Down, a.Down, map);
        }
    }

    private static void Vector(float[] expected, float[] actual, Func<float, float> map) =>
        Assert.Equal(expected.Select(map), actual);

    private static void Matrix(WeightMatrix expected, WeightMatrix actual, Func<float, float> map)
    {
        Assert.Equal((expected.Rows, expected.Cols), (actual.Rows, actual.Cols));
        var e = new float[expected.Cols];
        var a = new float[actual.Cols];
        for (int r = 0; r < expected.Rows; r++)
        {
            expected.ReadRow(r, e);
            actual.ReadRow(r, a);
            for (int c = 0; c < e.Length; c++)
            {
                if (map(e[c]) != a[c])
                    Assert.Fail($"{actual.Name} [{r}, {c}]: expected {map(e[c])}, got {a[c]}");
            }
        }
    }
}
