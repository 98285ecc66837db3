using System.Numerics;
using System.Text;
using GemmaGen.Kernels;
using GemmaGen.Specs;

namespace GemmaGen;

/// <summary>One tensor of a synthetic model: its checkpoint name, shape and the power of two that bounds it.</summary>
public sealed class SyntheticTensor
{
    internal SyntheticTensor(string name, long[] shape, int scaleLog2)
    {
        Name = name;
        ShapeArray = shape;
        ScaleLog2 = scaleLog2;
    }

    /// <summary>The HF checkpoint name (<c>model.layers.0.mlp.down_proj.weight</c>).</summary>
    public string Name { get; }

    /// <summary>Dimensions in HF layout, <c>[out, in]</c> for projections.</summary>
    public IReadOnlyList<long> Shape => ShapeArray;

    /// <summary>Every value lies in [−2^ScaleLog2, 2^ScaleLog2).</summary>
    public int ScaleLog2 { get; }

    /// <summary>Elements: the product of the shape.</summary>
    public long ElementCount => ShapeArray.Aggregate(1L, (product, d) => product * d);

    internal long[] ShapeArray { get; }
}

/// <summary>
/// The weights of any Gemma 2 config, defined by the fixture formula (Tests/Fixtures/README.md, "Real-shape goldens
/// with synthetic weights"), so a spec runs at full size with no download. Tensors are F32, generated into native
/// memory on first request and kept while this source lives.
/// </summary>
/// <remarks>
/// Value i of a tensor: seed = FNV-1a 64 of the name's UTF-8 bytes; z = seed + (i + 1)·0x9E3779B97F4A7C15 mixed
/// by splitmix64's finalizer; k = (z &gt;&gt; 40) − 2^23, a 24-bit signed integer; w = k · 2^(scale_log2 − 23),
/// exact in float32. scale_log2 is −2 for norms, −5 for the embedding and −floor(log2(in) / 2) for a projection of
/// input width <c>in</c>.
/// </remarks>
public sealed unsafe class SyntheticWeights : ITensorSource, IDisposable
{
    /// <summary>scale_log2 of every RMSNorm weight.</summary>
    public const int NormScaleLog2 = -2;

    /// <summary>scale_log2 of the embedding.</summary>
    public const int EmbedScaleLog2 = -5;

    private const int FillBlock = 1 << 20;

    // Described on first use: a config is checked (its memory needs, say) before its tensors are listed.
    private readonly Lazy<(SyntheticTensor[] List, Dictionary<string, SyntheticTensor> ByName)> _described;
    private readonly Dictionary<string, NativeBuffer> _generated = [];
    private readonly object _gate = new();
    private bool _disposed;

    /// <summary>Describes every tensor <paramref name="config"/> calls for; generates none yet.</summary>
    public SyntheticWeights(Gemma2Config config)
    {
        Config = config;
        _described = new(() =>
        {
            var list = Describe(config).ToArray();
            return (list, list.ToDictionary(t => t.Name));
        });
    }

    /// <summary>The config whose tensors this source makes.</summary>
    public Gemma2Config Config { get; }

    /// <summary>Names the source in messages.</summary>
    public string Description => "synthetic weights";

    /// <summary>Every tensor the config calls for, in checkpoint order (embedding, layers, final norm).</summary>
    public IReadOnlyList<SyntheticTensor> Tensors => _described.Value.List;

    /// <summary>The tensors of a Gemma 2 model of <paramref name="config"/>, with their shapes and scales.</summary>
    public static IEnumerable<SyntheticTensor> Describe(Gemma2Config config)
    {
        long d = config.HiddenSize, q = (long)config.NumAttentionHeads * config.HeadDim;
        long kv = (long)config.NumKeyValueHeads * config.HeadDim, inter = config.IntermediateSize;
        yield return new SyntheticTensor(CheckpointNames.Embed, [config.VocabSize, d], EmbedScaleLog2);
        for (int l = 0; l < config.NumHiddenLayers; l++)
        {
            var n = CheckpointNames.Layer(l);
            yield return Projection(n.QProj, q, d);
            yield return Projection(n.KProj, kv, d);
            yield return Projection(n.VProj, kv, d);
            yield return Projection(n.OProj, d, q);
            yield return Projection(n.GateProj, inter, d);
            yield return Projection(n.UpProj, inter, d);
            yield return Projection(n.DownProj, d, inter);
            foreach (string norm in n.Norms) yield return new SyntheticTensor(norm, [d], NormScaleLog2);
        }
        yield return new SyntheticTensor(CheckpointNames.FinalNorm, [d], NormScaleLog2);
    }

    /// <summary>scale_log2 of a projection whose input width is <paramref name="inputWidth"/>: −floor(log2(in) / 2).</summary>
    public static int ProjectionScaleLog2(long inputWidth)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inputWidth);
        // floor(log2(in) / 2) == floor(floor(log2(in)) / 2), so integer arithmetic gives it exactly.
        return -(BitOperations.Log2((ulong)inputWidth) / 2);
    }

    /// <summary>The formula's seed: FNV-1a 64 of the name's UTF-8 bytes.</summary>
    public static ulong Seed(string name)
    {
        ulong hash = 0xcbf29ce484222325;
        foreach (byte b in Encoding.UTF8.GetBytes(name)) hash = (hash ^ b) * 0x100000001b3;
        return hash;
    }

    /// <summary>Value <paramref name="index"/> (flat, row-major) of the tensor named <paramref name="name"/>.</summary>
    public static float Value(string name, int scaleLog2, long index) => Value(Seed(name), MathF.ScaleB(1f, scaleLog2 - 23), index);

    /// <summary>Values [<paramref name="start"/>, start + destination.Length) of the tensor named <paramref name="name"/>.</summary>
    public static void Fill(string name, int scaleLog2, long start, Span<float> destination)
    {
        ulong seed = Seed(name);
        float unit = MathF.ScaleB(1f, scaleLog2 - 23);
        for (int i = 0; i < destination.Length; i++) destination[i] = Value(seed, unit, start + i);
    }

    /// <summary>Generates the tensor on first request; the view stays valid until <see cref="Release"/> or disposal.</summary>
    public bool TryGetTensor(string name, out TensorView tensor)
    {
        if (!_described.Value.ByName.TryGetValue(name, out var info))
        {
            tensor = default;
            return false;
        }
        NativeBuffer buffer;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_generated.TryGetValue(name, out buffer!))
            {
                buffer = Generate(info);
                _generated[name] = buffer;
            }
        }
        tensor = new TensorView(name, TensorDType.F32, info.ShapeArray.ToArray(), (byte*)buffer.Pointer, buffer.ByteLength, Description);
        return true;
    }

    /// <summary>Frees a generated tensor (it is made again if asked for): loading a full-size model this way holds a
    /// few tensors at a time, not a float32 copy of the whole model.</summary>
    public void Release(string name)
    {
        lock (_gate)
        {
            if (_generated.Remove(name, out var buffer)) buffer.Dispose();
        }
    }

    /// <summary>Frees every generated tensor.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            foreach (var buffer in _generated.Values) buffer.Dispose();
            _generated.Clear();
        }
    }

    private static SyntheticTensor Projection(string name, long outputs, long inputs) =>
        new(name, [outputs, inputs], ProjectionScaleLog2(inputs));

    /// <summary>Fills a new buffer in blocks, in parallel: a full-size embedding has hundreds of millions of values.</summary>
    private static NativeBuffer Generate(SyntheticTensor info)
    {
        long count = info.ElementCount;
        var buffer = new NativeBuffer(count * sizeof(float));
        float* data = (float*)buffer.Pointer;
        long blocks = (count + FillBlock - 1) / FillBlock;
        Parallel.For(0L, blocks, block =>
        {
            long start = block * FillBlock;
            int length = (int)Math.Min(FillBlock, count - start);
            Fill(info.Name, info.ScaleLog2, start, new Span<float>(data + start, length));
        });
        return buffer;
    }

    private static float Value(ulong seed, float unit, long index)
    {
        ulong z = seed + (ulong)(index + 1) * 0x9E3779B97F4A7C15;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        z ^= z >> 31;
        long k = (long)(z >> 40) - 8388608;
        return k * unit;
    }
}
