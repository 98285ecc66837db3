using GemmaGen.Specs;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary>Inputs shared by the kernel tests.</summary>
public static class KernelTestData
{
    /// <summary>Lengths that exercise the scalar tails and the bodies of every vector width (4, 8 and 16 floats
    /// per Vector128/256/512), up to D of the 2B model.</summary>
    public static readonly int[] LengthValues = [1, 7, 16, 33, 64, 100, 257, 2304];

    /// <summary><see cref="LengthValues"/> as theory data.</summary>
    public static TheoryData<int> Lengths => new(LengthValues);

    /// <summary><paramref name="length"/> floats uniform in [-scale, scale), the same for a seed.</summary>
    public static float[] RandomFloats(int length, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++) values[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        return values;
    }

    /// <summary>A Gemma 2 config with the given shape and the published models' other settings.</summary>
    public static Gemma2Config Config(
        int vocab = 11, int hidden = 8, int intermediate = 6, int layers = 2, int heads = 4, int kvHeads = 2, int headDim = 4,
        int slidingWindow = 4096) =>
        new(
            ModelType: "gemma2",
            VocabSize: vocab,
            HiddenSize: hidden,
            IntermediateSize: intermediate,
            NumHiddenLayers: layers,
            NumAttentionHeads: heads,
            NumKeyValueHeads: kvHeads,
            HeadDim: headDim,
            QueryPreAttnScalar: headDim,
            SlidingWindow: slidingWindow,
            AttnLogitSoftcapping: 50,
            FinalLogitSoftcapping: 30,
            RmsNormEps: 1e-6,
            RopeTheta: 10000,
            MaxPositionEmbeddings: 8192,
            HiddenActivation: "gelu_pytorch_tanh",
            BosTokenId: 2,
            EosTokenIds: EquatableArray<int>.Create(1, 107),
            PadTokenId: 0);
}
