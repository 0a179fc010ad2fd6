using System.CommandLine;
using System.Diagnostics;
using LlmKernels.Models;
using Spectre.Console;

namespace LlmKernels.Cli;

/// <summary>
/// `llmk bench`: prefill and decode tokens/s of a model (the built-in tiny-llama by default). Each repeat runs
/// a random prompt of --prompt-tokens tokens into an empty cache (prefill), then --decode-tokens single-token
/// steps (decode); warm-up repeats are discarded and the table shows the median and the range of the rest.
/// </summary>
internal static class BenchCommand
{
    public static Command Create(CliConsole io)
    {
        var models = new ModelOptions();
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length of the prefill", DefaultValueFactory = _ => 128 };
        var decodeTokens = new Option<int>("--decode-tokens") { Description = "Decode steps after the prefill", DefaultValueFactory = _ => 32 };
        var repeats = new Option<int>("--repeats") { Description = "Measured repeats (median reported)", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Unmeasured repeats first", DefaultValueFactory = _ => 1 };
        var seed = new Option<int>("--seed") { Description = "Seed of the random prompt", DefaultValueFactory = _ => 1 };
        foreach (var (option, min) in new[] { (promptTokens, 1), (decodeTokens, 0), (repeats, 1), (warmup, 0) })
            option.Validators.Add(r =>
            {
                if (r.GetValueOrDefault<int>() < min) r.AddError($"{option.Name} must be at least {min}");
            });

        var command = new Command("bench", "Prefill and decode tokens/s of a model");
        models.AddTo(command);
        foreach (var option in new Option[] { promptTokens, decodeTokens, repeats, warmup, seed })
            command.Options.Add(option);
        command.SetAction(parse => CommandRunner.Run(io, () =>
            Run(io, models.Choice(parse)!, models.CreateContext(parse), parse.GetValue(promptTokens), parse.GetValue(decodeTokens),
                parse.GetValue(repeats), parse.GetValue(warmup), parse.GetValue(seed))));
        return command;
    }

    private static int Run(CliConsole io, ModelChoice choice, Context ctx, int promptTokens, int decodeTokens, int repeats, int warmup, int seed)
    {
        using var _ = ctx;
        using var loaded = ModelLoader.Load(ctx, choice, io);
        var model = loaded.Model;
        int capacity = promptTokens + decodeTokens;
        if (capacity > model.Config.MaxPositionEmbeddings)
            throw new CliException($"--prompt-tokens {promptTokens} + --decode-tokens {decodeTokens} exceed the model's " +
                                   $"max_position_embeddings {model.Config.MaxPositionEmbeddings}");
        var rng = new Random(seed);
        var prompt = Enumerable.Range(0, promptTokens).Select(_ => rng.Next(model.Config.VocabSize)).ToArray();
        using var cache = model.CreateCache(capacity);

        var logits = new float[model.Config.VocabSize];
        var prefill = new List<double>();
        var decode = new List<double>();
        for (int run = 0; run < warmup + repeats; run++)
        {
            cache.Reset();
            // Forward writes host logits, so each timing includes the device's work and the copy back.
            var clock = Stopwatch.StartNew();
            model.Forward(prompt, cache, logits);
            double prefillSeconds = clock.Elapsed.TotalSeconds;
            clock.Restart();
            for (int step = 0; step < decodeTokens; step++)
                model.Forward([Sampler.ArgMax(logits)], cache, logits);
            double decodeSeconds = clock.Elapsed.TotalSeconds;
            if (run < warmup) continue;
            prefill.Add(promptTokens / prefillSeconds);
            if (decodeTokens > 0) decode.Add(decodeTokens / decodeSeconds);
        }

        // Decode reads the weights and the cache once per token: the bandwidth that speed implies.
        var cost = new ModelCost(model.Config);
        double bytesPerToken = cost.DecodeBytesPerToken(promptTokens + decodeTokens / 2, ModelCost.ElementBytes(loaded.WeightDtype),
                                                        Tensor.ElementSize(model.ActivationDtype));
        var table = new Table().Border(TableBorder.Rounded)
            .Title(Markup.Escape($"{loaded.Name} on {ctx}, median of {repeats} after {warmup} warm-up"))
            .AddColumns("phase", "tokens", "tok/s (median)", "tok/s (min..max)", "ms/token", "GB/s read");
        table.AddRow("prefill", $"{promptTokens}", $"{Median(prefill):F1}", $"{prefill.Min():F1}..{prefill.Max():F1}",
                     $"{1e3 / Median(prefill):F3}", "");
        if (decodeTokens > 0)
            table.AddRow("decode", $"{decodeTokens}", $"{Median(decode):F1}", $"{decode.Min():F1}..{decode.Max():F1}",
                         $"{1e3 / Median(decode):F3}", $"{Median(decode) * bytesPerToken / 1e9:F2}");
        io.Out.Write(table);
        return 0;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        int mid = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
