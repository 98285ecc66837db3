using GemmaGen.Kernels;
using Xunit;

namespace GemmaGen.Tests.Host;

public sealed class SafetensorsFileTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    public static TheoryData<string> FixtureFiles()
    {
        var data = new TheoryData<string>();
        foreach (string file in Directory.EnumerateFiles(Fixtures.Root, "*.safetensors", SearchOption.AllDirectories).Order())
            data.Add(Path.GetRelativePath(Fixtures.Root, file));
        return data;
    }

    [Theory]
    [MemberData(nameof(FixtureFiles))]
    public void ReadsEveryFixtureFile(string relativePath)
    {
        using var file = SafetensorsFile.Open(Path.Combine(Fixtures.Root, relativePath));
        Assert.NotEmpty(file.Tensors);
        Assert.Equal(file.BufferLength, file.Tensors.Sum(t => t.ByteLength));
        foreach (var tensor in file.Tensors)
        {
            Assert.Equal(tensor.Shape.Aggregate(1L, (p, d) => p * d), tensor.ElementCount);
            Assert.Equal(tensor.ByteLength, file.GetBytes(tensor.Name).Length);
            if (tensor.DType == SafetensorsDType.F32) Assert.All(file.GetF32(tensor.Name).ToArray(), v => Assert.True(float.IsFinite(v)));
        }
    }

    [Fact]
    public void ReadsGoldenIdsAndLogits()
    {
        using var golden = Fixtures.Golden("tiny-gqa");
        long[] prompt = golden.GetI64("prompt_ids");
        Assert.Equal(20, prompt.Length);
        Assert.Equal(2, prompt[0]);
        Assert.Equal([20L, 1000L], golden.GetShape("prompt_logits"));
        Assert.Equal(20 * 1000, golden.GetF32("prompt_logits").Length);
        Assert.Equal(24, golden.GetI64("generated_ids").Length);
    }

    [Fact]
    public unsafe void ViewsWeightTensors()
    {
        using var file = SafetensorsFile.Open(Fixtures.Path("tiny-gqa", "model.safetensors"));
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.True(file.TryGetTensor("model.layers.0.self_attn.q_proj.weight", out var view));
        Assert.Equal(TensorDType.F32, view.DType);
        Assert.Equal([64L, 64L], view.Shape);
        Assert.Equal(64 * 64 * 4, view.ByteLength);
        Assert.Equal(file.Path, view.Origin);
        Assert.Equal(file.GetF32("model.layers.0.self_attn.q_proj.weight")[5], ((float*)view.Data)[5]);
        Assert.False(file.TryGetTensor("lm_head.weight", out _));

        using var bf16 = SafetensorsFile.Open(Fixtures.Path("tiny-gqa-bf16", "model.safetensors"));
        Assert.True(bf16.TryGetTensor("model.norm.weight", out var norm));
        Assert.Equal(TensorDType.BF16, norm.DType);
    }

    [Fact]
    public void WriterRoundTrips()
    {
        string path = _temp.File("round.safetensors");
        float[] values = [1.5f, -2f, 3.25f, 0f, float.Epsilon, -0f];
        new SafetensorsWriter()
            .AddMetadata("format", "pt")
            .AddF32("a.weight", values, 2, 3)
            .AddI64("ids", [2L, 651L, long.MaxValue], 3)
            .Add("half", SafetensorsDType.F16, [(Half)0.5f, (Half)(-1f)], 2)
            .AddF32("scalar", [7f])
            .Save(path);

        var bytes = File.ReadAllBytes(path);
        Assert.Equal(0, (8 + (long)BitConverter.ToUInt64(bytes, 0)) % 8);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["a.weight", "ids", "half", "scalar"], file.TensorNames);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(values, file.GetF32("a.weight").ToArray());
        Assert.Equal([2L, 3L], file.GetShape("a.weight"));
        Assert.Equal([2L, 651L, long.MaxValue], file.GetI64("ids"));
        Assert.Equal(SafetensorsDType.F16, file.GetInfo("half").DType);
        Assert.True(file.TryGetTensor("half", out var half));
        var widened = new float[2];
        half.ReadFloats(0, widened);
        Assert.Equal([0.5f, -1f], widened);
        Assert.Empty(file.GetShape("scalar"));
        Assert.Equal([7f], file.GetF32("scalar").ToArray());
    }

    [Fact]
    public void WriterRefusesDataThatDoesNotMatchTheShape()
    {
        var e = Assert.Throws<ArgumentException>(() => new SafetensorsWriter().AddF32("x", [1f, 2f, 3f], 2, 2));
        Assert.Contains("'x'", e.Message);
    }

    [Fact]
    public void RefusesNonWeightDTypeAsTensorView()
    {
        using var golden = Fixtures.Golden("tiny-gqa");
        var e = Assert.Throws<CheckpointException>(() => golden.TryGetTensor("prompt_ids", out _));
        AssertNames(e, golden.Path, "prompt_ids", "I64", "F32, BF16 or F16");
    }

    [Fact]
    public void RefusesTypedAccessOfTheWrongDType()
    {
        using var golden = Fixtures.Golden("tiny-gqa");
        AssertNames(Assert.Throws<CheckpointException>(() => golden.GetF32("prompt_ids").Length), golden.Path, "prompt_ids", "expected F32");
        AssertNames(Assert.Throws<CheckpointException>(() => golden.GetI64("prompt_logits")), golden.Path, "prompt_logits", "expected I64");
        AssertNames(Assert.Throws<CheckpointException>(() => golden.GetShape("nope")), golden.Path, "'nope'");
    }

    [Fact]
    public void AcceptsMetadataAndTrailingSpaces()
    {
        string path = _temp.File("meta.safetensors");
        RawSafetensors.Write(path, """{"__metadata__": {"format": "pt"}, "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}   """, 8);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(["x"], file.TensorNames);
    }

    [Fact]
    public void AcceptsOtherKnownDTypesInTheHeader()
    {
        string path = _temp.File("dtypes.safetensors");
        RawSafetensors.Write(path, """
            {"a": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]},
             "b": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]},
             "c": {"dtype": "U8", "shape": [3], "data_offsets": [16, 19]},
             "d": {"dtype": "BOOL", "shape": [1], "data_offsets": [19, 20]}}
            """, 20);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal([SafetensorsDType.I32, SafetensorsDType.F64, SafetensorsDType.U8, SafetensorsDType.BOOL], file.Tensors.Select(t => t.DType));
    }

    [Fact]
    public void RefusesAFileShorterThanTheHeaderLength()
    {
        string path = _temp.File("short.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        AssertRefused(path, null, "3 bytes", "shorter than the 8-byte header length");
    }

    [Fact]
    public void RefusesAHeaderLengthPastTheEndOfTheFile()
    {
        string path = _temp.File("past.safetensors");
        RawSafetensors.Write(path, "{}", 0, declaredLength: 1000);
        AssertRefused(path, null, "header length 1000", "past the end of the file");
    }

    [Fact]
    public void RefusesAHeaderLargerThanTheLimit()
    {
        string path = _temp.File("huge.safetensors");
        RawSafetensors.Write(path, "{}", 0, declaredLength: 100_000_001);
        AssertRefused(path, null, "header length 100000001", "exceeds the limit of 100000000 bytes");
    }

    [Fact]
    public void RefusesAHeaderThatIsNotJson()
    {
        string path = _temp.File("notjson.safetensors");
        RawSafetensors.Write(path, """{"x": {"dtype": "F32",""", 0);
        AssertRefused(path, null, "header is not valid JSON");
    }

    [Fact]
    public void RefusesAHeaderThatIsNotAnObject()
    {
        string path = _temp.File("array.safetensors");
        RawSafetensors.Write(path, "[1, 2]", 0);
        AssertRefused(path, null, "header is a JSON array", "expected an object");
    }

    [Fact]
    public void RefusesAnEntryThatIsNotAnObject()
    {
        string path = _temp.File("entry.safetensors");
        RawSafetensors.Write(path, """{"w": [1, 2]}""", 0);
        AssertRefused(path, "w", "entry is a JSON array", "expected an object with dtype, shape and data_offsets");
    }

    [Theory]
    [InlineData("dtype", """{"w": {"shape": [2], "data_offsets": [0, 8]}}""")]
    [InlineData("shape", """{"w": {"dtype": "F32", "data_offsets": [0, 8]}}""")]
    [InlineData("data_offsets", """{"w": {"dtype": "F32", "shape": [2]}}""")]
    public void RefusesAnEntryThatLacksAMember(string member, string header)
    {
        string path = _temp.File("lacks.safetensors");
        RawSafetensors.Write(path, header, 8);
        AssertRefused(path, "w", $"lacks \"{member}\"");
    }

    [Fact]
    public void RefusesAMalformedShape()
    {
        string path = _temp.File("shape.safetensors");
        RawSafetensors.Write(path, """{"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]}}""", 8);
        AssertRefused(path, "w", "shape element 1 is -1", "non-negative integers");
    }

    [Fact]
    public void RefusesAnUnknownDType()
    {
        string path = _temp.File("dtype.safetensors");
        RawSafetensors.Write(path, """{"w": {"dtype": "Q4_K", "shape": [2], "data_offsets": [0, 8]}}""", 8);
        AssertRefused(path, "w", "unknown dtype 'Q4_K'", "F32", "BF16", "F16");
    }

    [Fact]
    public void RefusesOffsetsPastTheEndOfTheBuffer()
    {
        string path = _temp.File("offsets.safetensors");
        RawSafetensors.Write(path, """{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}""", 8);
        AssertRefused(path, "w", "[0, 16)", "past the end of the data buffer (8 bytes)");
    }

    [Fact]
    public void RefusesOffsetsThatBeginAfterTheyEnd()
    {
        string path = _temp.File("reversed.safetensors");
        RawSafetensors.Write(path, """{"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}""", 8);
        AssertRefused(path, "w", "[8, 0)", "begin <= end");
    }

    [Fact]
    public void RefusesOverlappingTensors()
    {
        string path = _temp.File("overlap.safetensors");
        RawSafetensors.Write(path, """
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
            """, 12);
        AssertRefused(path, "b", "overlaps tensor 'a'");
    }

    [Fact]
    public void RefusesAHoleBetweenTensors()
    {
        string path = _temp.File("hole.safetensors");
        RawSafetensors.Write(path, """
            {"b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
             "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
            """, 12);
        AssertRefused(path, "b", "bytes [4, 8)", "belong to no tensor");
    }

    [Fact]
    public void RefusesUncoveredBytesAtTheEndOfTheBuffer()
    {
        string path = _temp.File("tail.safetensors");
        RawSafetensors.Write(path, """{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""", 12);
        AssertRefused(path, null, "bytes [4, 12) at the end of the data buffer belong to no tensor");
    }

    [Fact]
    public void RefusesASizeThatDoesNotMatchDTypeTimesShape()
    {
        string path = _temp.File("size.safetensors");
        RawSafetensors.Write(path, """{"w": {"dtype": "BF16", "shape": [3, 2], "data_offsets": [0, 8]}}""", 8);
        AssertRefused(path, "w", "hold 8 bytes", "BF16 (2 bytes) × shape [3, 2] needs 12 bytes");
    }

    [Fact]
    public void RefusesMetadataThatIsNotAStringMap()
    {
        string path = _temp.File("metadata.safetensors");
        RawSafetensors.Write(path, """{"__metadata__": {"total": 5}}""", 0);
        AssertRefused(path, null, "__metadata__ entry 'total'", "expected a string");
    }

    [Fact]
    public void RefusesADuplicateTensorName()
    {
        string path = _temp.File("twice.safetensors");
        RawSafetensors.Write(path, """
            {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
             "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
            """, 8);
        AssertRefused(path, "w", "twice");
    }

    [Fact]
    public void RefusesAMissingFile()
    {
        string path = _temp.File("absent.safetensors");
        AssertRefused(path, null, "cannot open");
    }

    private static void AssertRefused(string path, string? tensor, params string[] fragments)
    {
        var e = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path).Dispose());
        AssertNames(e, path, [.. tensor is null ? [] : new[] { $"tensor '{tensor}'" }, .. fragments]);
    }

    private static void AssertNames(CheckpointException e, string path, params string[] fragments)
    {
        Assert.StartsWith(path + ": ", e.Message);
        foreach (string fragment in fragments) Assert.Contains(fragment, e.Message);
    }
}
