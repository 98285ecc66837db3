namespace GemmaGen.Generator
{
    /// <summary>One hardware vector size the generated code may run on; chosen at run time by the JIT-folded
    /// <c>VectorNNN.IsHardwareAccelerated</c> checks, widest first.</summary>
    internal sealed class VectorWidth
    {
        public static readonly VectorWidth V512 = new VectorWidth("Vector512", "Vector256", 16);
        public static readonly VectorWidth V256 = new VectorWidth("Vector256", "Vector128", 8);
        public static readonly VectorWidth V128 = new VectorWidth("Vector128", "Vector64", 4);

        /// <summary>Widest first.</summary>
        public static readonly VectorWidth[] All = { V512, V256, V128 };

        private VectorWidth(string type, string halfType, int lanes)
        {
            Type = type;
            HalfType = halfType;
            Lanes = lanes;
        }

        /// <summary>The static vector class (<c>Vector512</c>).</summary>
        public string Type { get; }

        /// <summary>The vector class of half the width, which holds <see cref="Lanes"/> bf16 values.</summary>
        public string HalfType { get; }

        /// <summary>float32 lanes.</summary>
        public int Lanes { get; }

        /// <summary>The float vector type (<c>Vector512&lt;float&gt;</c>).</summary>
        public string Float => Type + "<float>";

        /// <summary>An expression loading <see cref="Lanes"/> weights at <paramref name="address"/> as floats.</summary>
        public string LoadWeights(WeightKind kind, string address) => kind == WeightKind.F32
            ? $"{Type}.Load({address})"
            : $"({Type}.WidenLower({HalfType}.Load({address}).To{Type}Unsafe()) << 16).AsSingle()";

        /// <summary>An expression loading <see cref="Lanes"/> int8 at <paramref name="address"/> as floats times
        /// <paramref name="scale"/> (a float expression): one sign-extending load (<c>vpmovsxbd</c>) at 512 and 256 bits,
        /// whose branches run only where AVX-512 / AVX2 do; two widenings at 128.</summary>
        public string LoadQ8(string address, string scale)
        {
            string ints = Lanes == 16 ? $"Avx512F.ConvertToVector512Int32(Vector128.Load({address}))"
                : Lanes == 8 ? $"Avx2.ConvertToVector256Int32({address})"
                : $"Vector128.WidenLower(Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(int*)({address})).AsSByte()))";
            return $"{Type}.ConvertToSingle({ints}) * {Type}.Create({scale})";
        }
    }

    /// <summary>The element formats the generated matrix kernels are compiled for (GemmaGen.Kernels.WeightFormat.F32 and
    /// BF16; every other format runs its own kernels), and the KV cache elements the attention kernels read (those two
    /// and Q8_0).</summary>
    internal enum WeightKind
    {
        F32,
        BF16,

        /// <summary>Only a KV cache's (GemmaGen.Kernels.KvPrecision.Q8_0): blocks of 32 int8 with a bf16 scale each,
        /// dequantized as loaded.</summary>
        Q8_0,
    }
}
