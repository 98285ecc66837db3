namespace GemmaGen.Kernels;

/// <summary>
/// The rows of one forward pass, each a token with its sequence and position (like llama.cpp's <c>llama_batch</c>
/// with sequence ids): one prompt's prefill is many rows of one sequence, a decoding step of N conversations is N
/// rows of N sequences, and a mix of both is one batch. A sequence's rows must have consecutive positions, in row
/// order, starting at most at its <see cref="Sequence.Length"/>. Allocated once and refilled each step; adding rows
/// allocates nothing.
/// </summary>
public sealed class ForwardBatch
{
    private readonly int[] _tokens;
    private readonly int[] _positions;
    private readonly Sequence?[] _sequences;
    private readonly bool[] _logits;

    /// <param name="capacity">Rows the batch holds at most.</param>
    public ForwardBatch(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _tokens = new int[capacity];
        _positions = new int[capacity];
        _sequences = new Sequence?[capacity];
        _logits = new bool[capacity];
    }

    /// <summary>Rows the batch holds at most.</summary>
    public int Capacity => _tokens.Length;

    /// <summary>Rows in the batch.</summary>
    public int Count { get; private set; }

    /// <summary>Rows whose logits the forward pass writes, in row order.</summary>
    public int LogitRows { get; private set; }

    /// <summary>Removes every row.</summary>
    public void Clear()
    {
        Array.Clear(_sequences, 0, Count);
        Count = 0;
        LogitRows = 0;
    }

    /// <summary>Adds a row: <paramref name="token"/> of <paramref name="sequence"/> at <paramref name="position"/>;
    /// with <paramref name="logits"/> the forward pass writes its logits. Returns the row's index.</summary>
    /// <exception cref="InvalidOperationException">The batch is full.</exception>
    public int Add(Sequence sequence, int token, int position, bool logits)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (Count == Capacity) throw new InvalidOperationException($"the batch is full ({Capacity} rows)");
        int row = Count++;
        _tokens[row] = token;
        _positions[row] = position;
        _sequences[row] = sequence;
        _logits[row] = logits;
        if (logits) LogitRows++;
        return row;
    }

    /// <summary>The token of <paramref name="row"/>.</summary>
    public int Token(int row) => _tokens[row];

    /// <summary>The position of <paramref name="row"/> in its sequence.</summary>
    public int Position(int row) => _positions[row];

    /// <summary>The sequence of <paramref name="row"/>.</summary>
    public Sequence Sequence(int row) => _sequences[row]!;

    /// <summary>Whether the forward pass writes the logits of <paramref name="row"/>.</summary>
    public bool WantsLogits(int row) => _logits[row];
}
