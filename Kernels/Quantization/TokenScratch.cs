namespace GemmaGen.Kernels;

/// <summary>
/// A worker thread's buffers for a batched product over the block formats (<see cref="QuantizedMatMul"/>'s int8
/// inputs, <see cref="QuantizedMatVec.TokenRows{TBlock}"/>'s int16, <see cref="KQuantMatMul"/>'s int8): every token's
/// quantized input, its block scales, block starts and block halves' sums, and the current group's float sums; grown (never shrunk) to the widest matrix and largest batch
/// the thread has seen.
/// </summary>
/// <typeparam name="TInput">The quantized input's element: <see cref="sbyte"/> or <see cref="short"/>.</typeparam>
internal sealed unsafe class TokenScratch<TInput>
    where TInput : unmanaged
{
    private readonly NativeBuffer _buffer;

    private TokenScratch(int cols, int tokens)
    {
        Cols = cols;
        Tokens = tokens;
        int blocks = cols / QuantizedLayout.BlockSize;
        long input = NativeBuffer.Align((long)tokens * cols * sizeof(TInput)), perBlock = NativeBuffer.Align(2L * tokens * blocks * sizeof(float));
        long sums = NativeBuffer.Align((long)tokens * QuantizedLayout.GroupRows * sizeof(float));
        _buffer = new NativeBuffer(input + 3 * perBlock + sums);
        byte* p = (byte*)_buffer.Pointer;
        Input = (TInput*)p;
        InputScales = (float*)(p + input);
        InputStarts = (int*)(p + input + perBlock);
        InputHalves = (int*)(p + input + 2 * perBlock);
        Sums = (float*)(p + input + 3 * perBlock);
    }

    /// <summary><paramref name="scratch"/>, replaced by larger buffers when it does not fit
    /// <paramref name="cols"/> × <paramref name="tokens"/>.</summary>
    public static TokenScratch<TInput> Fit(ref TokenScratch<TInput>? scratch, int cols, int tokens)
    {
        if (scratch == null || scratch.Cols < cols || scratch.Tokens < tokens)
            scratch = new TokenScratch<TInput>(Math.Max(cols, scratch?.Cols ?? 0), Math.Max(tokens, scratch?.Tokens ?? 0));
        return scratch;
    }

    public int Cols { get; }

    public int Tokens { get; }

    /// <summary>x̂ of every token, [tokens][cols].</summary>
    public TInput* Input { get; }

    /// <summary>The input scales, [tokens][blocks], or [tokens][2·blocks] where the kernel rounds per half block
    /// (<see cref="QuantizedMatMul"/> for <see cref="QuantizedFormat.InputsPer16"/>).</summary>
    public float* InputScales { get; }

    /// <summary>Where each block's (or half block's) integer sum starts (−offset·Σ x̂), laid out as <see cref="InputScales"/>.</summary>
    public int* InputStarts { get; }

    /// <summary>Σ x̂ of each block's first and second 16 as an int16 pair, [tokens][blocks], where the kernel asks
    /// for them (<see cref="KQuantMatMul"/>).</summary>
    public int* InputHalves { get; }

    /// <summary>The current group's float sums, [tokens][<see cref="QuantizedLayout.GroupRows"/>].</summary>
    public float* Sums { get; }

    /// <summary>What the inputs hold, for the run's later chunks (<see cref="RunInput"/>).</summary>
    public RunInput Held { get; set; }
}
