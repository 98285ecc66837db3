using System.Buffers.Binary;
using GemmaGen.Kernels;
using GemmaGen.Tests.Host;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.KQuant;

/// <summary>
/// The K-quant formats (<see cref="WeightFormat.Q4_K"/>, <see cref="WeightFormat.Q5_K"/>, <see cref="WeightFormat.Q6_K"/>)
/// over random super-blocks with extreme half scales (subnormal to 65504, negative too) and every 6-bit scale and
/// minimum, held in groups of eight rows (<see cref="KQuantGroupFormat{TGroup}"/>; row counts and ranges that fill
/// groups and that do not): the decode kernel (AVX2 or scalar, whichever this process runs: the class runs again in the
/// ISA child runs), the prefill and the gate/up product against the rows dequantized by the independent
/// <see cref="ScalarReference"/> times the float input, summed in float64. The decode kernel's only other rounding is its
/// int16 input (at most half a step of max|x| / 32767 per super-block, bounded exactly here); float32 sums are held to
/// a small fraction of the terms' magnitude. Row ranges write their rows and nothing else; after a warm-up call no
/// kernel allocates.
/// </summary>
[IsaSensitive]
[Collection(AllocationCountingCollection.Name)]
public sealed unsafe class KQuantFormatTests
{
    public static TheoryData<string, int, int> Shapes()
    {
        var data = new TheoryData<string, int, int>();
        foreach (string format in new[] { "q4_k", "q5_k", "q6_k" })
        {
            foreach (var (rows, cols) in new[] { (1, 256), (6, 512), (19, 2304), (4, 9216), (44, 768) })
                data.Add(format, rows, cols);
        }
        return data;
    }

    private static WeightFormat Format(string name) => WeightFormat.AsStored.Single(f => f.Name == name);

    private static string TypeName(string format) => format.ToUpperInvariant();

    /// <summary>Half scales from the extremes to the ordinary: subnormal, the smallest normal, 1, 65504, negative.</summary>
    private static readonly ushort[] Halves = [0x0001, 0x03FF, 0x0400, 0x1400, 0x2E66, 0x3C00, 0x5BD0, 0x7BFF, 0xBC00, 0xA3D7, 0x0000];

    /// <summary>Random super-blocks (every quant, scale and minimum bit random) whose half scales are drawn from
    /// <see cref="Halves"/>, biased towards ordinary ones so that the extremes meet each other within a row.</summary>
    internal static byte[] RandomBlocks(string format, int blocks, int seed)
    {
        var dtype = Enum.Parse<TensorDType>(TypeName(format));
        int size = TensorView.BlockBytes(dtype);
        var bytes = new byte[blocks * size];
        var random = new Random(seed);
        random.NextBytes(bytes);
        foreach (int offset in TensorView.ScaleOffsets(dtype))
        {
            for (int b = 0; b < blocks; b++)
            {
                ushort half = random.Next(3) == 0 ? Halves[random.Next(Halves.Length)] : BitConverter.HalfToUInt16Bits((Half)(random.NextDouble() * 0.02));
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(b * size + offset), half);
            }
        }
        return bytes;
    }

    /// <summary>A matrix filled from <paramref name="bytes"/> as a GGUF tensor's rows (<see cref="WeightMatrix.TryCopyRow"/>).</summary>
    internal static WeightMatrix Matrix(string format, byte[] bytes, int rows, int cols)
    {
        var dtype = Enum.Parse<TensorDType>(TypeName(format));
        var matrix = new WeightMatrix("test.weight", rows, cols, Format(format));
        int rowBytes = (int)TensorView.RowBytes(dtype, cols);
        for (int r = 0; r < rows; r++) Assert.True(matrix.TryCopyRow(r, dtype, bytes.AsSpan(r * rowBytes, rowBytes)));
        return matrix;
    }

    /// <summary>An input whose super-blocks differ in magnitude by up to 10^4, one of them all zero, with an outlier.</summary>
    private static float[] Input(int cols, int seed)
    {
        var x = GemmaGen.Tests.Kernels.KernelTestData.RandomFloats(cols, seed, scale: 3f);
        for (int b = 0; b < cols / 256; b++)
        {
            float magnitude = b % 4 == 3 ? 0 : MathF.Pow(10, b % 3 - 2);
            for (int i = 0; i < 256; i++) x[b * 256 + i] *= magnitude;
        }
        x[cols / 2 + 5] *= 50;
        return x;
    }

    /// <summary>Σ w·x in float64 over the reference's dequantized row, the input rounding's bound
    /// Σ |w|·0.51·max|x| / 32767 per super-block (the int16 inputs of decoding), and the magnitude float32 rounding is
    /// relative to: Σ (|w| + |dmin|·63)·|x| (the minimums' part is summed apart and subtracted).</summary>
    private static (double Dot, double InputBound, double Magnitude) Reference(string format, ReadOnlySpan<byte> row, float[] x) =>
        Reference(format, row, x, 256, short.MaxValue);

    /// <summary><see cref="Reference(string, ReadOnlySpan{byte}, float[])"/> with the inputs rounded per
    /// <paramref name="block"/> to <paramref name="levels"/> steps of max|x| (the int8 inputs of large batches: 32, 127).</summary>
    private static (double Dot, double InputBound, double Magnitude) Reference(string format, ReadOnlySpan<byte> row, float[] x, int block, int levels)
    {
        var w = ScalarReference.Dequantize(TypeName(format), row, x.Length);
        var dtype = Enum.Parse<TensorDType>(TypeName(format));
        int size = TensorView.BlockBytes(dtype);
        double dot = 0, bound = 0, magnitude = 0;
        for (int b = 0; b < x.Length / 256; b++)
        {
            double minimums = dtype == TensorDType.Q6_K ? 0 : Math.Abs((double)BinaryPrimitives.ReadHalfLittleEndian(row[(b * size + 2)..])) * 63;
            for (int k = 256 * b; k < 256 * b + 256; k += block)
            {
                double max = 0;
                for (int i = k; i < k + block; i++) max = Math.Max(max, Math.Abs(x[i]));
                for (int i = k; i < k + block; i++)
                {
                    dot += (double)w[i] * x[i];
                    bound += Math.Abs(w[i]) * 0.51 * max / levels;
                    magnitude += (Math.Abs(w[i]) + minimums) * Math.Abs(x[i]);
                }
            }
        }
        return (dot, bound, magnitude);
    }

    private static IEnumerable<(int Start, int End)> Ranges(int rows) =>
        new[] { (0, rows), (rows / 3, rows - rows / 4), (rows - 1, rows) }.Where(r => r.Item1 < r.Item2).Distinct();

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatVecRows_are_the_dequantized_rows_times_x_within_the_input_rounding(string format, int rows, int cols)
    {
        var bytes = RandomBlocks(format, rows * cols / 256, seed: rows * cols);
        using var matrix = Matrix(format, bytes, rows, cols);
        var x = Input(cols, seed: cols + rows);
        int rowBytes = bytes.Length / rows;
        var expected = Enumerable.Range(0, rows).Select(r => Reference(format, bytes.AsSpan(r * rowBytes, rowBytes), x)).ToArray();
        foreach (var (start, end) in Ranges(rows))
        {
            var y = new float[rows + 1];
            Array.Fill(y, float.NaN);
            fixed (float* px = x, py = y) matrix.MatVecRows(px, py, start, end);
            for (int r = 0; r <= rows; r++)
            {
                if (r < start || r >= end)
                {
                    Assert.True(float.IsNaN(y[r]), $"row {r} outside [{start}, {end}) was written");
                    continue;
                }
                var (dot, inputBound, magnitude) = expected[r];
                double tolerance = inputBound + 4e-6 * magnitude + 1e-30;
                Assert.True(Math.Abs(y[r] - dot) <= tolerance,
                    $"{format} [{rows}, {cols}] rows [{start}, {end}) row {r}: {y[r]:R}, reference {dot:R}, |diff| {Math.Abs(y[r] - dot):E3} > {tolerance:E3}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatMulRows_are_every_token_times_the_dequantized_rows_within_the_input_rounding(string format, int rows, int cols)
    {
        var bytes = RandomBlocks(format, rows * cols / 256, seed: rows + cols);
        using var matrix = Matrix(format, bytes, rows, cols);
        int rowBytes = bytes.Length / rows;
        // Groups of eight rows and passes of four tokens, whole and not: below ByteTokensFrom the decode kernel's int16
        // inputs, from it int8 inputs per 32 and byte products (KQuantMatMul); without AVX2 the float kernel.
        foreach (int tokens in new[] { 1, 3, WeightFormat.ByteTokensFrom - 1, WeightFormat.ByteTokensFrom, 17, 64 })
        {
            bool integer = KQuantGroupFormat<Q6_KGroup>.Supported;
            bool bytes8 = integer && tokens >= WeightFormat.ByteTokensFrom;
            var x = new float[tokens * cols];
            for (int t = 0; t < tokens; t++) Input(cols, seed: 31 * t + rows).CopyTo(x, t * cols);
            foreach (var (start, end) in Ranges(rows))
            {
                var y = new float[tokens * (rows + 1)];
                Array.Fill(y, float.NaN);
                fixed (float* px = x, py = y) matrix.MatMulRows(px, cols, tokens, py, rows + 1, start, end);
                for (int t = 0; t < tokens; t++)
                {
                    var input = x.AsSpan(t * cols, cols).ToArray();
                    for (int r = 0; r <= rows; r++)
                    {
                        float actual = y[t * (rows + 1) + r];
                        if (r < start || r >= end)
                        {
                            Assert.True(float.IsNaN(actual), $"row {r} outside [{start}, {end}) was written");
                            continue;
                        }
                        var rowData = bytes.AsSpan(r * rowBytes, rowBytes);
                        var (dot, inputBound, magnitude) = bytes8 ? Reference(format, rowData, input, 32, sbyte.MaxValue) : Reference(format, rowData, input);
                        // The integer kernels round the inputs (int16 per 256 as decoding does, or int8 per 32); the float
                        // one does not.
                        double tolerance = integer ? inputBound + 4e-6 * magnitude + 1e-30 : 2e-5 * magnitude + 1e-30;
                        Assert.True(Math.Abs(actual - dot) <= tolerance,
                            $"{format} [{rows}, {cols}] {tokens} tokens, token {t} row {r}: {actual:R}, reference {dot:R}, |diff| {Math.Abs(actual - dot):E3} > {tolerance:E3}");
                    }
                }
            }
        }
    }

    [Theory]
    [InlineData("q4_k", 512)]
    [InlineData("q5_k", 2304)]
    [InlineData("q6_k", 768)]
    public void GateUpRows_are_gelu_of_each_gate_row_times_its_up_row(string format, int cols)
    {
        const int rows = 20;
        var bytes = RandomBlocks(format, rows * cols / 256, seed: cols);
        using var matrix = Matrix(format, bytes, rows, cols);
        var x = Input(cols, seed: 5);
        int rowBytes = bytes.Length / rows;
        var dots = Enumerable.Range(0, rows).Select(r => Reference(format, bytes.AsSpan(r * rowBytes, rowBytes), x)).ToArray();
        var y = new float[rows / 2 + 1];
        Array.Fill(y, float.NaN);
        fixed (float* px = x, py = y) matrix.GateUpRows(px, py, 1, rows / 2);
        Assert.True(float.IsNaN(y[0]) && float.IsNaN(y[rows / 2]));
        for (int i = 1; i < rows / 2; i++)
        {
            var (g, gBound, gMagnitude) = dots[2 * i];
            var (u, uBound, uMagnitude) = dots[2 * i + 1];
            double gTolerance = gBound + 4e-6 * gMagnitude, uTolerance = uBound + 4e-6 * uMagnitude;
            double gelu = 0.5 * g * (1 + Math.Tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)));
            double expected = gelu * u;
            // gelu_tanh's slope is at most 1.13 and |gelu(g)| ≤ |g|; its float32 evaluation adds a relative 1e-5.
            double tolerance = 1.13 * gTolerance * (Math.Abs(u) + uTolerance) + (Math.Abs(g) + gTolerance) * uTolerance + 1e-5 * Math.Abs(expected) + 1e-30;
            Assert.True(Math.Abs(y[i] - expected) <= tolerance, $"{format} output {i}: {y[i]:R}, reference {expected:R} (gate {g:R}, up {u:R}), tolerance {tolerance:E3}");
        }
    }

    [Theory]
    [InlineData("q4_k")]
    [InlineData("q5_k")]
    [InlineData("q6_k")]
    public void ReadRow_and_ReadFloats_are_the_scalar_reference_bit_for_bit_on_random_blocks(string format)
    {
        const int rows = 7, cols = 1024;
        var bytes = RandomBlocks(format, rows * cols / 256, seed: 3);
        using var matrix = Matrix(format, bytes, rows, cols);
        var expected = ScalarReference.Dequantize(TypeName(format), bytes, rows * cols);
        var row = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            matrix.ReadRow(r, row);
            AssertBitEqual(expected.AsSpan(r * cols, cols), row, $"{format} row {r}");
        }
        var all = new float[rows * cols];
        fixed (byte* p = bytes)
            new TensorView("t", Enum.Parse<TensorDType>(TypeName(format)), [rows, cols], p, bytes.Length, "test").ReadFloats(0, all);
        AssertBitEqual(expected, all, format + " ReadFloats");
    }

    [Theory]
    [InlineData("q4_k", 16)]
    [InlineData("q5_k", 32)]
    [InlineData("q6_k", 64)]
    public void WriteRow_quantizes_within_a_step_of_each_super_block(string format, int levels)
    {
        const int cols = 2304;
        using var matrix = new WeightMatrix("test.weight", 3, cols, Format(format));
        var row = new float[cols];
        for (int r = 0; r < 3; r++)
        {
            var x = Input(cols, seed: 40 + r);
            // A super-block of one sign, one with a large offset, and the input's zero block.
            for (int i = 0; i < 256; i++) x[i] = Math.Abs(x[i]) + 0.01f * r;
            matrix.WriteRow(r, x);
            matrix.ReadRow(r, row);
            for (int b = 0; b < cols / 256; b++)
            {
                var block = x.AsSpan(256 * b, 256).ToArray();
                // The representable range per sub-block spans min(0, min x)..max x (Q4_K, Q5_K) or ±max|x| (Q6_K).
                double range = format == "q6_k" ? 2 * block.Max(Math.Abs) : Math.Max(0, block.Max()) - Math.Min(0, block.Min());
                double bound = 2 * range / levels;
                for (int i = 0; i < 256; i++)
                {
                    Assert.True(Math.Abs(row[256 * b + i] - block[i]) <= bound,
                        $"{format} row {r} column {256 * b + i}: {block[i]:R} read back as {row[256 * b + i]:R} (bound {bound:E3})");
                }
            }
        }
    }

    [Theory]
    [InlineData("q4_k_m")]
    [InlineData("q6_k")]
    public void Every_K_tensor_of_the_fixtures_reads_back_bit_for_bit_as_the_dequantizer_and_the_reference_read_it(string name)
    {
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path(name));
        int tensors = 0;
        foreach (var tensor in gguf.File.Tensors.Where(t => t.Type == GgmlType.Q4_K || t.Type == GgmlType.Q5_K || t.Type == GgmlType.Q6_K))
        {
            int cols = (int)tensor.Shape[0], rows = (int)(tensor.ElementCount / cols);
            var bytes = gguf.File.GetBytes(tensor.Name);
            var dequantized = new float[tensor.ElementCount];
            GgmlDequantizer.Dequantize(tensor.Type, bytes, dequantized);
            AssertBitEqual(ScalarReference.Dequantize(tensor.TypeName, bytes, dequantized.Length), dequantized, tensor.Name);
            using var matrix = Matrix(tensor.TypeName.ToLowerInvariant(), bytes.ToArray(), rows, cols);
            var row = new float[cols];
            for (int r = 0; r < rows; r++)
            {
                matrix.ReadRow(r, row);
                AssertBitEqual(dequantized.AsSpan(r * cols, cols), row, $"{name}: {tensor.Name} row {r}");
            }
            tensors++;
        }
        Assert.Equal(43, tensors); // the fixture README: 38 Q4_K and 5 Q6_K, or 43 Q6_K
    }

    [Theory]
    [InlineData("q4_k_m", "q4_k", "q6_k")]
    [InlineData("q6_k", "q6_k", "q6_k")]
    public void A_K_quant_file_loads_its_blocks_as_stored(string name, string layerFormat, string embedFormat)
    {
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path(name));
        using var weights = ModelWeights.Load(gguf.Config, gguf);
        Assert.Equal(embedFormat, weights.Embed.Format.Name);
        Assert.Contains(weights.Layers, l => l.GateUp.Format.Name == layerFormat);
        int stacks = 0;
        foreach (var layer in weights.Layers)
        {
            foreach (var m in layer.Matrices)
            {
                // A q/k/v stack of parts of different types (Q4_K q and k, Q6_K v) keeps each part as stored; nothing is F32.
                var held = m.Parts.Count > 0 ? m.Parts.Select(p => p.Part).ToArray() : [m];
                if (m.Parts.Count > 0) stacks++;
                foreach (var part in held)
                {
                    Assert.True(part.Format.Name is "q4_k" or "q6_k", $"{part.Name}: {part.Format.Name}");
                    // In groups of eight rows: Q4_K 152 bytes per row and 256 values (the 144 stored and the scales and
                    // minimums unpacked), Q6_K 212 (the 210 stored and d widened).
                    long expected = (part.Rows + 7) / 8 * 8L * part.Cols / 256 * (part.Format.Name == "q4_k" ? 152 : 212);
                    Assert.Equal(expected, part.ByteLength);
                }
            }
        }
        if (name == "q4_k_m")
        {
            Assert.True(stacks > 0, "no layer of the q4_k_m fixture mixes Q4_K and Q6_K in q/k/v");
            var stack = weights.Layers.First(l => l.Qkv.Parts.Count > 0).Qkv;
            Assert.Equal(["q4_k", "q4_k", "q6_k"], stack.Parts.Select(p => p.Part.Format.Name));
        }
        var plan = LoadPlan.Create(gguf.Config, gguf, tokenizer: gguf.LoadTokenizer());
        Assert.Equal(weights.ByteLength, plan.WeightBytes);
    }

    [Fact]
    public void A_non_finite_dmin_is_refused_naming_the_tensor_and_the_block()
    {
        using var temp = new TempDirectory();
        byte[] bytes = File.ReadAllBytes(GgufFixtures.Path("q4_k_m"));
        string tensorName;
        long at;
        int cols;
        using (var file = GgufFile.Open(GgufFixtures.Path("q4_k_m")))
        {
            var tensor = file.Tensors.First(t => t.Type == GgmlType.Q4_K && t.Name.StartsWith("blk.", StringComparison.Ordinal));
            tensorName = tensor.Name;
            at = file.DataOffset + tensor.Offset;
            cols = (int)tensor.Shape[0];
        }
        // Row 2, super-block 0: dmin (bytes 2-3 of the block) set to +infinity.
        BitConverter.TryWriteBytes(bytes.AsSpan((int)(at + 2 * (cols / 256) * 144 + 2)), (ushort)0x7C00);
        string path = temp.File("bad-dmin.gguf");
        File.WriteAllBytes(path, bytes);
        using var gguf = GgufCheckpoint.Open(path);
        var e = Assert.Throws<WeightLoadException>(() => ModelWeights.Load(gguf.Config, gguf).Dispose());
        Assert.Contains($"GGUF tensor '{tensorName}', Q4_K", e.Message);
        Assert.Contains("1 non-finite Q4_K block scale (first +infinity, the block at row 2, column 0)", e.Message);
    }

    [Fact]
    public void No_allocation_per_call_after_warm_up()
    {
        using var q4 = Matrix("q4_k", RandomBlocks("q4_k", 16 * 9216 / 256, seed: 1), 16, 9216);
        using var q6 = Matrix("q6_k", RandomBlocks("q6_k", 16 * 2304 / 256, seed: 2), 16, 2304);
        var x = Input(9216, seed: 1);
        var y = new float[32];
        fixed (float* px = x, py = y)
        {
            q4.MatVecRows(px, py, 0, 16);
            q6.MatVecRows(px, py, 0, 16);
            q6.GateUpRows(px, py, 0, 8);
            q6.MatMulRows(px, 0, 2, py, 16, 0, 16);
            q4.MatMulRows(px, 0, 5, py, 0, 0, 16);
            var windows = new AllocationWindows();
            windows.Mark();
            for (int window = 0; window < AllocationWindows.Count; window++)
            {
                for (int i = 0; i < 20; i++)
                {
                    q4.MatVecRows(px, py, 0, 16);
                    q6.MatVecRows(px, py, 4, 12);
                    q6.GateUpRows(px, py, 2, 6);
                    q6.MatMulRows(px, 0, 2, py, 16, 1, 7);
                    q4.MatMulRows(px, 0, 5, py, 0, 3, 14);
                }
                windows.Mark();
            }
            windows.AssertOneWindowAllocatedNothing("20 rounds of the K-quant kernels");
        }
    }

    private static void AssertBitEqual(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what} value {i}: expected {expected[i]:R}, read {actual[i]:R}");
        }
    }
}
