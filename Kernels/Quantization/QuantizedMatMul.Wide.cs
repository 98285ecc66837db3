using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>The 512-bit repack of <see cref="QuantizedMatMul"/>.</summary>
public static unsafe partial class QuantizedMatMul
{
    /// <summary>The rows of a group repacked by <see cref="RepackWide{TBlock}"/> in lane order: lane i holds row
    /// WideOrder[i] (two 4×4 transposes within 128-bit lanes interleave the rows so).</summary>
    internal static ReadOnlySpan<int> WideOrder => [0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15];

    /// <summary>The inverse of <see cref="WideOrder"/>: row j is in lane WideRows[j].</summary>
    private static ReadOnlySpan<int> WideRows => [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15];

    /// <summary>Per 128-bit lane L, the 4×4 transpose of 32-bit elements: tj[L] = (r0[L][j], r1[L][j], r2[L][j], r3[L][j]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x4(Vector512<int> r0, Vector512<int> r1, Vector512<int> r2, Vector512<int> r3,
        out Vector512<int> t0, out Vector512<int> t1, out Vector512<int> t2, out Vector512<int> t3)
    {
        var a = Avx512F.UnpackLow(r0, r1).AsInt64();
        var b = Avx512F.UnpackHigh(r0, r1).AsInt64();
        var c = Avx512F.UnpackLow(r2, r3).AsInt64();
        var d = Avx512F.UnpackHigh(r2, r3).AsInt64();
        t0 = Avx512F.UnpackLow(a, c).AsInt32();
        t1 = Avx512F.UnpackHigh(a, c).AsInt32();
        t2 = Avx512F.UnpackLow(b, d).AsInt32();
        t3 = Avx512F.UnpackHigh(b, d).AsInt32();
    }

    /// <summary>
    /// <see cref="Repack{TBlock}"/> with 512-bit vectors for a group whose first row starts a panel: each panel's block
    /// (four rows) is two 64-byte vectors of two rows each (Q8_0: as stored, made unsigned; Q4_0: the nibbles split and
    /// each row's low and high halves put together), then each half of the group is transposed within 128-bit lanes
    /// (<c>vpunpck</c>) and the lanes holding one group of columns are put together (<c>vshufi32x4</c>): 24 one-source
    /// or in-lane shuffles per block instead of two-source permutes. The lanes hold the rows in <see cref="WideOrder"/>,
    /// the scales too. Panels past <paramref name="rows"/> repeat the last one.
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
        var order = Vector512.Create(WideOrder);
        for (int b = block; b < block + count; b++, group += GroupBlockBytes)
        {
            long at = scaleBytes + (long)b * blockBytes;
            TBlock.UnsignedPanel(p0 + at, out var r0, out var r1);
            TBlock.UnsignedPanel(p1 + at, out var r2, out var r3);
            TBlock.UnsignedPanel(p2 + at, out var r4, out var r5);
            TBlock.UnsignedPanel(p3 + at, out var r6, out var r7);

            // Per 128-bit lane a 4×4 transpose of each half (rows 0..7: r0..r3, rows 8..15: r4..r7): t·j, u·j hold in lane
            // L group 4(L mod 2) + j of four rows (those of lane L of the four registers), then the lanes of each group
            // put together.
            Transpose4x4(r0, r1, r2, r3, out var t0, out var t1, out var t2, out var t3);
            Transpose4x4(r4, r5, r6, r7, out var u0, out var u1, out var u2, out var u3);
            int* g = (int*)group;
            const int v = VectorBytes / sizeof(int);
            Avx512F.Shuffle4x128(t0, u0, 0x88).Store(g);
            Avx512F.Shuffle4x128(t1, u1, 0x88).Store(g + v);
            Avx512F.Shuffle4x128(t2, u2, 0x88).Store(g + 2 * v);
            Avx512F.Shuffle4x128(t3, u3, 0x88).Store(g + 3 * v);
            Avx512F.Shuffle4x128(t0, u0, 0xDD).Store(g + 4 * v);
            Avx512F.Shuffle4x128(t1, u1, 0xDD).Store(g + 5 * v);
            Avx512F.Shuffle4x128(t2, u2, 0xDD).Store(g + 6 * v);
            Avx512F.Shuffle4x128(t3, u3, 0xDD).Store(g + 7 * v);

            long scale = (long)b * n * sizeof(ushort);
            var bits = Vector256.Create(*(ulong*)(p0 + scale), *(ulong*)(p1 + scale), *(ulong*)(p2 + scale), *(ulong*)(p3 + scale)).AsUInt16();
            Avx512F.PermuteVar16x32((Avx512F.ConvertToVector512Int32(bits) << 16).AsSingle(), order).Store((float*)(group + ScalesAt));
        }
    }
}
