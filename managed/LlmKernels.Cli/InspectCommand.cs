using System.CommandLine;
using System.Globalization;
using LlmKernels.Interop;
using LlmKernels.Models;
using LlmKernels.Models.Safetensors;
using Spectre.Console;

namespace LlmKernels.Cli;

/// <summary>
/// `llmk inspect`: a model's shape and what it costs to run, from config.json alone (no weights are loaded, so
/// a folder holding only config.json works): parameters (cross-checked against the safetensors headers when
/// the folder has them), FLOPs per token, KV-cache bytes, and the decode speed a memory bandwidth allows.
/// The arithmetic is <see cref="ModelCost"/>'s.
/// </summary>
internal static class InspectCommand
{
    public static Command Create(CliConsole io)
    {
        var models = new ModelOptions();
        var context = OptionRules.OptionalNumber<int>("--context", "Context length of the FLOP and KV figures (default: min(max_position_embeddings, 4096))")
            .Require(c => c is null or >= 1, "at least 1");
        var kvDtype = new Option<string?>("--kv-dtype") { Description = "f32, f16 or bf16 (default: the weights' dtype)" };
        kvDtype.AcceptOnlyFromAmong("f32", "f16", "bf16");
        var bandwidth = new Option<double>("--bandwidth")
        {
            Description = "Memory bandwidth in GB/s for the decode ceiling (default 3350: an H100 SXM's HBM3)",
            DefaultValueFactory = _ => 3350,
        };
        bandwidth.Validators.Add(r =>
        {
            if (!(r.GetValueOrDefault<double>() > 0)) r.AddError("--bandwidth must be a positive number of GB/s");
        });

        var command = new Command("inspect", "Architecture, parameters, FLOPs per token, KV-cache size and the bandwidth bound on decode speed");
        models.AddTo(command, backend: false);
        foreach (var option in new Option[] { context, kvDtype, bandwidth })
            command.Options.Add(option);
        command.SetAction(parse => CommandRunner.Run(io, () =>
            Run(io, models.Choice(parse)!, parse.GetValue(context), parse.GetValue(kvDtype), parse.GetValue(bandwidth))));
        return command;
    }

    private static int Run(CliConsole io, ModelChoice choice, int? contextOption, string? kvDtypeName, double bandwidthGBps)
    {
        var config = choice.LoadConfig();
        var cost = new ModelCost(config);
        int context = contextOption ?? Math.Min(config.MaxPositionEmbeddings, 4096);

        // The weights' dtype: what the checkpoint holds most bytes of, else config.json's torch_dtype.
        string weightSource;
        List<(LlmkDtype? DType, string DtypeName, long Elements, long Bytes)>? tensors = null;
        if (choice.IsGguf)
        {
            using var file = ModelLoader.OpenGguf(choice.Location!);
            tensors = file.Tensors.Select(t => ((LlmkDtype?)t.DType, t.DType.ToString(), t.ElementCount, t.ByteLength)).ToList();
            weightSource = "from the GGUF file";
        }
        else if (choice.Location is { } dir && HasWeights(dir))
        {
            using var files = SafetensorsCheckpoint.Open(dir);
            tensors = files.Files.SelectMany(f => f.Tensors)
                           .Select(t => (WeightSource.ToLlmk(t.DType), SafetensorsFile.DtypeName(t.DType), t.ElementCount, t.ByteLength)).ToList();
            weightSource = "from the checkpoint";
        }
        else
            weightSource = "config.json's torch_dtype";
        var byDtype = (tensors ?? []).GroupBy(t => (t.DType, t.DtypeName)).OrderByDescending(g => g.Sum(t => t.Bytes)).ToList();
        var weightDtype = byDtype.Select(g => g.Key.DType).FirstOrDefault() ?? TorchDtype(config.TorchDtype);
        if (weightDtype is null)
        {
            weightDtype = LlmkDtype.Bf16;
            weightSource = "assumed: no torch_dtype";
        }
        var loadedDtype = weightDtype.Value; // what the checkpoint holds
        if (choice.Quantize is LlmkDtype quantized)
        {
            weightDtype = quantized;
            weightSource = $"--weights, quantized at load from {loadedDtype}";
        }
        // Quantized weights run with f32 activations and cache (the CPU path).
        var kvDtype = kvDtypeName is not null ? ParseDtype(kvDtypeName) : Tensor.IsQuantized(weightDtype.Value) ? LlmkDtype.F32 : weightDtype.Value;
        double weightBytes = Tensor.BytesPerElement(weightDtype.Value);
        int kvBytes = Tensor.ElementSize(kvDtype);

        // Two columns keep the numbers readable at 80 columns; how each is computed follows as notes.
        var table = new Table().Border(TableBorder.Rounded).Title(Markup.Escape(choice.Name))
            .AddColumn(new TableColumn("quantity").NoWrap()).AddColumn("value");
        var notes = new List<string>();
        void Row(string name, string value, string how = "")
        {
            table.AddRow(Markup.Escape(name), Markup.Escape(value));
            if (how.Length > 0) notes.Add($"{name.Trim()}: {how}");
        }

        Row("architecture", $"{config.ModelType} ({string.Join(", ", config.Architectures.DefaultIfEmpty("-"))})");
        Row("layers", $"{config.NumHiddenLayers}");
        Row("hidden / intermediate", $"{config.HiddenSize} / {config.IntermediateSize}");
        string sharing = config.NumKeyValueHeads == config.NumAttentionHeads ? "MHA"
            : config.NumKeyValueHeads == 1 ? "MQA" : $"GQA, {config.NumAttentionHeads / config.NumKeyValueHeads} query heads per kv head";
        Row("heads / kv heads / head dim", $"{config.NumAttentionHeads} / {config.NumKeyValueHeads} / {config.HeadDim} ({sharing})");
        Row("vocabulary", $"{config.VocabSize}{(config.TieWordEmbeddings ? " (LM head tied to the embedding)" : "")}");
        if (config.IsMoe) Row("experts", $"{config.NumExpertsPerTok} of {config.NumLocalExperts} per token");
        if (config.SlidingWindow is int window) Row("sliding window", $"{window}");
        Row("max positions", $"{config.MaxPositionEmbeddings}");
        Row("weights dtype", $"{weightDtype} ({weightBytes.ToString("0.####", CultureInfo.InvariantCulture)} bytes per weight, {weightSource})");

        Row("parameters", Format.Count(cost.Parameters), "embedding + LM head + layers x (q,k,v,o + MLP + norms) + final norm");
        Row("  embedding / LM head", $"{Format.Count(cost.EmbeddingParameters)} / {Format.Count(cost.LmHeadParameters)}", "vocab x hidden each");
        Row("  attention per layer", Format.Count(cost.AttentionMatmulParametersPerLayer + cost.AttentionBiasParametersPerLayer),
            "hidden x (heads + 2 kv_heads) x head_dim + heads x head_dim x hidden");
        Row("  MLP per layer", Format.Count(cost.MlpMatmulParametersPerLayer + cost.RouterParametersPerLayer + cost.MlpBiasParametersPerLayer),
            config.IsMoe ? "experts x 3 x hidden x intermediate + router" : "3 x hidden x intermediate");
        if (config.IsMoe) Row("  active per token", Format.Count(cost.ActiveParameters), "top-k experts only");
        if (tensors is not null)
        {
            long diff = tensors.Sum(t => t.Elements) - cost.Parameters;
            string configName = choice.IsGguf ? "the GGUF metadata" : "config.json";
            Row(choice.IsGguf ? "GGUF file" : "checkpoint",
                $"{tensors.Count} tensors, {Format.Count(tensors.Sum(t => t.Elements))} parameters, {Format.Bytes(tensors.Sum(t => t.Bytes))}: " +
                (diff == 0 ? $"matches {configName}" : $"differs from {configName} by {Format.Exact(diff)} parameters"));
            foreach (var g in byDtype)
                Row($"  {g.Key.DtypeName}", $"{g.Count()} tensors, {Format.Count(g.Sum(t => t.Elements))} parameters, {Format.Bytes(g.Sum(t => t.Bytes))}");
        }
        Row("weights", choice.Quantize is null ? Format.Bytes(cost.Parameters * weightBytes)
                : $"{Format.Bytes(cost.Parameters * Tensor.BytesPerElement(loadedDtype))} as stored, {Format.Bytes(cost.Parameters * weightBytes)} quantized",
            "parameters x bytes per element (norms and biases stay as stored: a few KB)");

        string c = context.ToString(CultureInfo.InvariantCulture);
        Row("FLOPs per token, matmuls", Format.Flops(cost.MatmulFlopsPerToken), "2 x weights multiplied per token");
        Row($"FLOPs per token, decode at {c}", Format.Flops(cost.DecodeFlopsPerToken(context)),
            $"+ 4 x layers x heads x head_dim x {c} keys (q.k and p.v)");
        Row($"FLOPs per token, prefill of {c}", Format.Flops(cost.PrefillFlopsPerToken(context)),
            "causal: token i sees i keys, so (n+1)/2 keys on average");
        Row($"KV cache per token ({kvDtype})", Format.Bytes(cost.KvCacheBytesPerToken(kvBytes)), "2 x layers x kv_heads x head_dim x dtype size");
        Row($"KV cache at {c}", Format.Bytes(cost.KvCacheBytes(context, kvBytes)));
        Row($"bytes read per decode token at {c}", Format.Bytes(cost.DecodeBytesPerToken(context, weightBytes, kvBytes)),
            "weights used per token + KV cache attended to");
        Row($"decode ceiling at {bandwidthGBps.ToString("0.#", CultureInfo.InvariantCulture)} GB/s",
            $"{cost.DecodeTokensPerSecondCeiling(bandwidthGBps * 1e9, context, weightBytes, kvBytes).ToString("0.0", CultureInfo.InvariantCulture)} tok/s",
            "bandwidth / bytes per token (batch 1 is memory bound)");
        io.Out.Write(table);
        foreach (var note in notes) io.Out.MarkupLine($"[grey]{Markup.Escape(note)}[/]");
        return 0;
    }

    private static bool HasWeights(string directory) =>
        File.Exists(Path.Combine(directory, SafetensorsCheckpoint.IndexFileName)) || Directory.EnumerateFiles(directory, "*.safetensors").Any();

    private static LlmkDtype? TorchDtype(string? name) => name switch
    {
        "float32" => LlmkDtype.F32,
        "float16" => LlmkDtype.F16,
        "bfloat16" => LlmkDtype.Bf16,
        _ => null,
    };

    private static LlmkDtype ParseDtype(string name) => name switch
    {
        "f32" => LlmkDtype.F32,
        "f16" => LlmkDtype.F16,
        _ => LlmkDtype.Bf16,
    };
}
