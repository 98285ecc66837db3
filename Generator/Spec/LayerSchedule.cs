namespace GemmaGen.Specs
{
    /// <summary>
    /// Gemma 2's attention schedule, decided here once for the generated kernels, the reference decoder, the KV
    /// cache and <c>info</c>: even layers attend through the sliding window, odd layers to every earlier position.
    /// </summary>
#if GEMMAGEN_RUNTIME
    public
#else
    internal
#endif
    static class LayerSchedule
    {
        /// <summary>Whether <paramref name="layer"/> attends through the sliding window (even layers).</summary>
        public static bool IsLocal(int layer) => (layer & 1) == 0;

        /// <summary>Local layers among the first <paramref name="layers"/>; counted in closed form, so an absurd config
        /// of a billion layers is sized at once.</summary>
        public static long LocalLayers(long layers) => (layers + 1) / 2;

        /// <summary>Global layers among the first <paramref name="layers"/>.</summary>
        public static long GlobalLayers(long layers) => layers / 2;
    }
}
