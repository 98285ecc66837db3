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
    }

    /// <summary>The element types of the embedding rows the generated code scales (GemmaGen.Kernels.WeightFormat.F32
    /// and BF16).</summary>
    internal enum WeightKind
    {
        F32,
        BF16,
    }
}
