using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// Issue 10 item 1: each decode kernel's own speed, with its weights resident in cache, so that memory does not bound
/// it: about 1 MiB of weights (2304 columns, the 2B width; rows chosen per format), one thread, one matrix-vector product
/// per call. The kernel is what decoding runs: the generated 2B kernels for F32 and BF16, the format's kernel for Q8_0
/// and Q4_0 (also on int8 activations, "q4_0+int8") and for GGUF's K-quants as stored (Q4_K, Q5_K, Q6_K; synthetic values from their simple quantizer). Weight bytes streamed per second = <see cref="Bytes"/> / time. The baseline reads a 1 GiB buffer once
/// (512-bit loads, summed): the memory bandwidth of one core, for comparison.
/// </summary>
public unsafe class CachedMatVecBenchmarks
{
    private const int Cols = 2304;
    private WeightMatrix _matrix = null!;
    private NativeBuffer _stream = null!;
    private float[] _x = null!, _y = null!;

    [Params("f32", "bf16", "q8_0", "q4_0", "q4_0+int8", "q4_k", "q5_k", "q6_k")]
    public string Format { get; set; } = "";

    /// <summary>Bytes of weights one call reads.</summary>
    public long Bytes => _matrix.ByteLength;

    [GlobalSetup]
    public void Setup()
    {
        // "+int8": the format's products on int8 activations (DecodeActivations.Int8, the Q4_0 blocks' --activations int8).
        bool int8 = Format.EndsWith("+int8", StringComparison.Ordinal);
        string name = int8 ? Format[..^"+int8".Length] : Format;
        var format = WeightFormat.Find(name, [.. WeightFormat.All, .. WeightFormat.AsStored])!;
        // About 1 MiB: 2304 columns at 4, 2, 1.0625, 0.5625 (Q4_0, Q4_K), 0.6875 and 0.8203 bytes per weight, rows a
        // multiple of 16.
        int rows = name switch { "f32" => 112, "bf16" => 224, "q8_0" => 432, "q5_k" => 656, "q6_k" => 544, _ => 816 };
        _matrix = BenchmarkData.RandomMatrix("w", rows, Cols, format, seed: 3);
        if (int8) _matrix.DecodeActivations = DecodeActivations.Int8;
        _x = BenchmarkData.Wave(Cols);
        _y = GC.AllocateArray<float>(rows, pinned: true);
        _stream = new NativeBuffer(1L << 30);
        _stream.AsSpan<byte>().Fill(1);
        Console.WriteLine($"// {Format}: {rows} x {Cols}, {_matrix.ByteLength} bytes of weights");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _matrix.Dispose();
        _stream.Dispose();
    }

    [Benchmark(Description = "matrix-vector product, weights in cache")]
    public void MatVec()
    {
        fixed (float* x = _x, y = _y) _matrix.MatVecRows(x, y, 0, _matrix.Rows);
    }

    /// <summary>One core reading 1 GiB from memory (the per-core bandwidth; divide 2^30 by the time).</summary>
    [Benchmark(Description = "one core streaming 1 GiB from memory")]
    public Vector512<byte> Stream()
    {
        byte* p = (byte*)_stream.Pointer;
        long length = _stream.ByteLength;
        Vector512<byte> a = default, b = default, c = default, d = default;
        for (long i = 0; i < length; i += 256)
        {
            a ^= Vector512.Load(p + i);
            b ^= Vector512.Load(p + i + 64);
            c ^= Vector512.Load(p + i + 128);
            d ^= Vector512.Load(p + i + 192);
        }
        return a ^ b ^ c ^ d;
    }
}
