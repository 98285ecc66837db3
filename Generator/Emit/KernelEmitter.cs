using System;
using System.Linq;

namespace GemmaGen.Generator
{
    /// <summary>
    /// Writes the SIMD kernels of one shape: every trip count is a constant, vector loops are unrolled by a fixed
    /// factor (head-sized loops completely), each kernel has one branch per vector width (widest first, folded
    /// by the JIT) and a scalar fallback, and scalar tail code only where a dimension is not a multiple of the
    /// vector width.
    /// </summary>
    internal static class KernelEmitter
    {
        /// <summary>Vectors per iteration of a long element-wise loop.</summary>
        private const int Unroll = 8;

        /// <summary>A loop of at most this many vectors is written out completely.</summary>
        private const int FullUnrollLimit = 16;

        public static string ElementType(WeightKind kind) => kind == WeightKind.F32 ? "float" : kind == WeightKind.Q8_0 ? "sbyte" : "ushort";

        /// <summary>Elements of a Q8_0 block (GemmaGen.Kernels.KvCache.Q8Block).</summary>
        public const int Q8Block = 32;

        /// <summary>Writes an if / else-if chain with one branch per vector width that fits <paramref name="n"/>, widest
        /// first, and the scalar fallback as the final else.</summary>
        private static void Dispatch(CodeWriter w, int n, Action<VectorWidth> vector, Action scalar)
        {
            string keyword = "if";
            foreach (var width in VectorWidth.All.Where(v => v.Lanes <= n))
            {
                w.Open($"{keyword} ({width.Type}.IsHardwareAccelerated)");
                vector(width);
                w.Close();
                keyword = "else if";
            }
            if (keyword == "if")
            {
                scalar();
                return;
            }
            w.Open("else");
            scalar();
            w.Close();
        }

        /// <summary>A balanced sum of accumulators a0 .. a(n-1).</summary>
        private static string Reduce(int n)
        {
            string Range(int from, int count) => count == 1 ? $"a{from}" : $"({Range(from, count / 2)} + {Range(from + count / 2, count - count / 2)})";
            string sum = Range(0, n);
            return sum.StartsWith("(", StringComparison.Ordinal) ? sum.Substring(1, sum.Length - 2) : sum;
        }

        /// <summary>An element-wise loop over <paramref name="n"/> floats: <paramref name="vector"/> gets the width and
        /// the offset expression, <paramref name="scalar"/> the index expression.</summary>
        public static void Elementwise(CodeWriter w, int n, Func<VectorWidth, string, string[]> vector, Func<string, string[]> scalar)
        {
            Dispatch(w, n, v =>
            {
                int vectors = n / v.Lanes, tail = n % v.Lanes;
                if (vectors <= FullUnrollLimit)
                {
                    for (int i = 0; i < vectors; i++) Statements(w, vector(v, (i * v.Lanes).ToString()));
                }
                else
                {
                    int step = Unroll * v.Lanes, loop = vectors / Unroll * Unroll;
                    w.Open($"for (int i = 0; i < {loop * v.Lanes}; i += {step})");
                    for (int u = 0; u < Unroll; u++) Statements(w, vector(v, u == 0 ? "i" : $"i + {u * v.Lanes}"));
                    w.Close();
                    for (int i = loop; i < vectors; i++) Statements(w, vector(v, (i * v.Lanes).ToString()));
                }
                if (tail > 0)
                {
                    w.Open($"for (int i = {vectors * v.Lanes}; i < {n}; i++)");
                    Statements(w, scalar("i"));
                    w.Close();
                }
            }, () =>
            {
                w.Open($"for (int i = 0; i < {n}; i++)");
                Statements(w, scalar("i"));
                w.Close();
            });
        }

        private static void Statements(CodeWriter w, string[] lines)
        {
            if (lines.Length == 1)
            {
                w.Line(lines[0]);
                return;
            }
            w.Open();
            foreach (var line in lines) w.Line(line);
            w.Close();
        }

        /// <summary>Accumulator registers a kernel may keep live at one vector width (AVX-512 has 32 registers, narrower
        /// widths 16), leaving room for the loaded row and the broadcast weights.</summary>
        private static int AccumulatorBudget(VectorWidth v) => v.Lanes == 16 ? 24 : 12;

        /// <summary>Consecutive runs of the <paramref name="group"/> queries, each of at most
        /// <paramref name="perRun"/> (at least one).</summary>
        private static (int First, int Count)[] Runs(int group, int perRun)
        {
            perRun = Math.Max(1, Math.Min(perRun, group));
            return Enumerable.Range(0, (group + perRun - 1) / perRun)
                .Select(r => (r * perRun, Math.Min(perRun, group - r * perRun))).ToArray();
        }

        public static string GroupDotName(int cols, WeightKind kind = WeightKind.F32) => kind == WeightKind.F32 ? $"GroupDot_{cols}" : $"GroupDot_{kind}_{cols}";

        /// <summary>Element <paramref name="index"/> of <paramref name="array"/> (of <paramref name="kind"/>) as float; a Q8_0
        /// element times its block's scale in <paramref name="scales"/>.</summary>
        private static string Scalar(WeightKind kind, string array, string index, string scales) => kind switch
        {
            WeightKind.F32 => $"{array}[{index}]",
            WeightKind.BF16 => $"BFloat16.ToSingle({array}[{index}])",
            _ => $"({array}[{index}] * BFloat16.ToSingle({scales}[({index}) / {Q8Block}]))",
        };

        /// <summary>Loads one vector of <paramref name="kind"/> at <paramref name="pointer"/> + <paramref name="offset"/>
        /// (a constant or an expression) as floats; a Q8_0 vector times the scale of its block in
        /// <paramref name="scales"/> (a vector never straddles blocks: 32 is a multiple of every width).</summary>
        private static string LoadRow(VectorWidth v, WeightKind kind, string pointer, string offset, string scales)
        {
            if (kind != WeightKind.Q8_0) return v.LoadWeights(kind, $"{pointer} + {offset}");
            string block = int.TryParse(offset, out int constant) ? (constant / Q8Block).ToString() : $"({offset}) / {Q8Block}";
            return v.LoadQ8(offset == "0" ? pointer : $"{pointer} + {offset}", $"BFloat16.ToSingle({scales}[{block}])");
        }

        /// <summary>Score <paramref name="index"/> of query <paramref name="g"/>, whose row starts g·stride into scores.</summary>
        private static string Score(int g, string index)
        {
            string row = g == 0 ? "" : g == 1 ? "stride" : $"{g} * stride";
            return $"scores[{(row.Length == 0 ? index : index == "0" ? row : $"{row} + {index}")}]";
        }

        /// <summary>
        /// scores[g·stride] = q_g·k for the <paramref name="group"/> query heads q_g = q + g·cols that share the key k:
        /// each key vector is loaded once and multiplied with every query of a run (as many queries as the registers
        /// hold accumulators for). Per query the products are summed exactly as <see cref="Dot"/> sums them (the same
        /// accumulators, the same reduction, the same tail), so the scores are those of one dot product per query.
        /// </summary>
        public static void GroupDot(CodeWriter w, int cols, int group, WeightKind kind = WeightKind.F32)
        {
            string keys = kind == WeightKind.F32 ? "key" : kind == WeightKind.Q8_0 ? "Q8_0 key (dequantized as loaded: its int8 times the bf16 scale of their block, ks)" : $"{kind} key (widened to float32 as loaded)";
            w.Line($"/// <summary>scores[g·stride] = q_g·k for the {group} query heads q_g = q + g·{cols} of one kv head and one {keys}: every key");
            w.Line("/// vector loaded once for the group, each query summed as Dot sums it.</summary>");
            w.Line("[MethodImpl(MethodImplOptions.AggressiveInlining)]");
            string scales = kind == WeightKind.Q8_0 ? "ushort* ks, " : "";
            w.Open($"internal static void {GroupDotName(cols, kind)}(float* q, {ElementType(kind)}* k, {scales}float* scores, long stride)");
            Dispatch(w, cols, v =>
            {
                int lanes = v.Lanes, vectors = cols / lanes, tail = cols % lanes;
                int accumulators = Math.Min(vectors, Unroll);
                foreach (var (first, count) in Runs(group, AccumulatorBudget(v) / accumulators))
                {
                    w.Open();
                    var queries = Enumerable.Range(first, count).ToArray();
                    foreach (int g in queries)
                        for (int a = 0; a < accumulators; a++) w.Line($"var a{g}_{a} = {v.Float}.Zero;");
                    // key vector kN is unique per line: N is the vector's index, or its accumulator inside the loop
                    void Step(int acc, int name, string offset)
                    {
                        w.Line($"var k{name} = {LoadRow(v, kind, "k", offset, "ks")};");
                        foreach (int g in queries)
                            w.Line($"a{g}_{acc} = {v.Type}.MultiplyAddEstimate({v.Type}.Load(q + {(g == 0 ? offset : offset == "0" ? $"{g * cols}" : $"{g * cols} + {offset}")}), k{name}, a{g}_{acc});");
                    }
                    if (vectors <= FullUnrollLimit)
                    {
                        for (int i = 0; i < vectors; i++) Step(i % accumulators, i, (i * lanes).ToString());
                    }
                    else
                    {
                        int loopVectors = vectors / Unroll * Unroll;
                        w.Open($"for (int i = 0; i < {loopVectors * lanes}; i += {Unroll * lanes})");
                        for (int a = 0; a < Unroll; a++) Step(a, a, a == 0 ? "i" : $"i + {a * lanes}");
                        w.Close();
                        for (int i = loopVectors; i < vectors; i++) Step(i - loopVectors, i, (i * lanes).ToString());
                    }
                    foreach (int g in queries)
                    {
                        string sum = Reduce(accumulators).Replace("a", $"a{g}_");
                        w.Line($"float s{g} = {v.Type}.Sum({sum});");
                        if (tail > 0)
                            w.Line($"for (int i = {vectors * lanes}; i < {cols}; i++) s{g} += q[{g * cols} + i] * {Scalar(kind, "k", "i", "ks")};");
                        w.Line($"{Score(g, "0")} = s{g};");
                    }
                    w.Close();
                }
            }, () =>
            {
                for (int g = 0; g < group; g++)
                {
                    w.Open();
                    w.Line("float sum = 0f;");
                    w.Line($"for (int i = 0; i < {cols}; i++) sum += q[{g * cols} + i] * {Scalar(kind, "k", "i", "ks")};");
                    w.Line($"{Score(g, "0")} = sum;");
                    w.Close();
                }
            });
            w.Close();
        }

        /// <summary>o_g = Σ_n p_g[n]·v[slot(n)] for the <paramref name="group"/> query heads of one kv head, each
        /// value vector loaded once for a run of queries; the head is split into tiles that stay in registers across
        /// the whole sum. Per output element the sum runs over n in order, as for one head alone. Written inside
        /// AttendGroup, whose locals (values, scores, stride, output, firstSlot, count, ring, slot; valueScales for
        /// Q8_0) it uses.</summary>
        public static void GroupWeightedValues(CodeWriter w, int headDim, int group, WeightKind kind = WeightKind.F32)
        {
            Dispatch(w, headDim, v =>
            {
                int vectors = headDim / v.Lanes, tail = headDim % v.Lanes;
                // at most 4 queries per run: each also holds a broadcast weight
                foreach (var (first, count) in Runs(group, 4))
                {
                    // tiles of (nearly) equal size, each as wide as the accumulators allow
                    int tiles = (vectors + Math.Max(1, AccumulatorBudget(v) / count) - 1) / Math.Max(1, AccumulatorBudget(v) / count);
                    for (int tile = 0; tile < tiles; tile++)
                    {
                        int t0 = vectors * tile / tiles, t1 = vectors * (tile + 1) / tiles;
                        w.Open();
                        for (int g = first; g < first + count; g++)
                            for (int i = t0; i < t1; i++) w.Line($"var o{g}_{i} = {v.Float}.Zero;");
                        w.Line("slot = firstSlot;");
                        w.Open("for (int n = 0; n < count; n++)");
                        w.Line($"{ElementType(kind)}* value = values + (long)slot * HeadDim;");
                        if (kind == WeightKind.Q8_0) w.Line($"ushort* valueScale = valueScales + (long)slot * {headDim / Q8Block};");
                        for (int g = first; g < first + count; g++)
                            w.Line($"var p{g} = {v.Type}.Create({Score(g, "n")});");
                        for (int i = t0; i < t1; i++)
                        {
                            w.Line($"var v{i} = {LoadRow(v, kind, "value", (i * v.Lanes).ToString(), "valueScale")};");
                            for (int g = first; g < first + count; g++)
                                w.Line($"o{g}_{i} = {v.Type}.MultiplyAddEstimate(v{i}, p{g}, o{g}_{i});");
                        }
                        w.Line("if (++slot == ring) slot = 0;");
                        w.Close();
                        for (int g = first; g < first + count; g++)
                            for (int i = t0; i < t1; i++) w.Line($"o{g}_{i}.Store(output + {g * headDim + i * v.Lanes});");
                        w.Close();
                    }
                }
                if (tail > 0) ScalarWeightedValues(w, vectors * v.Lanes, headDim, group, kind);
            }, () => ScalarWeightedValues(w, 0, headDim, group, kind));
        }

        private static void ScalarWeightedValues(CodeWriter w, int from, int headDim, int group, WeightKind kind)
        {
            w.Open($"for (int g = 0; g < {group}; g++)");
            w.Open($"for (int i = {from}; i < {headDim}; i++)");
            w.Line("float sum = 0f;");
            w.Line("slot = firstSlot;");
            w.Open("for (int n = 0; n < count; n++)");
            w.Line($"sum += scores[g * stride + n] * {Scalar(kind, "values", "(long)slot * HeadDim + i", "valueScales")};");
            w.Line("if (++slot == ring) slot = 0;");
            w.Close();
            w.Line($"output[g * {headDim} + i] = sum;");
            w.Close();
            w.Close();
        }
    }
}
