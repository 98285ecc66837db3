using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// The load-time scan for NaN and infinite weights over 256 MiB of stored weights (far beyond the caches, as a
/// checkpoint is), against copying the same bytes, the least packing a tensor does.
/// </summary>
public unsafe class FiniteCheckBenchmarks
{
    private const long Bytes = 256L << 20;
    private byte* _source, _target;

    [Params(TensorDType.F32, TensorDType.BF16)]
    public TensorDType DType { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _source = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        _target = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        var random = new Random(1);
        for (long i = 0; i < Bytes / TensorView.ElementSize(DType); i++)
        {
            float value = (float)(random.NextDouble() - 0.5);
            if (DType == TensorDType.F32) ((float*)_source)[i] = value;
            else ((ushort*)_source)[i] = (ushort)(BitConverter.SingleToUInt32Bits(value) >> 16);
        }
        NativeMemory.Clear(_target, (nuint)Bytes);
        if (!FiniteCheck.AllFinite(DType, _source, Bytes / TensorView.ElementSize(DType))) throw new InvalidOperationException("setup made a non-finite value");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_source);
        NativeMemory.AlignedFree(_target);
    }

    [Benchmark(Baseline = true, Description = "copy 256 MiB")]
    public void Copy() => Buffer.MemoryCopy(_source, _target, Bytes, Bytes);

    [Benchmark(Description = "scan 256 MiB (FiniteCheck.AllFinite)")]
    public bool Scan() => FiniteCheck.AllFinite(DType, _source, Bytes / TensorView.ElementSize(DType));
}
