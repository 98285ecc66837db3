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
        var model = new Option<string>("--model") { Description = "Checkpoint directory (default: the built-in demo model)", HelpName = "DIR" };
        var tensors = new Option<bool>("--tensors") { Description = "List every tensor" };
        var command = new Command("info", "Describe a checkpoint: config, compiled spec, tensors, memory needed");
        command.Options.Add(model);
        command.Options.Add(tensors);
        command.SetAction(parse => Program.Guard(stderr, () =>
        {
            string directory = parse.GetValue(model) ?? BuiltInModel.Directory;
            using var checkpoint = Checkpoint.Open(directory);
            var c = checkpoint.Config;
            // The checks `run` makes before loading, from the same routine; a model too large is a warning here,
            // since the figures below are for choosing --quant and --context.
            string tokenizer = Path.Combine(directory, GemmaModel.TokenizerFileName);
            var plan = LoadPlan.Create(c, checkpoint, tokenizer: File.Exists(tokenizer) ? GemmaTokenizer.Load(tokenizer) : null);
            Program.Warn(stderr, plan.Warnings);
            stdout.WriteLine($"checkpoint   {Path.GetFullPath(directory)}");
            stdout.WriteLine($"layers       {c.NumHiddenLayers} ({LayerSchedule.LocalLayers(c.NumHiddenLayers)} local with window {c.SlidingWindow}, {LayerSchedule.GlobalLayers(c.NumHiddenLayers)} global)");
            stdout.WriteLine($"hidden       {c.HiddenSize}, intermediate {c.IntermediateSize}, vocabulary {c.VocabSize}");
            stdout.WriteLine($"attention    {c.NumAttentionHeads} query heads / {c.NumKeyValueHeads} kv heads of {c.HeadDim}, query_pre_attn_scalar {c.QueryPreAttnScalar}");
            stdout.WriteLine($"soft-caps    attention {Cap(c.AttnLogitSoftcapping)}, final {Cap(c.FinalLogitSoftcapping)}");
            stdout.WriteLine($"rope theta   {c.RopeTheta}, rms eps {c.RmsNormEps}, context {c.MaxPositionEmbeddings}");
            stdout.WriteLine($"eos ids      {string.Join(", ", c.EosTokenIds)}");
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
            stdout.WriteLine($"tokenizer    {(File.Exists(tokenizer) ? tokenizer : "none (text input and output need tokenizer.model)")}");

            var all = checkpoint.Files.SelectMany(f => f.Tensors.Select(t => (File: f, Tensor: t))).ToList();
            long fileBytes = all.Sum(t => t.Tensor.ByteLength);
            var byDType = all.GroupBy(t => t.Tensor.DType).Select(g => $"{g.Key} {g.Count()} tensors {Bytes(g.Sum(t => t.Tensor.ByteLength))}");
            stdout.WriteLine($"tensors      {all.Count} in {checkpoint.Files.Count} file(s), {Bytes(fileBytes)}: {string.Join("; ", byDType)}");
            stdout.WriteLine($"memory       weights {Bytes(plan.WeightBytes)} ({plan.Format}) + KV cache {Bytes(plan.KvCacheBytes)} at {plan.MaxContext} positions + buffers {Bytes(plan.BufferBytes)} = {Bytes(plan.RequiredBytes)}");
            var converted = WeightFormat.All
                .Select(f => $"{f.Name} {Bytes(LoadPlan.Create(c, checkpoint, new GemmaModelOptions { Format = f }, available: plan.AvailableBytes).RequiredBytes)}");
            stdout.WriteLine($"             with --quant: {string.Join(", ", converted)} (weights + KV cache + buffers)");
            stdout.WriteLine($"available    {(plan.AvailableBytes is { } available ? Bytes(available) : "unknown")} (MemAvailable, or the cgroup's memory limit if lower)");
            if (plan.MemoryShortfall is { } shortfall) Program.Warn(stderr, [shortfall]);
            if (parse.GetValue(tensors))
            {
                foreach (var (file, tensor) in all)
                    stdout.WriteLine($"  {tensor.Name,-56} {tensor.DType,-5} [{string.Join(", ", tensor.Shape)}] {Bytes(tensor.ByteLength)}  {Path.GetFileName(file.Path)}");
            }
            return Program.Success;
        }));
        return command;
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
