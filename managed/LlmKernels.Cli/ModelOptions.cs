using System.CommandLine;
using System.Diagnostics;
using LlmKernels.Interop;
using LlmKernels.Models;
using LlmKernels.Models.Safetensors;
using LlmKernels.Models.Tokenization;
using Spectre.Console;

namespace LlmKernels.Cli;

/// <summary>The model a command runs: a Hugging Face folder, or a built-in tiny preset.</summary>
internal sealed record ModelChoice(string? Directory, string Preset)
{
    public string Name => Directory ?? Preset;

    /// <summary>config.json of the folder, or the preset's configuration.</summary>
    public ModelConfig LoadConfig() => Directory is null ? TinyModels.Config(Preset) : ModelConfig.Load(ModelLoader.ConfigPath(Directory));
}

/// <summary>The options that pick a model and a backend, shared by generate, bench, inspect and verify.</summary>
internal sealed class ModelOptions
{
    public Option<string?> Model { get; } = new("--model")
    {
        Description = "Hugging Face model folder (config.json, model.safetensors or its index, tokenizer.json)",
    };

    public Option<string?> Preset { get; } = new("--preset")
    {
        Description = $"Built-in tiny model with seeded weights, no download ({string.Join(", ", TinyModels.Presets)}); the default",
    };

    public Option<string> Backend { get; } = new("--backend")
    {
        Description = "cpu (the fast kernels), cpu-reference (the plain C oracle), cuda, or auto (CUDA when a device is usable, else cpu)",
        DefaultValueFactory = _ => "auto",
    };

    public Option<int> Threads { get; } = new("--threads") { Description = "CPU threads (0: one per physical core)" };

    public ModelOptions()
    {
        Preset.AcceptOnlyFromAmong([.. TinyModels.Presets]);
        Backend.AcceptOnlyFromAmong("cpu", "cpu-reference", "cuda", "auto");
        Threads.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 0) r.AddError("--threads must be 0 (one per physical core) or more");
        });
    }

    public void AddTo(Command command, bool backend = true)
    {
        command.Options.Add(Model);
        command.Options.Add(Preset);
        if (!backend) return;
        command.Options.Add(Backend);
        command.Options.Add(Threads);
    }

    /// <summary>The chosen model; tiny-llama when neither --model nor --preset is given.</summary>
    public ModelChoice? Choice(ParseResult parse, bool defaultToPreset = true)
    {
        string? directory = parse.GetValue(Model), preset = parse.GetValue(Preset);
        if (directory is not null && preset is not null)
            throw new CliException("--model and --preset name two models; give one");
        if (directory is null && preset is null && !defaultToPreset) return null;
        return new ModelChoice(directory, preset ?? TinyModels.Presets[0]);
    }

    public Context CreateContext(ParseResult parse) => ModelLoader.CreateContext(parse.GetValue(Backend)!, parse.GetValue(Threads));
}

/// <summary>A model on a context with what came with it.</summary>
internal sealed class LoadedModel(LlamaModel model, Tokenizer? tokenizer, LlmkDtype weightDtype, string name) : IDisposable
{
    public LlamaModel Model { get; } = model;
    public Tokenizer? Tokenizer { get; } = tokenizer;
    /// <summary>The dtype of (most of) the weights: for memory-traffic estimates.</summary>
    public LlmkDtype WeightDtype { get; } = weightDtype;
    public string Name { get; } = name;

    public void Dispose() => Model.Dispose();
}

internal static class ModelLoader
{
    public static Context CreateContext(string backend, int threads)
    {
        try
        {
            return CreateContextFor(backend, threads);
        }
        catch (LlmkException e) when (e.Status == LlmkStatus.InvalidArgument)
        {
            // The only argument a user gives here is the thread count; the library holds its bound.
            throw new CliException($"--threads {threads}: {e.Message}");
        }
    }

    private static Context CreateContextFor(string backend, int threads)
    {
        switch (backend)
        {
            case "cpu":
                return Context.CreateCpu(threads);
            case "cpu-reference":
                return Context.CreateCpu(threads, LlmkCpuKernels.Reference);
            case "cuda":
                return Context.TryCreateCuda(out var reason) ?? throw new CliException($"--backend cuda: no usable CUDA device: {reason}");
            default:
                return Context.TryCreateCuda(out _) ?? Context.CreateCpu(threads);
        }
    }

    public static string ConfigPath(string directory)
    {
        if (!Directory.Exists(directory))
            throw new CliException($"--model {directory}: no such directory");
        var path = Path.Combine(directory, "config.json");
        if (!File.Exists(path))
            throw new CliException($"--model {directory}: no config.json (expected a Hugging Face model folder)");
        return path;
    }

    /// <summary>
    /// Loads <paramref name="choice"/> on <paramref name="ctx"/>. A folder's weights are mapped (CPU) or uploaded
    /// (CUDA) under a progress bar on stderr; a preset's weights come from <paramref name="presetSeed"/>, in bf16
    /// on CUDA (whose kernels take half-precision activations) and f32 on the CPU.
    /// </summary>
    public static LoadedModel Load(Context ctx, ModelChoice choice, CliConsole io, int presetSeed = 1234,
                                   LlmkAttentionAlgorithm attention = LlmkAttentionAlgorithm.Auto)
    {
        var clock = Stopwatch.StartNew();
        LoadedModel loaded;
        if (choice.Directory is null)
        {
            var dtype = ctx.IsCuda ? LlmkDtype.Bf16 : LlmkDtype.F32;
            loaded = new LoadedModel(TinyModels.Load(ctx, choice.Preset, presetSeed, dtype), TinyModels.CreateTokenizer(), dtype,
                                     $"{choice.Preset} (seed {presetSeed})");
        }
        else
            loaded = LoadDirectory(ctx, choice.Directory, io);
        loaded.Model.AttentionAlgorithm = attention;
        io.Note($"loaded {loaded.Name} on {ctx} in {clock.Elapsed.TotalSeconds:F2} s: {loaded.Model.Config.ModelType}, " +
                $"weights {loaded.WeightDtype}, activations {loaded.Model.ActivationDtype}");
        return loaded;
    }

    private static LoadedModel LoadDirectory(Context ctx, string directory, CliConsole io)
    {
        var config = ModelConfig.Load(ConfigPath(directory));
        var tokenizerPath = Path.Combine(directory, "tokenizer.json");
        var tokenizer = File.Exists(tokenizerPath) ? Tokenizer.FromFile(tokenizerPath) : null;
        tokenizer?.RequireIdsBelow(config.VocabSize);
        var checkpoint = SafetensorsCheckpoint.Open(directory);
        var tensors = checkpoint.Files.SelectMany(f => f.Tensors).ToList();
        long totalBytes = tensors.Sum(t => t.ByteLength);
        var weightDtype = tensors.GroupBy(t => t.DType).OrderByDescending(g => g.Sum(t => t.ByteLength))
                                 .Select(g => WeightSource.ToLlmk(g.Key)).FirstOrDefault() ?? LlmkDtype.F32;
        var source = WeightSource.FromCheckpoint(checkpoint);
        try
        {
            string what = ctx.IsCuda ? $"uploading weights to {ctx}" : "mapping weights";
            LlamaModel model;
            if (io.Err.Profile.Capabilities.Interactive && io.Err.Profile.Capabilities.Ansi)
            {
                model = null!;
                io.Err.Progress().AutoClear(true)
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(),
                             new RemainingTimeColumn())
                    .Start(progress =>
                    {
                        var task = progress.AddTask(Markup.Escape(what), maxValue: Math.Max(totalBytes, 1));
                        model = new LlamaModel(ctx, config, new ProgressSource(source, bytes => task.Increment(bytes)));
                        task.Value = task.MaxValue;
                    });
            }
            else
                model = new LlamaModel(ctx, config, source);
            return new LoadedModel(model, tokenizer, weightDtype, directory);
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <summary>Reports the bytes of each weight as the model takes it.</summary>
    private sealed class ProgressSource(WeightSource inner, Action<long> onBytes) : WeightSource
    {
        public override string Origin => inner.Origin;

        public override Tensor? Get(Context ctx, string name)
        {
            var tensor = inner.Get(ctx, name);
            if (tensor is not null) onBytes(tensor.ElementCount * Tensor.ElementSize(tensor.DType));
            return tensor;
        }

        public override void Dispose() => inner.Dispose();
    }
}
