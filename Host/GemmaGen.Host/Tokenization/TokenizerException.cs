namespace GemmaGen;

/// <summary>
/// A tokenizer model that cannot be loaded: a missing or unreadable file, a file that is not a SentencePiece
/// model, or a SentencePiece model that is not Gemma-style. The message names the file and the problem.
/// </summary>
public sealed class TokenizerException : Exception
{
    /// <summary>Creates an exception with a message that names the file and the problem.</summary>
    public TokenizerException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message that names the file and the problem, and its cause.</summary>
    public TokenizerException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
