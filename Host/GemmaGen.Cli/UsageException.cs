namespace GemmaGen.Cli;

/// <summary>Bad command-line input that parsing alone cannot catch (a malformed token list, conflicting options,
/// a token id outside the vocabulary): reported as <c>error: message</c> with exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
