using System.CommandLine;
using System.Diagnostics;
using LlmKernels.Models;
using LlmKernels.Models.Tokenization;
using LlmKernels.Models.Chat;
using LlmKernels.Models.Templates;
using Microsoft.Extensions.AI;

namespace LlmKernels.Cli;

/// <summary>
/// `llmk chat`: a multi-turn chat in the model's own chat template, the answer streamed to stdout as it comes.
/// The KV cache keeps the conversation, so each turn prefills only its new tokens. Ctrl-C stops the answer being
/// written (at the prompt it quits); /reset starts a new conversation, /exit or the end of input quits. Prompts and
/// notes go to stderr, so `llmk chat &lt; questions.txt &gt; answers.txt` keeps only the answers.
/// </summary>
internal static class ChatCommand
{
    /// <param name="input">Where the user's lines come from (default: stdin; the tests pass a reader).</param>
    public static Command Create(CliConsole io, TextReader? input = null)
    {
        var models = new ModelOptions();
        var system = new Option<string?>("--system") { Description = "A system message that starts the conversation" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens per answer at most", DefaultValueFactory = _ => 512 };
        var temperature = new Option<float?>("--temperature") { Description = "Sampling temperature; 0 is greedy (default: generation_config.json's, else greedy)" };
        var topK = new Option<int?>("--top-k") { Description = "Sample among the K most likely tokens (0: all)" };
        var topP = new Option<float?>("--top-p") { Description = "Then among the fewest whose probability reaches P (1: all)" };
        var seed = new Option<int?>("--seed") { Description = "Seed of the sampler (default: fresh, printed)" };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Keep generating past the end-of-turn token, up to --max-tokens" };
        var context = new Option<int?>("--context") { Description = "Tokens the conversation may hold (default: the model's max_position_embeddings)" };
        maxTokens.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 1) r.AddError("--max-tokens must be at least 1");
        });
        context.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is < 2) r.AddError("--context must be at least 2");
        });
        temperature.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<float?>() is float t && !(t >= 0 && float.IsFinite(t))) r.AddError("--temperature must be 0 (greedy) or more");
        });
        topK.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is < 0) r.AddError("--top-k must be 0 (all) or more");
        });
        topP.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<float?>() is float p && !(p > 0 && p <= 1)) r.AddError("--top-p must be in (0, 1]");
        });

        var command = new Command("chat", "Chat with a model in its own chat template (multi-turn, streaming)");
        models.AddTo(command);
        foreach (var option in new Option[] { system, maxTokens, temperature, topK, topP, seed, context, ignoreEos })
            command.Options.Add(option);
        command.SetAction(parse => CommandRunner.Run(io, () =>
        {
            var options = new ChatOptions
            {
                MaxOutputTokens = parse.GetValue(maxTokens),
                Temperature = parse.GetValue(temperature),
                TopK = parse.GetValue(topK),
                TopP = parse.GetValue(topP),
                Seed = parse.GetValue(seed) ?? Random.Shared.Next(),
            };
            return Run(io, input ?? Console.In, models.Choice(parse)!, models.CreateContext(parse), parse.GetValue(system), options,
                       new LlmkChatClientOptions { ContextLength = parse.GetValue(context), IgnoreEos = parse.GetValue(ignoreEos) });
        }));
        return command;
    }

    private static int Run(CliConsole io, TextReader input, ModelChoice choice, Context ctx, string? system, ChatOptions options, LlmkChatClientOptions settings)
    {
        using var _ = ctx;
        // The chat files are checked before the weights load, which can take minutes.
        ChatTemplate template;
        GenerationConfig? generation = null;
        if (choice.IsGguf)
        {
            using var file = ModelLoader.OpenGguf(choice.Location!);
            if (!file.Metadata.ContainsKey("tokenizer.ggml.model"))
                throw new CliException($"--model {choice.Location}: no tokenizer in the GGUF metadata, which chat needs to encode the conversation");
            template = LlmkChatClient.LoadChatTemplate(file, Tokenizer.FromGguf(file), ModelConfig.FromGguf(file));
        }
        else if (choice.Location is { } directory)
        {
            ModelLoader.ConfigPath(directory);   // the folder and its config.json exist
            if (!File.Exists(Path.Combine(directory, "tokenizer.json")))
                throw new CliException($"--model {directory}: no tokenizer.json, which chat needs to encode the conversation");
            (template, generation) = LlmkChatClient.LoadChatFiles(directory);
        }
        else template = TinyModels.CreateChatTemplate();

        using var loaded = ModelLoader.Load(ctx, choice, io);
        using var client = new LlmkChatClient(loaded.Model, loaded.Tokenizer!, template,
            new LlmkChatClientOptions { ModelId = loaded.Name, Generation = generation, ContextLength = settings.ContextLength, IgnoreEos = settings.IgnoreEos });
        io.Note($"chat with {loaded.Name}: context {client.Session.Capacity} tokens, seed {options.Seed}. " +
                "/reset starts over, /exit (or end of input) quits, Ctrl-C stops an answer.");

        var history = new List<ChatMessage>();
        if (system is { Length: > 0 }) history.Add(new ChatMessage(ChatRole.System, system));
        var answering = new Answering();
        ConsoleCancelEventHandler onCancel = (_, e) => e.Cancel = answering.Stop();
        Console.CancelKeyPress += onCancel;
        try
        {
            while (true)
            {
                io.Err.Profile.Out.Writer.Write("> ");
                io.Err.Profile.Out.Writer.Flush();
                string? line = input.ReadLine();
                if (line is null || line.Trim() is "/exit" or "/quit") break;
                line = line.Trim();
                if (line.Length == 0) continue;
                if (line == "/reset")
                {
                    history.RemoveAll(m => m.Role != ChatRole.System);
                    client.Session.Reset();
                    io.Note("a new conversation");
                    continue;
                }
                if (line.StartsWith('/'))
                {
                    io.Note($"unknown command {line}; /reset starts over, /exit quits");
                    continue;
                }
                history.Add(new ChatMessage(ChatRole.User, line));
                if (Answer(io, client, history, options, answering) is { } answer) history.Add(answer);
                else history.RemoveAt(history.Count - 1);
            }
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        return 0;
    }

    /// <summary>Streams one answer; null when the turn failed (the user's message is then dropped).</summary>
    private static ChatMessage? Answer(CliConsole io, LlmkChatClient client, List<ChatMessage> history, ChatOptions options, Answering answering)
    {
        var output = io.OutWriter;
        var text = new System.Text.StringBuilder();
        ChatResponseUpdate? last = null;
        var clock = Stopwatch.StartNew();
        using var cancel = answering.Begin();
        try
        {
            RunAsync().GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            output.WriteLine();
            output.Flush();
            io.Note($"[stopped after {clock.Elapsed.TotalSeconds:F1} s]");
            return new ChatMessage(ChatRole.Assistant, text.ToString());   // what was said stays in the conversation
        }
        catch (Exception e) when (e is TemplateException or ArgumentException)
        {
            bool full = e.Message.Contains("the context holds", StringComparison.Ordinal);
            io.Error(e.Message + (full ? " (/reset starts a new conversation)" : ""));
            return null;
        }
        finally
        {
            answering.End();
        }
        output.WriteLine();
        output.Flush();
        var usage = last?.Contents.OfType<UsageContent>().FirstOrDefault()?.Details;
        long prompt = usage?.InputTokenCount ?? 0, reused = usage?.CachedInputTokenCount ?? 0, generated = usage?.OutputTokenCount ?? 0;
        double seconds = clock.Elapsed.TotalSeconds;
        string stop = last?.FinishReason == ChatFinishReason.Length ? "length limit" : "end of turn";
        io.Note($"[{generated} tokens in {seconds:F2} s ({generated / Math.Max(seconds, 1e-9):F1} tok/s); prompt {prompt} tokens, " +
                $"{reused} of them from the cache; stopped: {stop}]");
        return new ChatMessage(ChatRole.Assistant, text.ToString());

        async Task RunAsync()
        {
            await foreach (var update in client.GetStreamingResponseAsync(history, options, cancel.Token).ConfigureAwait(false))
            {
                output.Write(update.Text);
                output.Flush();
                text.Append(update.Text);
                last = update;
            }
        }
    }

    /// <summary>The answer being written, if any, so that Ctrl-C can stop it.</summary>
    internal sealed class Answering
    {
        private CancellationTokenSource? _current;

        public CancellationTokenSource Begin()
        {
            var source = new CancellationTokenSource();
            Volatile.Write(ref _current, source);
            return source;
        }

        public void End() => Volatile.Write(ref _current, null);

        /// <summary>Stops the answer being written; false when there is none (Ctrl-C at the prompt then quits).</summary>
        public bool Stop()
        {
            var current = Volatile.Read(ref _current);
            if (current is null) return false;
            try
            {
                current.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The answer ended as the key was pressed.
            }
            return true;
        }
    }
}
