using System.Globalization;
using GemmaGen.Kernels;
using GemmaGen.Specs;

namespace GemmaGen;

/// <summary>
/// A Gemma 2 GGUF file (as llama.cpp's converter and quantizer write it) as a checkpoint: its config (see
/// <see cref="GgufConfig"/>) and its tensors under their Hugging Face names (<see cref="CheckpointNames"/>), with the
/// shapes reversed to Hugging Face's outermost-first order. Every tensor is served as a view of the mapped file: F32,
/// F16, BF16, and the quantized blocks as stored (<see cref="TensorDType.Q8_0"/>, <see cref="TensorDType.Q4_0"/>,
/// <see cref="TensorDType.Q4_K"/>, <see cref="TensorDType.Q5_K"/>, <see cref="TensorDType.Q6_K"/>, which the loader keeps
/// in their <see cref="WeightFormat.AsStored"/> formats). Norm vectors are stored as 1 + w
/// (<see cref="NormsIncludeOne"/>). Any other tensor type is a <see cref="WeightLoadException"/> naming the tensor.
/// </summary>
public sealed unsafe class GgufCheckpoint : ITensorSource, IDisposable
{
    /// <summary>The extension of a GGUF file.</summary>
    public const string Extension = ".gguf";

    private readonly Dictionary<string, GgufTensor> _byName;

    private GgufCheckpoint(GgufFile file, Gemma2Config config, Dictionary<string, GgufTensor> byName)
    {
        File = file;
        Config = config;
        _byName = byName;
    }

    /// <summary>The file's path, as given to <see cref="Open"/>.</summary>
    public string Path => File.Path;

    /// <summary>The file: where the tensors come from, for messages.</summary>
    public string Description => File.Path;

    /// <summary>The GGUF container.</summary>
    public GgufFile File { get; }

    /// <summary>The config derived from the metadata.</summary>
    public Gemma2Config Config { get; }

    /// <summary>The Hugging Face names of the tensors the file holds (tensors of no known role are left out; see
    /// <see cref="UnmappedTensors"/>).</summary>
    public IEnumerable<string> TensorNames => _byName.Keys;

    /// <summary>GGUF stores every norm vector as its multiplier 1 + w.</summary>
    public bool NormsIncludeOne => true;

    /// <summary>The file's tensors that have no Hugging Face name (and are not read).</summary>
    public IEnumerable<GgufTensor> UnmappedTensors => File.Tensors.Where(t => HuggingFaceName(t.Name) is null);

    /// <summary>Whether a path names a GGUF file by its extension.</summary>
    public static bool IsGgufPath(string path) => path.EndsWith(Extension, StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether the loader can read tensors of <paramref name="type"/>: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K and
    /// Q6_K, all as stored.</summary>
    public static bool Supports(GgmlType type) => StoredAs(type) != null;

    /// <summary>The <see cref="TensorDType"/> a tensor of <paramref name="type"/> is served in as stored (a view of the
    /// file), or null when GemmaGen does not read the type.</summary>
    internal static TensorDType? StoredAs(GgmlType type) =>
        type == GgmlType.F32 ? TensorDType.F32 :
        type == GgmlType.F16 ? TensorDType.F16 :
        type == GgmlType.BF16 ? TensorDType.BF16 :
        type == GgmlType.Q8_0 ? TensorDType.Q8_0 :
        type == GgmlType.Q4_0 ? TensorDType.Q4_0 :
        type == GgmlType.Q4_K ? TensorDType.Q4_K :
        type == GgmlType.Q5_K ? TensorDType.Q5_K :
        type == GgmlType.Q6_K ? TensorDType.Q6_K : null;

    /// <summary>The types <see cref="Supports"/> accepts, for messages.</summary>
    public static string SupportedTypeNames => string.Join(", ", GgmlType.All.Values.Where(Supports).Select(t => t.Name));

    /// <summary>
    /// The GGUF file a model path names: the path itself when it is a <c>.gguf</c> file, the one <c>.gguf</c> file of
    /// a directory that has no <c>config.json</c>; null when the path is a Hugging Face checkpoint directory (it has a
    /// <c>config.json</c> and no <c>.gguf</c> file) or does not exist (the checkpoint loader then says so).
    /// </summary>
    /// <exception cref="CheckpointException">The path is ambiguous or names neither: a file that is not <c>.gguf</c>,
    /// a <c>.gguf</c> path that does not exist, a directory with several <c>.gguf</c> files, with both a
    /// <c>config.json</c> and a <c>.gguf</c> file, or with neither.</exception>
    public static string? FindModelFile(string path)
    {
        if (System.IO.File.Exists(path))
        {
            if (IsGgufPath(path)) return path;
            throw new CheckpointException(
                $"{path}: is a file but not a GGUF file (*{Extension}); a model is a .gguf file or a Hugging Face checkpoint directory ({Checkpoint.ConfigFileName} and {Checkpoint.SingleFileName})");
        }
        if (!Directory.Exists(path))
        {
            if (IsGgufPath(path)) throw new CheckpointException($"{path}: GGUF file does not exist");
            return null;
        }
        string[] ggufFiles = [.. Directory.EnumerateFiles(path).Where(IsGgufPath).Order(StringComparer.Ordinal)];
        bool hasConfig = System.IO.File.Exists(System.IO.Path.Combine(path, Checkpoint.ConfigFileName));
        string names = string.Join(", ", ggufFiles.Select(System.IO.Path.GetFileName));
        return (hasConfig, ggufFiles.Length) switch
        {
            (true, 0) => null,
            (true, _) => throw new CheckpointException(
                $"{path}: holds both {Checkpoint.ConfigFileName} (a Hugging Face checkpoint) and GGUF file(s) {names}; give the .gguf file itself, or a directory holding only one of them"),
            (false, 1) => ggufFiles[0],
            (false, 0) => throw new CheckpointException(
                $"{path}: no {Checkpoint.ConfigFileName} and no {Extension} file; a model directory holds a Hugging Face checkpoint ({Checkpoint.ConfigFileName} and {Checkpoint.SingleFileName}) or exactly one GGUF file"),
            _ => throw new CheckpointException(
                $"{path}: holds {ggufFiles.Length} GGUF files ({names}); give the one to run as the file itself"),
        };
    }

    /// <summary>The tokenizer of the file's <c>tokenizer.ggml.*</c> keys (see <see cref="GemmaTokenizer.FromGguf"/>),
    /// or null when it has no <c>tokenizer.ggml.tokens</c>.</summary>
    /// <exception cref="TokenizerException">The tokenizer keys are malformed or not a Gemma-style vocabulary.</exception>
    public GemmaTokenizer? LoadTokenizer() => File.Metadata.Contains("tokenizer.ggml.tokens") ? GemmaTokenizer.FromGguf(File) : null;

    /// <summary>Opens a GGUF file and derives its config.</summary>
    /// <exception cref="CheckpointException">The file is missing or malformed, is not a Gemma 2 file, its metadata
    /// does not describe a valid config, or a tensor the config needs is missing.</exception>
    public static GgufCheckpoint Open(string path)
    {
        var file = GgufFile.Open(path);
        try
        {
            var config = GgufConfig.Read(file);
            var byName = new Dictionary<string, GgufTensor>(StringComparer.Ordinal);
            foreach (var tensor in file.Tensors)
            {
                if (HuggingFaceName(tensor.Name) is { } name) byName[name] = tensor;
            }
            foreach (var required in RequiredTensors(config.NumHiddenLayers))
            {
                if (!file.TryGetTensor(required, out _))
                    throw new CheckpointException($"{path}: no tensor '{required}' ({HuggingFaceName(required)}); a {GgufConfig.Architecture} file with {config.NumHiddenLayers} layers ({GgufConfig.Architecture}.block_count) has it");
            }
            return new GgufCheckpoint(file, config, byName);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>The GGUF tensor names a Gemma 2 file of <paramref name="layers"/> layers must have.</summary>
    public static IEnumerable<string> RequiredTensors(int layers)
    {
        yield return "token_embd.weight";
        for (int l = 0; l < layers; l++)
        {
            foreach (var (gguf, _) in LayerTensors) yield return $"blk.{l.ToString(CultureInfo.InvariantCulture)}.{gguf}.weight";
        }
        yield return "output_norm.weight";
    }

    /// <summary>llama.cpp's name of each per-layer tensor, and how its Hugging Face name is formed.</summary>
    private static readonly (string Gguf, Func<LayerNames, string> HuggingFace)[] LayerTensors =
    [
        ("attn_norm", n => n.InputNorm),
        ("attn_q", n => n.QProj),
        ("attn_k", n => n.KProj),
        ("attn_v", n => n.VProj),
        ("attn_output", n => n.OProj),
        ("post_attention_norm", n => n.PostAttentionNorm),
        ("ffn_norm", n => n.PreFeedforwardNorm),
        ("ffn_gate", n => n.GateProj),
        ("ffn_up", n => n.UpProj),
        ("ffn_down", n => n.DownProj),
        ("post_ffw_norm", n => n.PostFeedforwardNorm),
    ];

    /// <summary>The Hugging Face name of a GGUF tensor (<c>blk.3.attn_q.weight</c> is
    /// <c>model.layers.3.self_attn.q_proj.weight</c>), or null when it has no role in a Gemma 2 model.</summary>
    public static string? HuggingFaceName(string ggufName)
    {
        switch (ggufName)
        {
            case "token_embd.weight": return CheckpointNames.Embed;
            case "output_norm.weight": return CheckpointNames.FinalNorm;
            case "output.weight": return CheckpointNames.LmHead;
        }
        const string prefix = "blk.", suffix = ".weight";
        if (!ggufName.StartsWith(prefix, StringComparison.Ordinal) || !ggufName.EndsWith(suffix, StringComparison.Ordinal)) return null;
        int dot = ggufName.IndexOf('.', prefix.Length);
        if (dot < 0 || !int.TryParse(ggufName.AsSpan(prefix.Length, dot - prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int layer)) return null;
        var role = ggufName.AsSpan(dot + 1, ggufName.Length - dot - 1 - suffix.Length);
        foreach (var (gguf, huggingFace) in LayerTensors)
        {
            if (role.SequenceEqual(gguf)) return huggingFace(CheckpointNames.Layer(layer));
        }
        return null;
    }

    /// <summary>The GGUF tensor behind a Hugging Face name.</summary>
    public bool TryGetSourceTensor(string name, out GgufTensor tensor) => _byName.TryGetValue(name, out tensor!);

    /// <summary>The element type a tensor is served in; null when the file has no such tensor.</summary>
    /// <exception cref="WeightLoadException">The tensor's type is not supported.</exception>
    public TensorDType? DTypeOf(string name)
    {
        if (!_byName.TryGetValue(name, out var info)) return null;
        return StoredAs(info.Type) ?? throw Unsupported(name, info);
    }

    private WeightLoadException Unsupported(string name, GgufTensor info) => new(
        $"{Path}: tensor '{info.Name}' ({name}) has ggml type {info.TypeName}, which GemmaGen does not load; supported types: {SupportedTypeNames}");

    /// <summary>Finds a tensor by its Hugging Face name: a view of the mapped file, its blocks as stored.</summary>
    /// <exception cref="WeightLoadException">The tensor's type is not supported.</exception>
    public bool TryGetTensor(string name, out TensorView tensor)
    {
        tensor = default;
        if (!_byName.TryGetValue(name, out var info)) return false;
        var dtype = StoredAs(info.Type) ?? throw Unsupported(name, info);
        // GgufFile checked the tensor's bytes (whole blocks per row) lie inside the file.
        tensor = new TensorView(name, dtype, [.. info.Shape.Reverse()], (byte*)File.GetAddress(info.Name), info.ByteLength,
            $"{Path} (GGUF tensor '{info.Name}', {info.TypeName})");
        return true;
    }

    /// <summary>The loader has copied the tensor: its pages of the file leave the process (<see cref="GgufFile.Release"/>);
    /// every tensor is a view of the file, so there is nothing else to free. Views handed out stay readable. A name the
    /// file does not hold is ignored.</summary>
    /// <exception cref="ObjectDisposedException">The file was unmapped.</exception>
    public void Release(string name)
    {
        if (_byName.TryGetValue(name, out var info)) File.Release(info.Name);
    }

    /// <summary>Unmaps the file.</summary>
    public void Dispose() => File.Dispose();
}
