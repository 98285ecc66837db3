namespace GemmaGen;

/// <summary>
/// Generation cannot go on: the model produced logits that are not finite (NaN or infinite), so no token can be
/// chosen from them. Weights that are not finite are the usual cause (a checkpoint loaded with
/// <see cref="GemmaModelOptions.CheckWeights"/> false); the session should be reset before it is used again.
/// </summary>
public sealed class GenerationException(string message) : Exception(message);
