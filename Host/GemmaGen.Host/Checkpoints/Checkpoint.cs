using System.Text.Json;
using GemmaGen.Kernels;
using GemmaGen.Specs;

namespace GemmaGen;

/// <summary>
/// A Hugging Face checkpoint directory: <c>config.json</c> and either <c>model.safetensors</c> or the shards named
/// by <c>model.safetensors.index.json</c>, all memory-mapped. Tensor dtypes come from the safetensors headers,
/// never from the config's <c>torch_dtype</c>.
/// </summary>
public sealed class Checkpoint : ITensorSource, IDisposable
{
    /// <summary>The config file of a checkpoint directory.</summary>
    public const string ConfigFileName = "config.json";

    /// <summary>The weights file of an unsharded checkpoint.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>The index of a sharded checkpoint: <c>{"metadata": {...}, "weight_map": {"tensor": "shard file"}}</c>.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly Dictionary<string, SafetensorsFile> _tensorFiles;

    private Checkpoint(string directory, Gemma2Config config, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> tensorFiles)
    {
        Directory = directory;
        Config = config;
        Files = files;
        _tensorFiles = tensorFiles;
    }

    /// <summary>The checkpoint directory, as given to <see cref="Open"/>.</summary>
    public string Directory { get; }

    /// <summary>The directory: where the tensors come from, for messages.</summary>
    public string Description => Directory;

    /// <summary>The parsed <c>config.json</c>.</summary>
    public Gemma2Config Config { get; }

    /// <summary>The safetensors files: one, or every shard the index names (in order of first mention).</summary>
    public IReadOnlyList<SafetensorsFile> Files { get; }

    /// <summary>Every tensor name, across shards.</summary>
    public IEnumerable<string> TensorNames => _tensorFiles.Keys;

    /// <summary>Opens a checkpoint directory: parses its config and maps its safetensors files.</summary>
    /// <exception cref="CheckpointException">A file is missing or malformed, or the config is invalid.</exception>
    public static Checkpoint Open(string directory)
    {
        if (!System.IO.Directory.Exists(directory))
        {
            throw new CheckpointException(File.Exists(directory)
                ? $"{directory}: is a file; expected a checkpoint directory holding {ConfigFileName} and {SingleFileName}"
                : $"{directory}: checkpoint directory does not exist");
        }
        string configPath = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(configPath))
            throw new CheckpointException($"{directory}: no {ConfigFileName} (a checkpoint directory holds {ConfigFileName} and {SingleFileName} or {IndexFileName})");
        var config = LoadConfig(configPath);

        string singlePath = Path.Combine(directory, SingleFileName);
        string indexPath = Path.Combine(directory, IndexFileName);
        if (File.Exists(singlePath))
        {
            var file = SafetensorsFile.Open(singlePath);
            return new Checkpoint(directory, config, [file], file.Tensors.ToDictionary(t => t.Name, _ => file));
        }
        if (File.Exists(indexPath))
            return OpenSharded(directory, config, indexPath);
        throw new CheckpointException($"{directory}: no {SingleFileName} or {IndexFileName}: the checkpoint has no weights");
    }

    /// <summary>Reads and parses a <c>config.json</c> file.</summary>
    /// <exception cref="CheckpointException">The file is missing or unreadable, or the config is invalid; the message
    /// has one line per problem, <c>path(line,col): GEMMAGEN0xx: message</c>.</exception>
    public static Gemma2Config LoadConfig(string path)
    {
        if (!File.Exists(path)) throw new CheckpointException($"{path}: config file does not exist");
        CheckpointFiles.RequireRegularFile(path, message => new CheckpointException(message));
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"{path}: cannot read the config: {e.Message}", e);
        }
        string json = CheckpointFiles.DecodeUtf8(path, bytes, 0, message => new CheckpointException(message));
        var result = SpecParser.Parse(json);
        if (result.Errors.Count > 0)
            throw new CheckpointException(string.Join(Environment.NewLine,
                result.Errors.Select(e => $"{path}({e.Line},{e.Column}): {e.Id}: {e.Message}")));
        return result.Config ?? throw new CheckpointException($"{path}: the config could not be read");
    }

    /// <summary>Finds a tensor in whichever file holds it.</summary>
    /// <exception cref="CheckpointException">The tensor exists but its dtype is not F32, BF16 or F16.</exception>
    public bool TryGetTensor(string name, out TensorView tensor)
    {
        if (_tensorFiles.TryGetValue(name, out var file)) return file.TryGetTensor(name, out tensor);
        tensor = default;
        return false;
    }

    /// <summary>The loader has copied the tensor: the file that holds it gives its pages back
    /// (<see cref="SafetensorsFile.Release"/>). A name no file holds is ignored.</summary>
    /// <exception cref="ObjectDisposedException">The checkpoint was disposed.</exception>
    public void Release(string name)
    {
        if (_tensorFiles.TryGetValue(name, out var file)) file.Release(name);
    }

    /// <summary>Unmaps every file.</summary>
    public void Dispose()
    {
        foreach (var file in Files) file.Dispose();
    }

    private static Checkpoint OpenSharded(string directory, Gemma2Config config, string indexPath)
    {
        var weightMap = ReadWeightMap(indexPath);
        var files = new List<SafetensorsFile>();
        var byName = new Dictionary<string, SafetensorsFile>();
        var tensorFiles = new Dictionary<string, SafetensorsFile>();
        try
        {
            foreach (var (tensor, shard) in weightMap)
            {
                if (!byName.TryGetValue(shard, out var file))
                {
                    string shardPath = Path.Combine(directory, shard);
                    if (!File.Exists(shardPath))
                        throw new CheckpointException($"{indexPath}: shard '{shard}' (named for tensor '{tensor}') does not exist: {shardPath}");
                    file = SafetensorsFile.Open(shardPath);
                    files.Add(file);
                    byName[shard] = file;
                }
                if (!file.TryGetInfo(tensor, out _))
                    throw new CheckpointException($"{indexPath}: tensor '{tensor}' is mapped to shard '{shard}', but {file.Path} has no such tensor");
                tensorFiles[tensor] = file;
            }
            return new Checkpoint(directory, config, files, tensorFiles);
        }
        catch
        {
            foreach (var file in files) file.Dispose();
            throw;
        }
    }

    /// <summary>The index's weight_map, tensor name → shard file name, in file order.</summary>
    private static List<(string Tensor, string Shard)> ReadWeightMap(string indexPath)
    {
        CheckpointFiles.RequireRegularFile(indexPath, message => new CheckpointException(message));
        JsonDocument document;
        try
        {
            byte[] bytes = File.ReadAllBytes(indexPath);
            CheckpointFiles.RequireUtf8(indexPath, bytes, 0, message => new CheckpointException(message));
            document = JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{indexPath}: not valid JSON: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"{indexPath}: cannot read the shard index: {e.Message}", e);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{indexPath}: expected an object with a \"weight_map\" object of tensor name → shard file");
            var entries = new List<(string, string)>();
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointException($"{indexPath}: weight_map entry '{entry.Name}' is not a string; expected a shard file name");
                string shard = entry.Value.GetString()!;
                if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
                    throw new CheckpointException($"{indexPath}: weight_map entry '{entry.Name}' names '{shard}'; expected a file name in the checkpoint directory");
                entries.Add((entry.Name, shard));
            }
            if (entries.Count == 0)
                throw new CheckpointException($"{indexPath}: weight_map is empty; expected tensor name → shard file entries");
            return entries;
        }
    }
}
