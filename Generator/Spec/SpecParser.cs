namespace GemmaGen.Specs
{
    /// <summary>Reads a Gemma 2 <c>config.json</c>. (Stub: being written.)</summary>
#if GEMMAGEN_RUNTIME
    public
#else
    internal
#endif
    static class SpecParser
    {
        public static SpecParseResult Parse(string json) => throw new System.NotImplementedException();
    }

    /// <summary>A parsed config, or the errors that prevented it.</summary>
#if GEMMAGEN_RUNTIME
    public
#else
    internal
#endif
    sealed record SpecParseResult(Gemma2Config? Config, EquatableArray<SpecError> Errors);

    /// <summary>One problem in a spec: a stable id (GEMMAGEN001...), a message saying what to fix, and the
    /// 1-based line and column of the offending JSON token.</summary>
#if GEMMAGEN_RUNTIME
    public
#else
    internal
#endif
    sealed record SpecError(string Id, string Message, int Line, int Column);
}
