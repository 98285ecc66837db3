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

        public static string ElementType(WeightKind kind) => kind == WeightKind.F32 ? "float" : "ushort";

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
    }
}
