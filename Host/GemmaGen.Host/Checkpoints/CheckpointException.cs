namespace GemmaGen;

/// <summary>
/// A checkpoint that cannot be read: a malformed safetensors file, a bad shard index, an invalid config.json or
/// a missing file. The message names the file (and the tensor, where one is involved) and what was expected.
/// </summary>
public sealed class CheckpointException : Exception
{
    /// <summary>Creates an exception with a message that names the file and the problem.</summary>
    public CheckpointException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message that names the file and the problem, and its cause.</summary>
    public CheckpointException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
