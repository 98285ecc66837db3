using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>The 512-bit repack of <see cref="QuantizedMatMul"/>.</summary>
public static unsafe partial class QuantizedMatMul
{
    /// <summary>
    /// The index vectors of the 16 × 8 transpose of 32-bit groups (<see cref="RepackWide{TBlock}"/>): three stages of
    /// two-source permutes (<c>vpermt2d</c>), each exchanging one register bit with one lane bit, the last stage also
    /// putting the lanes in row order. Element (row i, group g) starts in register i / 2, lane (i mod 2)·8 + g (a
    /// 64-byte load holds two rows) and ends in register g, lane i. Stage s pairs registers k and k + 2^s; its first
    /// index gives register k, its second register k + 2^s. Built by following the elements, and checked to be the
    /// same for every pair of a stage.
    /// </summary>
    private static readonly Vector512<int>[] s_transpose = BuildTranspose();

    /// <summary>Register and lane of element (row i, group g) after stage s (−1: the loaded order), as (register, lane).</summary>
    private static (int Register, int Lane) Place(int stage, int row, int g)
    {
        int i0 = row & 1, i1 = row >> 1 & 1, i2 = row >> 2 & 1, i3 = row >> 3 & 1;
        int g0 = g & 1, g1 = g >> 1 & 1, g2 = g >> 2 & 1;
        return stage switch
        {
            -1 => (i3 << 2 | i2 << 1 | i1, i0 << 3 | g),
            0 => (i3 << 2 | i2 << 1 | g0, i0 << 3 | g2 << 2 | g1 << 1 | i1),
            1 => (i3 << 2 | g1 << 1 | g0, i0 << 3 | g2 << 2 | i2 << 1 | i1),
            _ => (g, row),
        };
    }

    private static Vector512<int>[] BuildTranspose()
    {
        var indices = new Vector512<int>[6];
        for (int stage = 0; stage < 3; stage++)
        {
            // Where each element is before and after this stage: element id row·8 + g.
            var before = new int[8, 16];
            var after = new int[8, 16];
            for (int row = 0; row < GroupRows; row++)
            {
                for (int g = 0; g < 8; g++)
                {
                    var (r0, l0) = Place(stage - 1, row, g);
                    var (r1, l1) = Place(stage, row, g);
                    before[r0, l0] = after[r1, l1] = row * 8 + g;
                }
            }
            int bit = 1 << stage;
            for (int half = 0; half < 2; half++)
            {
                int[]? index = null;
                for (int k = 0; k < 8; k++)
                {
                    if ((k & bit) != 0) continue;
                    var candidate = new int[16];
                    for (int lane = 0; lane < 16; lane++)
                    {
                        int element = after[k | half * bit, lane], found = -1;
                        for (int j = 0; j < 16 && found < 0; j++)
                        {
                            if (before[k, j] == element) found = j;
                            else if (before[k | bit, j] == element) found = 16 + j;
                        }
                        candidate[lane] = found >= 0 ? found : throw new InvalidOperationException($"transpose stage {stage}: element {element} is in neither register");
                    }
                    if (index != null && !index.AsSpan().SequenceEqual(candidate))
                        throw new InvalidOperationException($"transpose stage {stage}: the pairs need different permutes");
                    index = candidate;
                }
                indices[stage * 2 + half] = Vector512.Create(index!);
            }
        }
        return indices;
    }

    /// <summary>
    /// <see cref="Repack{TBlock}"/> with 512-bit vectors for a group whose first row starts a panel: each panel's block
    /// (four rows) is two 64-byte vectors of two rows each (Q8_0: as stored, made unsigned; Q4_0: the nibbles split and
    /// each row's low and high halves put together), then the sixteen rows are transposed in three stages of
    /// <c>vpermt2d</c> (<see cref="s_transpose"/>). Panels past <paramref name="rows"/> repeat the last one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void RepackWide<TBlock>(WeightMatrix matrix, int first, int rows, int block, int count, byte* group)
        where TBlock : struct, IQuantizedBlock
    {
        const int n = QuantizedLayout.PanelRows;
        int cols = matrix.Cols, blocks = cols / QuantizedLayout.BlockSize, scaleBytes = QuantizedLayout.ScaleBytes(cols);
        int blockBytes = n * TBlock.QuantBytes;
        long panelBytes = scaleBytes + (long)blocks * blockBytes;
        int lastPanel = (rows - 1) / n;
        byte* panel0 = (byte*)matrix.Data + first / n * panelBytes;
        byte* p0 = panel0, p1 = panel0 + Math.Min(1, lastPanel) * panelBytes, p2 = panel0 + Math.Min(2, lastPanel) * panelBytes, p3 = panel0 + Math.Min(3, lastPanel) * panelBytes;
        Vector512<int> a0 = s_transpose[0], a1 = s_transpose[1], b0 = s_transpose[2], b1 = s_transpose[3], c0 = s_transpose[4], c1 = s_transpose[5];
        for (int b = block; b < block + count; b++, group += GroupBlockBytes)
        {
            long at = scaleBytes + (long)b * blockBytes;
            Load<TBlock>(p0 + at, out var r0, out var r1);
            Load<TBlock>(p1 + at, out var r2, out var r3);
            Load<TBlock>(p2 + at, out var r4, out var r5);
            Load<TBlock>(p3 + at, out var r6, out var r7);

            // Stage 0 pairs registers k, k + 1; stage 1 k, k + 2; stage 2 k, k + 4.
            Vector512<int> t0 = Avx512F.PermuteVar16x32x2(r0, a0, r1), t1 = Avx512F.PermuteVar16x32x2(r0, a1, r1);
            Vector512<int> t2 = Avx512F.PermuteVar16x32x2(r2, a0, r3), t3 = Avx512F.PermuteVar16x32x2(r2, a1, r3);
            Vector512<int> t4 = Avx512F.PermuteVar16x32x2(r4, a0, r5), t5 = Avx512F.PermuteVar16x32x2(r4, a1, r5);
            Vector512<int> t6 = Avx512F.PermuteVar16x32x2(r6, a0, r7), t7 = Avx512F.PermuteVar16x32x2(r6, a1, r7);
            Vector512<int> u0 = Avx512F.PermuteVar16x32x2(t0, b0, t2), u2 = Avx512F.PermuteVar16x32x2(t0, b1, t2);
            Vector512<int> u1 = Avx512F.PermuteVar16x32x2(t1, b0, t3), u3 = Avx512F.PermuteVar16x32x2(t1, b1, t3);
            Vector512<int> u4 = Avx512F.PermuteVar16x32x2(t4, b0, t6), u6 = Avx512F.PermuteVar16x32x2(t4, b1, t6);
            Vector512<int> u5 = Avx512F.PermuteVar16x32x2(t5, b0, t7), u7 = Avx512F.PermuteVar16x32x2(t5, b1, t7);
            int* g = (int*)group;
            const int v = VectorBytes / sizeof(int);
            Avx512F.PermuteVar16x32x2(u0, c0, u4).Store(g);
            Avx512F.PermuteVar16x32x2(u1, c0, u5).Store(g + v);
            Avx512F.PermuteVar16x32x2(u2, c0, u6).Store(g + 2 * v);
            Avx512F.PermuteVar16x32x2(u3, c0, u7).Store(g + 3 * v);
            Avx512F.PermuteVar16x32x2(u0, c1, u4).Store(g + 4 * v);
            Avx512F.PermuteVar16x32x2(u1, c1, u5).Store(g + 5 * v);
            Avx512F.PermuteVar16x32x2(u2, c1, u6).Store(g + 6 * v);
            Avx512F.PermuteVar16x32x2(u3, c1, u7).Store(g + 7 * v);

            long scale = (long)b * n * sizeof(ushort);
            var bits = Vector256.Create(*(ulong*)(p0 + scale), *(ulong*)(p1 + scale), *(ulong*)(p2 + scale), *(ulong*)(p3 + scale)).AsUInt16();
            (Avx512F.ConvertToVector512Int32(bits) << 16).AsSingle().Store((float*)(group + ScalesAt));
        }
    }

    /// <summary>A panel's block at <paramref name="q"/> as two vectors of two rows each (rows 0, 1 and rows 2, 3), each
    /// row's 32 unsigned bytes in column order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Load<TBlock>(byte* q, out Vector512<int> rows01, out Vector512<int> rows23)
        where TBlock : struct, IQuantizedBlock
    {
        if (typeof(TBlock) == typeof(Q8_0Block))
        {
            var flip = Vector512.Create((byte)0x80);
            rows01 = (Vector512.Load(q) ^ flip).AsInt32();
            rows23 = (Vector512.Load(q + 64) ^ flip).AsInt32();
        }
        else if (typeof(TBlock) == typeof(Q4_0Block))
        {
            // Row i's 16 bytes are 128-bit lane i: its low nibbles are columns 0..15, its high nibbles 16..31.
            var packed = Vector512.Load(q).AsUInt32();
            var nibble = Vector512.Create(0x0F0F0F0Fu);
            var low = (packed & nibble).AsInt64();
            var high = ((packed >> 4) & nibble).AsInt64();
            rows01 = Avx512F.PermuteVar8x64x2(low, Vector512.Create(0L, 1, 8, 9, 2, 3, 10, 11), high).AsInt32();
            rows23 = Avx512F.PermuteVar8x64x2(low, Vector512.Create(4L, 5, 12, 13, 6, 7, 14, 15), high).AsInt32();
        }
        else
        {
            throw new NotSupportedException($"no 512-bit repack for {typeof(TBlock).Name}");
        }
    }
}
