using System.Diagnostics;
using System.Runtime.Intrinsics;
using GemmaGen.Kernels;

namespace GemmaGen;

/// <summary>
/// Measures how fast this process reads memory: a plain vectorized sum over a buffer much larger than the caches,
/// split over the worker pool like the kernels' work. The decode ceiling is this rate divided by the bytes of
/// weights read per token; benchmarks report their rate as a fraction of it, measured in the same run.
/// </summary>
public static unsafe class BandwidthProbe
{
    /// <summary>The fastest read rate in GB/s (10^9 bytes) of <paramref name="repeats"/> passes over <paramref name="bytes"/>
    /// bytes: what the machine can do when nothing else holds the memory bus, the same rule as the benchmarks' fastest
    /// repetition.</summary>
    public static double Measure(WorkerPool pool, long bytes = 1L << 30, int repeats = 5)
    {
        using var buffer = new NativeBuffer(bytes);
        new Span<byte>(buffer.Pointer, checked((int)Math.Min(bytes, int.MaxValue))).Fill(1);
        if (bytes > int.MaxValue) new Span<byte>((byte*)buffer.Pointer + int.MaxValue, (int)(bytes - int.MaxValue)).Fill(1);
        var job = new SumJob((float*)buffer.Pointer, bytes / sizeof(float) / SumJob.Chunk);
        pool.Run(job, job.Chunks);
        var rates = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            var clock = Stopwatch.StartNew();
            pool.Run(job, job.Chunks);
            rates[i] = bytes / clock.Elapsed.TotalSeconds / 1e9;
        }
        return rates.Max();
    }

    private sealed class SumJob(float* data, long chunks) : IRowJob
    {
        public const int Chunk = 1 << 16;

        public int Chunks { get; } = (int)chunks;

        public float Result;

        public void Execute(int start, int end)
        {
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            var a2 = Vector256<float>.Zero;
            var a3 = Vector256<float>.Zero;
            float* p = data + (long)start * Chunk, stop = data + (long)end * Chunk;
            for (; p < stop; p += 32)
            {
                a0 += Vector256.Load(p);
                a1 += Vector256.Load(p + 8);
                a2 += Vector256.Load(p + 16);
                a3 += Vector256.Load(p + 24);
            }
            Result = Vector256.Sum(a0 + a1 + a2 + a3);
        }
    }
}
