using System.CommandLine;
using System.Diagnostics;
using LlmKernels.Interop;
using LlmKernels.Models;
using LlmKernels.Models.Gguf;
using LlmKernels.Models.Safetensors;
using LlmKernels.Models.Tokenization;
using Spectre.Console;

namespace LlmKernels.Cli;

/// <summary>The model a command runs: a Hugging Face folder or a GGUF file (<paramref name="Location"/>), or a built-in tiny preset.</summary>
internal sealed record ModelChoice(string? Location, string Preset, LlmkDtype? Quantize = null)
{
    public string Name => Location ?? Preset;

    /// <summary>Whether <see cref="Location"/> names a GGUF file (ends in .gguf and is no folder).</summary>
    public bool IsGguf => Location is { } path && LlamaModel.IsGguf(path);

    /// <summary>config.json of the folder, the GGUF file's metadata, or the preset's configuration.</summary>
    public ModelConfig LoadConfig()
    {
        if (Location is null) return TinyModels.Config(Preset);
        if (!IsGguf) return ModelConfig.Load(ModelLoader.ConfigPath(Location));
        using var file = ModelLoader.OpenGguf(Location);
        return ModelConfig.FromGguf(file);
    }
}

/// <summary>The options that pick a model and a backend, shared by generate, bench, inspect and verify.</summary>
internal sealed class ModelOptions
{
    public Option<string?> Model { get; } = new("--model")
    {
        Description = "Hugging Face model folder (config.json, model.safetensors or its index, tokenizer.json), or a GGUF file (*.gguf)",
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

    public Option<string?> Weights { get; } = new("--weights")
    {
        Description = "Quantize a folder's matrices at load, as llama.cpp does: q8_0, q4_0 or q4_k (Q4_K_M-like: the LM head in q6_k)",
    };

    /// <summary>--weights values and their dtypes.</summary>
    public static readonly IReadOnlyDictionary<string, LlmkDtype> QuantizeChoices = new Dictionary<string, LlmkDtype>
    {
        ["q8_0"] = LlmkDtype.Q8_0, ["q4_0"] = LlmkDtype.Q4_0, ["q4_k"] = LlmkDtype.Q4_K,
    };

    public ModelOptions()
    {
        Preset.AcceptOnlyFromAmong([.. TinyModels.Presets]);
        Backend.AcceptOnlyFromAmong("cpu", "cpu-reference", "cuda", "auto");
        Weights.AcceptOnlyFromAmong([.. QuantizeChoices.Keys]);
        Threads.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 0) r.AddError("--threads must be 0 (one per physical core) or more");
        });
    }

    public void AddTo(Command command, bool backend = true)
    {
        command.Options.Add(Model);
        command.Options.Add(Preset);
        command.Options.Add(Weights);
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
        var weights = parse.GetValue(Weights);
        if (weights is not null && (directory is null || LlamaModel.IsGguf(directory)))
            throw new CliException("--weights quantizes a safetensors folder at load; give --model with a folder (a GGUF file keeps its own types)");
        return new ModelChoice(directory, preset ?? TinyModels.Presets[0], weights is null ? null : QuantizeChoices[weights]);
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

    public static GgufFile OpenGguf(string path) =>
        File.Exists(path) ? GgufFile.Open(path) : throw new CliException($"--model {path}: no such file");

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
        if (choice.Location is null)
        {
            var dtype = ctx.IsCuda ? LlmkDtype.Bf16 : LlmkDtype.F32;
            loaded = new LoadedModel(TinyModels.Load(ctx, choice.Preset, presetSeed, dtype), TinyModels.CreateTokenizer(), dtype,
                                     $"{choice.Preset} (seed {presetSeed})");
        }
        else
            loaded = choice.IsGguf ? LoadGguf(ctx, choice.Location, io) : LoadDirectory(ctx, choice.Location, io, choice.Quantize);
        loaded.Model.AttentionAlgorithm = attention;
        io.Note($"loaded {loaded.Name} on {ctx} in {clock.Elapsed.TotalSeconds:F2} s: {loaded.Model.Config.ModelType}, " +
                $"weights {loaded.WeightDtype}, activations {loaded.Model.ActivationDtype}");
        return loaded;
    }

    private static LoadedModel LoadDirectory(Context ctx, string directory, CliConsole io, LlmkDtype? quantize)
    {
        var config = ModelConfig.Load(ConfigPath(directory));
        var tokenizerPath = Path.Combine(directory, "tokenizer.json");
        var tokenizer = File.Exists(tokenizerPath) ? Tokenizer.FromFile(tokenizerPath) : null;
        tokenizer?.RequireIdsBelow(config.VocabSize);
        var checkpoint = SafetensorsCheckpoint.Open(directory);
        var tensors = checkpoint.Files.SelectMany(f => f.Tensors).ToList();
        var weightDtype = tensors.GroupBy(t => t.DType).OrderByDescending(g => g.Sum(t => t.ByteLength))
                                 .Select(g => WeightSource.ToLlmk(g.Key)).FirstOrDefault() ?? LlmkDtype.F32;
        var source = WeightSource.FromCheckpoint(checkpoint);
        if (quantize is LlmkDtype q)
        {
            source = WeightSource.Quantized(source, q, config.TieWordEmbeddings);
            weightDtype = q;
        }
        return LoadWeights(ctx, config, source, tokenizer, weightDtype, tensors.Sum(t => t.ByteLength), directory, io, quantize);
    }

    private static LoadedModel LoadGguf(Context ctx, string path, CliConsole io)
    {
        var file = OpenGguf(path);
        ModelConfig config;
        Tokenizer? tokenizer;
        try
        {
            config = ModelConfig.FromGguf(file);
            tokenizer = file.Metadata.ContainsKey("tokenizer.ggml.model") ? Tokenizer.FromGguf(file) : null;
        }
        catch
        {
            file.Dispose();
            throw;
        }
        var weightDtype = file.Tensors.GroupBy(t => t.DType).OrderByDescending(g => g.Sum(t => t.ByteLength)).First().Key;
        return LoadWeights(ctx, config, WeightSource.FromGguf(file), tokenizer, weightDtype,
                           file.Tensors.Sum(t => t.ByteLength), path, io, quantize: null);
    }

    /// <summary>The model over <paramref name="source"/> (owned from here), with a progress bar on an interactive stderr.</summary>
    private static LoadedModel LoadWeights(Context ctx, ModelConfig config, WeightSource source, Tokenizer? tokenizer,
                                           LlmkDtype weightDtype, long totalBytes, string name, CliConsole io, LlmkDtype? quantize)
    {
        try
        {
            string what = ctx.IsCuda ? $"uploading weights to {ctx}" : quantize is null ? "mapping weights" : $"quantizing weights to {quantize}";
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
            return new LoadedModel(model, tokenizer, weightDtype, name);
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
            if (tensor is not null) onBytes(Tensor.ByteCount(tensor.DType, tensor.ElementCount));
            return tensor;
        }

        public override void Dispose() => inner.Dispose();
    }
}
