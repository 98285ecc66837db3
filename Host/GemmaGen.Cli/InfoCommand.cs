using System.CommandLine;
using GemmaGen.Kernels;
using GemmaGen.Specs;

namespace GemmaGen.Cli;

/// <summary>
/// <c>gemmagen info --model DIR</c>: the config, which compiled spec runs it (or that the reference path will, and
/// how to compile a spec), the tensors with their dtypes and bytes, and the memory a run needs against the memory
/// available. Runs the checks of <c>run</c> (<see cref="LoadPlan"/>); reads only headers and the tokenizer.
/// </summary>
internal static class InfoCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Option<string>("--model") { Description = ModelSourceOptions.Description, HelpName = "DIR|FILE.gguf" };
        var tensors = new Option<bool>("--tensors") { Description = "List every tensor" };
        var command = new Command("info", "Describe a checkpoint: config, compiled spec, tensors, memory needed");
        command.Options.Add(model);
        command.Options.Add(tensors);
        command.SetAction(parse => Program.Guard(stderr, () =>
        {
            string directory = parse.GetValue(model) ?? BuiltInModel.Directory;
            if (GgufCheckpoint.FindModelFile(directory) is { } gguf) return DescribeGguf(gguf, parse.GetValue(tensors), stdout, stderr);
            using var checkpoint = Checkpoint.Open(directory);
            var c = checkpoint.Config;
            // The checks `run` makes before loading, from the same routine; a model too large is a warning here,
            // since the figures below are for choosing --quant and --context.
            string tokenizer = Path.Combine(directory, GemmaModel.TokenizerFileName);
            var (loaded, problem) = TryTokenizer(() => File.Exists(tokenizer) ? GemmaTokenizer.Load(tokenizer) : null, stderr);
            var plan = LoadPlan.Create(c, checkpoint, tokenizer: loaded);
            Program.Warn(stderr, plan.Warnings);
            stdout.WriteLine($"checkpoint   {Path.GetFullPath(directory)}");
            WriteConfig(stdout, c);
            var spec = CompiledModelRegistry.Find(c.Shape);
            if (spec != null)
            {
                stdout.WriteLine($"runs on      compiled {spec.ClassName}");
            }
            else
            {
                stdout.WriteLine("runs on      reference (no compiled spec has this layer shape)");
                stdout.WriteLine("             to compile one, add to a project that references GemmaGen:");
                stdout.WriteLine($"               <GemmaSpec Include=\"{Path.Combine(Path.GetFullPath(directory), "config.json")}\" ClassName=\"MyGemma\" />");
            }
            stdout.WriteLine($"tokenizer    {(problem != null ? $"{tokenizer}, unusable ({Unusable})" : File.Exists(tokenizer) ? tokenizer : "none (text input and output need tokenizer.model)")}");

            var all = checkpoint.Files.SelectMany(f => f.Tensors.Select(t => (File: f, Tensor: t))).ToList();
            long fileBytes = all.Sum(t => t.Tensor.ByteLength);
            var byDType = all.GroupBy(t => t.Tensor.DType).Select(g => $"{g.Key} {g.Count()} tensors {Bytes(g.Sum(t => t.Tensor.ByteLength))}");
            stdout.WriteLine($"tensors      {all.Count} in {checkpoint.Files.Count} file(s), {Bytes(fileBytes)}: {string.Join("; ", byDType)}");
            WriteMemory(stdout, stderr, c, checkpoint, plan);
            if (parse.GetValue(tensors))
            {
                foreach (var (file, tensor) in all)
                    stdout.WriteLine($"  {tensor.Name,-56} {tensor.DType,-5} [{string.Join(", ", tensor.Shape)}] {Bytes(tensor.ByteLength)}  {Path.GetFileName(file.Path)}");
            }
            return Program.Success;
        }));
        return command;
    }

    /// <summary>The lines that describe a config, for a checkpoint and a GGUF file alike.</summary>
    private static void WriteConfig(TextWriter stdout, Gemma2Config c)
    {
        stdout.WriteLine($"layers       {c.NumHiddenLayers} ({LayerSchedule.LocalLayers(c.NumHiddenLayers)} local with window {c.SlidingWindow}, {LayerSchedule.GlobalLayers(c.NumHiddenLayers)} global)");
        stdout.WriteLine($"hidden       {c.HiddenSize}, intermediate {c.IntermediateSize}, vocabulary {c.VocabSize}");
        stdout.WriteLine($"attention    {c.NumAttentionHeads} query heads / {c.NumKeyValueHeads} kv heads of {c.HeadDim}, query_pre_attn_scalar {c.QueryPreAttnScalar}");
        stdout.WriteLine($"soft-caps    attention {Cap(c.AttnLogitSoftcapping)}, final {Cap(c.FinalLogitSoftcapping)}");
        stdout.WriteLine($"rope theta   {c.RopeTheta}, rms eps {c.RmsNormEps}, context {c.MaxPositionEmbeddings}");
        stdout.WriteLine($"eos ids      {string.Join(", ", c.EosTokenIds)}");
    }

    /// <summary>The memory lines: what a run needs as loaded, and with each --quant.</summary>
    private static void WriteMemory(TextWriter stdout, TextWriter stderr, Gemma2Config c, ITensorSource source, LoadPlan plan)
    {
        stdout.WriteLine($"memory       weights {Bytes(plan.WeightBytes)} ({plan.FormatNames}) + KV cache {Bytes(plan.KvCacheBytes)} at {plan.MaxContext} positions + buffers {Bytes(plan.BufferBytes)} = {Bytes(plan.RequiredBytes)}");
        var converted = WeightFormat.All
            .Select(f => $"{f.Name} {Bytes(LoadPlan.Create(c, source, new GemmaModelOptions { Format = f }, available: plan.AvailableBytes).RequiredBytes)}");
        stdout.WriteLine($"             with --quant: {string.Join(", ", converted)} (weights + KV cache + buffers)");
        stdout.WriteLine($"available    {(plan.AvailableBytes is { } available ? Bytes(available) : "unknown")} (MemAvailable, or the cgroup's memory limit if lower)");
        if (plan.MemoryShortfall is { } shortfall) Program.Warn(stderr, [shortfall]);
    }

    /// <summary>
    /// <c>info</c> of a GGUF file: the config derived from its metadata, the compiled spec that serves it, each
    /// tensor type with its count, the tokenizer and chat template, and the memory a run needs (quantized blocks are
    /// held as stored).
    /// </summary>
    private static int DescribeGguf(string path, bool listTensors, TextWriter stdout, TextWriter stderr)
    {
        using var gguf = GgufCheckpoint.Open(path);
        var c = gguf.Config;
        var file = gguf.File;
        var (tokenizer, problem) = TryTokenizer(gguf.LoadTokenizer, stderr);
        var plan = LoadPlan.Create(c, gguf, tokenizer: tokenizer);
        Program.Warn(stderr, plan.Warnings);
        stdout.WriteLine($"gguf         {Path.GetFullPath(path)} (GGUF v{file.Version}, {(file.Metadata.TryGetString("general.name", out string name) ? name : "no general.name")})");
        WriteConfig(stdout, c);
        stdout.WriteLine($"derived      from the {GgufConfig.Architecture}.* keys; query_pre_attn_scalar {(c.NumHiddenLayers == GgufConfig.Gemma27BBlockCount ? "embedding_length / head_count (block_count 46, llama.cpp's 27B)" : "key_length (the head width)")}; norms stored as 1 + w");
        var spec = CompiledModelRegistry.Find(c.Shape);
        stdout.WriteLine(spec != null
            ? $"runs on      compiled {spec.ClassName}"
            : "runs on      reference (no compiled spec has this layer shape; a GemmaSpec compiles one from a config.json with the values above)");
        var byType = file.Tensors.GroupBy(t => t.Type).OrderBy(g => g.Key.Id)
            .Select(g => $"{g.Key.Name} x{g.Count()}{(GgufCheckpoint.Supports(g.Key) ? "" : " (not supported)")}");
        stdout.WriteLine($"tensors      {file.Tensors.Count}, {Bytes(file.Tensors.Sum(t => t.ByteLength))}: {string.Join(", ", byType)}");
        foreach (var unmapped in gguf.UnmappedTensors) stderr.WriteLine($"warning: {path}: tensor '{unmapped.Name}' has no role in a Gemma 2 model and is not read");
        stdout.WriteLine(problem != null ? $"tokenizer    tokenizer.ggml.*, unusable ({Unusable})"
            : tokenizer is null
            ? "tokenizer    none (the file has no tokenizer.ggml.tokens; text input and output need one)"
            : $"tokenizer    {tokenizer.VocabSize} tokens from tokenizer.ggml.*, bos {tokenizer.BosId}, eos {tokenizer.EosId}, add_bos {(tokenizer.AddBosToken ? "true" : "false")}; chat template: "
              + (tokenizer.ChatTemplate is null ? "none" : tokenizer.HasGemmaChatTemplate ? "Gemma's (<start_of_turn>/<end_of_turn>)" : "not Gemma's turn format (chat uses Gemma's)"));
        WriteMemory(stdout, stderr, c, gguf, plan);
        if (listTensors)
        {
            foreach (var t in file.Tensors)
                stdout.WriteLine($"  {t.Name,-28} {t.TypeName,-5} [{string.Join(", ", t.Shape)}] {Bytes(t.ByteLength)}  {GgufCheckpoint.HuggingFaceName(t.Name) ?? "(unused)"}");
        }
        return Program.Success;
    }

    /// <summary>What an unusable tokenizer leaves a model good for, for the tokenizer line.</summary>
    private const string Unusable = "see the warning; text input and output need a usable one, token ids (generate, logits) and bench run without";

    /// <summary>
    /// The tokenizer <paramref name="load"/> reads, or null and the reason it is unusable (written to
    /// <paramref name="stderr"/> as a warning): <c>info</c> describes a model whose tokenizer cannot be used, since
    /// the token-id commands and <c>bench</c> run it, where <c>run</c> and <c>chat</c> refuse it with the same message.
    /// </summary>
    private static (GemmaTokenizer? Tokenizer, string? Problem) TryTokenizer(Func<GemmaTokenizer?> load, TextWriter stderr)
    {
        try
        {
            return (load(), null);
        }
        catch (TokenizerException e)
        {
            Program.Warn(stderr, [e.Message]);
            return (null, e.Message);
        }
    }

    private static string Cap(double? cap) => cap?.ToString() ?? "off";

    internal static string Bytes(long bytes) => bytes switch
    {
        long.MaxValue => "more than 8 EiB",
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{bytes / (double)(1L << 10):F1} KiB",
        _ => $"{bytes} B",
    };
}
