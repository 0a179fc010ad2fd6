using System.CommandLine;
using System.Diagnostics;
using LlmKernels.Models;

namespace LlmKernels.Cli;

/// <summary>
/// `llmk generate`: loads a model, streams the prompt and its continuation to stdout as the tokens come, then
/// prints the prefill and decode speeds to stderr. Without --model it runs the built-in tiny-llama.
/// </summary>
internal static class GenerateCommand
{
    public static Command Create(CliConsole io)
    {
        var models = new ModelOptions();
        var prompt = new Option<string>("--prompt") { Description = "Text to continue", DefaultValueFactory = _ => "Once upon a time" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens to generate at most", DefaultValueFactory = _ => 64 }
            .Require(n => n >= 1, "at least 1");
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature; 0 is greedy", DefaultValueFactory = _ => 0.8f }
            .Require(t => t >= 0 && float.IsFinite(t), "a finite value >= 0 (0 is greedy)");
        var topK = new Option<int>("--top-k") { Description = "Sample among the K most likely tokens (0: all)", DefaultValueFactory = _ => 40 }
            .Require(k => k >= 0, "0 (all tokens) or more");
        var topP = new Option<float>("--top-p") { Description = "Then among the fewest whose probability reaches P (1: all)", DefaultValueFactory = _ => 0.95f }
            .Require(p => p > 0 && p <= 1, "a value in (0, 1]");
        var seed = OptionRules.OptionalNumber<int>("--seed", "Seed of the sampler (default: fresh, printed)");
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Keep generating past the end-of-sequence token" };

        var command = new Command("generate", "Generate text with a Hugging Face model folder or a built-in tiny model");
        models.AddTo(command);
        foreach (var option in new Option[] { prompt, maxTokens, temperature, topK, topP, seed, ignoreEos })
            command.Options.Add(option);
        command.SetAction(parse => CommandRunner.Run(io, () =>
        {
            var sampler = new Sampler(parse.GetValue(temperature), parse.GetValue(topK), parse.GetValue(topP),
                                      parse.GetValue(seed) ?? Random.Shared.Next());
            return Run(io, models.Choice(parse)!, models.CreateContext(parse), parse.GetValue(prompt)!, parse.GetValue(maxTokens),
                       sampler, parse.GetValue(ignoreEos));
        }));
        return command;
    }

    private static int Run(CliConsole io, ModelChoice choice, Context ctx, string prompt, int maxTokens, Sampler sampler, bool ignoreEos)
    {
        using var _ = ctx;
        // Checked before the weights load, which can take minutes.
        if (choice.Location is { } directory && Directory.Exists(directory) && !File.Exists(Path.Combine(directory, "tokenizer.json")))
            throw new CliException($"--model {directory}: no tokenizer.json, which generate needs to encode the prompt and decode tokens");
        using var loaded = ModelLoader.Load(ctx, choice, io);
        var tokenizer = loaded.Tokenizer
            ?? throw new CliException($"--model {choice.Name}: no tokenizer (tokenizer.ggml.* metadata), which generate needs to encode the prompt and decode tokens");
        var ids = tokenizer.Encode(prompt, addSpecialTokens: true);
        if (ids.Length == 0) throw new CliException("--prompt: the prompt encodes to no tokens");
        io.Note($"seed {sampler.Seed}, temperature {sampler.Temperature}, top-k {sampler.TopK}, top-p {sampler.TopP}, prompt {ids.Length} tokens");

        var generator = ignoreEos ? new Generator(loaded.Model, tokenizer) { StopTokens = [] } : new Generator(loaded.Model, tokenizer);
        // Generate checks the prompt (token ids, length) when called, and the prompt is echoed with the first
        // token, after the prefill: a bad prompt or a model whose logits are not finite prints nothing.
        var tokens = generator.Generate(ids, maxTokens, sampler);
        var output = io.OutWriter;

        // The first token comes out of the prefill's logits; each later one costs one decode step.
        var clock = Stopwatch.StartNew();
        TimeSpan prefill = default, last = default;
        int count = 0;
        var stop = StopReason.None;
        foreach (var token in tokens)
        {
            last = clock.Elapsed;
            if (count++ == 0)
            {
                prefill = last;
                output.Write(prompt);
            }
            stop = token.Stop;
            // The end-of-sequence token ends the text; its own text ("</s>") is not part of it.
            if (stop != StopReason.EndOfSequence) output.Write(token.Text);
            output.Flush();
        }
        output.WriteLine();
        output.Flush();

        double prefillSeconds = prefill.TotalSeconds, decodeSeconds = (last - prefill).TotalSeconds;
        string decode = count > 1
            ? $"decode {count - 1} tokens in {decodeSeconds * 1e3:F1} ms ({(count - 1) / decodeSeconds:F1} tok/s)"
            : "no decode step";
        io.Note($"generated {count} tokens, stopped: {Describe(stop)}. prefill {ids.Length} tokens in {prefillSeconds * 1e3:F1} ms " +
                $"({ids.Length / prefillSeconds:F1} tok/s), {decode}");
        return 0;
    }

    private static string Describe(StopReason stop) => stop switch
    {
        StopReason.EndOfSequence => "end of sequence",
        StopReason.MaxTokens => "--max-tokens reached",
        StopReason.CacheFull => "context length reached",
        _ => stop.ToString(),
    };
}
