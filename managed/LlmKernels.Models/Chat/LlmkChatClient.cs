using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using LlmKernels.Models.Templates;
using LlmKernels.Models.Tokenization;
using Microsoft.Extensions.AI;

namespace LlmKernels.Models.Chat;

/// <summary>Settings of an <see cref="LlmkChatClient"/> beyond what each request's ChatOptions say.</summary>
public sealed class LlmkChatClientOptions
{
    /// <summary>The model id reported in ChatClientMetadata and responses (default: the folder or preset name).</summary>
    public string? ModelId { get; init; }

    /// <summary>Tokens the KV cache holds, prompt and answer together (default: the model's max_position_embeddings).</summary>
    public int? ContextLength { get; init; }

    /// <summary>Default sampling and end-of-turn ids (generation_config.json); without it answers are greedy.</summary>
    public GenerationConfig? Generation { get; init; }

    /// <summary>Ids that end an answer besides config.json's and generation_config.json's eos and the template's eos_token.</summary>
    public IReadOnlyCollection<int> StopTokens { get; init; } = [];

    /// <summary>Keep generating past the end-of-turn tokens, up to MaxOutputTokens (benchmarks, tests).</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>More variables for the chat template (date_string, ...).</summary>
    public IReadOnlyDictionary<string, object?>? TemplateVariables { get; init; }
}

/// <summary>
/// <see cref="IChatClient"/> (Microsoft.Extensions.AI) over the model runner: the model's own chat template makes the
/// prompt, the answer streams token by token, and the KV cache keeps the conversation between calls, so a follow-up
/// request whose prompt extends the previous one prefills only the new tokens (reported as
/// UsageDetails.CachedInputTokenCount). ChatOptions: Temperature, TopP, TopK, MaxOutputTokens, Seed, StopSequences,
/// Instructions and Tools (passed to the template; the answer's tool calls come back as FunctionCallContent, so
/// FunctionInvokingChatClient works on top). Cancellation is honoured between tokens. Requests run one at a time.
/// </summary>
public sealed class LlmkChatClient : IChatClient
{
    private readonly Tokenizer _tokenizer;
    private readonly ChatTemplate _template;
    private readonly LlmkChatClientOptions _options;
    private readonly GenerationSession _session;
    private readonly IDisposable? _owned;
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>A client over a loaded model; <paramref name="owned"/> (the model, its context) is disposed with the client.</summary>
    public LlmkChatClient(LlamaModel model, Tokenizer tokenizer, ChatTemplate template, LlmkChatClientOptions? options = null,
                          IDisposable? owned = null)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        _template = template ?? throw new ArgumentNullException(nameof(template));
        _options = options ?? new LlmkChatClientOptions();
        _owned = owned;
        var stops = new HashSet<int>(model.Config.EosTokenIds);
        stops.UnionWith(_options.Generation?.EosTokenIds ?? []);
        stops.UnionWith(_options.StopTokens);
        if (template.EosToken is { Length: > 0 } eos && tokenizer.TokenToId(eos) is int eosId) stops.Add(eosId);
        if (_options.IgnoreEos) stops.Clear();
        _session = new GenerationSession(new Generator(model, tokenizer) { StopTokens = stops }, _options.ContextLength);
        Metadata = new ChatClientMetadata("llmk", null, _options.ModelId ?? model.Config.ModelType);
    }

    /// <summary>
    /// Loads a Hugging Face model folder: config.json, the safetensors weights, tokenizer.json, the chat template
    /// (tokenizer_config.json's chat_template, or chat_template.jinja) and generation_config.json when present.
    /// The client owns the model and <paramref name="context"/> (default: the fast CPU kernels).
    /// </summary>
    public static LlmkChatClient Load(string directory, Context? context = null, LlmkChatClientOptions? options = null)
    {
        var (template, generation) = LoadChatFiles(directory);
        var tokenizer = Tokenizer.FromFile(Path.Combine(directory, "tokenizer.json"));
        var ctx = context ?? Context.CreateCpu();
        try
        {
            var model = LlamaModel.Load(ctx, directory);
            options ??= new LlmkChatClientOptions();
            options = new LlmkChatClientOptions
            {
                ModelId = options.ModelId ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory))),
                ContextLength = options.ContextLength,
                Generation = options.Generation ?? generation,
                StopTokens = options.StopTokens,
                IgnoreEos = options.IgnoreEos,
                TemplateVariables = options.TemplateVariables,
            };
            return new LlmkChatClient(model, tokenizer, template, options, new Owned(model, context is null ? ctx : null));
        }
        catch
        {
            if (context is null) ctx.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The chat files of a model folder: its chat template (chat_template.jinja, else tokenizer_config.json's
    /// chat_template, with that file's special tokens) and generation_config.json (null when absent).
    /// </summary>
    public static (ChatTemplate Template, GenerationConfig? Generation) LoadChatFiles(string directory)
    {
        string configPath = Path.Combine(directory, "tokenizer_config.json"), jinjaPath = Path.Combine(directory, "chat_template.jinja");
        var config = File.Exists(configPath) ? TokenizerConfig.Load(configPath) : new TokenizerConfig();
        if (File.Exists(jinjaPath))
            config = new TokenizerConfig
            {
                ChatTemplate = ModelFile.ReadUtf8Text(jinjaPath),
                BosToken = config.BosToken, EosToken = config.EosToken, UnkToken = config.UnkToken, PadToken = config.PadToken,
            };
        ChatTemplate template;
        try
        {
            template = ChatTemplate.FromTokenizerConfig(config)
                ?? throw new ModelFormatException($"{directory}: no chat template (tokenizer_config.json has no chat_template and there is no chat_template.jinja)");
        }
        catch (TemplateException e)
        {
            throw new ModelFormatException($"{(File.Exists(jinjaPath) ? jinjaPath : configPath)}: chat_template: {e.Message}", e);
        }
        string generationPath = Path.Combine(directory, "generation_config.json");
        return (template, File.Exists(generationPath) ? GenerationConfig.Load(generationPath) : null);
    }

    /// <summary>The chat template of a GGUF file (tokenizer.chat_template), with its bos and eos tokens.</summary>
    public static ChatTemplate LoadChatTemplate(Gguf.GgufFile file, Tokenizer tokenizer, ModelConfig config)
    {
        var source = file.ChatTemplate ?? throw new ModelFormatException($"{file.Path}: no chat template (no tokenizer.chat_template key)");
        string? Token(IReadOnlyList<int> ids) => ids.Count > 0 ? tokenizer.IdToToken(ids[0]) : null;
        try
        {
            return new ChatTemplate(source, Token(config.BosTokenIds), Token(config.EosTokenIds));
        }
        catch (TemplateException e)
        {
            throw new ModelFormatException($"{file.Path}: tokenizer.chat_template: {e.Message}", e);
        }
    }

    public LlamaModel Model { get; }
    public ChatClientMetadata Metadata { get; }

    /// <summary>The conversation the KV cache holds; <see cref="GenerationSession.Reset"/> forgets it.</summary>
    public GenerationSession Session => _session;

    /// <summary>The prompt a request would prefill: the chat template over the messages (and tools) of <paramref name="options"/>.</summary>
    public string RenderPrompt(IEnumerable<ChatMessage> messages, ChatOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = new List<object?>();
        if (options?.Instructions is { Length: > 0 } instructions)
            list.Add(new Dictionary<string, object?> { ["role"] = "system", ["content"] = instructions });
        foreach (var m in messages) list.AddRange(TemplateMessages(m));
        var tools = Tools(options);
        return _template.Render(list, addGenerationPrompt: true, tools.Count > 0 ? tools : null, _options.TemplateVariables);
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
                                                     CancellationToken cancellationToken = default) =>
        await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken).ConfigureAwait(false);

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
                                                                                [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string prompt = RenderPrompt(messages, options);
        var ids = _tokenizer.Encode(prompt, addSpecialTokens: false);
        var sampler = CreateSampler(options);
        var toolNames = ToolDeclarations(options).Select(f => f.Name).ToHashSet();
        var stops = new StopSequences(options?.StopSequences?.Where(s => s.Length > 0).ToList() ?? []);
        string responseId = Guid.NewGuid().ToString("N"), messageId = Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow;
        ChatResponseUpdate Update(IList<AIContent> contents, ChatFinishReason? finish = null) => new(ChatRole.Assistant, contents)
        {
            ResponseId = responseId, MessageId = messageId, ModelId = Metadata.DefaultModelId, CreatedAt = created, FinishReason = finish,
        };

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            int room = _session.Capacity - ids.Length;
            if (ids.Length == 0) throw new ArgumentException("the chat template rendered an empty prompt", nameof(messages));
            if (room < 1)
                throw new ArgumentException($"the conversation has {ids.Length} prompt tokens; the context holds {_session.Capacity}", nameof(messages));
            int maxTokens = Math.Min(options?.MaxOutputTokens ?? _options.Generation?.MaxNewTokens ?? room, room);
            if (maxTokens < 1) throw new ArgumentOutOfRangeException(nameof(options), maxTokens, "MaxOutputTokens must be at least 1");

            var tools = toolNames.Count > 0 ? new ToolCallStream(toolNames) : null;   // holds back what may be a tool call
            int generated = 0;
            var stop = StopReason.None;
            await foreach (var token in _session.GenerateAsync(ids, maxTokens, sampler, cancellationToken).ConfigureAwait(false))
            {
                generated++;
                stop = token.Stop;
                string text = stop == StopReason.EndOfSequence ? "" : token.Text;   // the end-of-turn token's own text is not part of the answer
                string ready = stops.Push(text);
                if (tools is not null) ready = tools.Push(ready);
                if (ready.Length > 0) yield return Update([new TextContent(ready)]);
                if (stops.Stopped) break;
            }
            string rest = stops.Flush();
            var finish = stops.Stopped || stop == StopReason.EndOfSequence ? ChatFinishReason.Stop : ChatFinishReason.Length;
            var final = new List<AIContent>();
            if (tools is not null)
            {
                rest = tools.Push(rest);
                var (text, calls) = tools.Finish();
                rest += text;
                final.AddRange(calls);
                if (calls.Count > 0) finish = ChatFinishReason.ToolCalls;
            }
            if (rest.Length > 0) final.Insert(0, new TextContent(rest));
            final.Add(new UsageContent(new UsageDetails
            {
                InputTokenCount = ids.Length,
                OutputTokenCount = generated,
                TotalTokenCount = ids.Length + generated,
                CachedInputTokenCount = _session.ReusedTokens,
            }));
            yield return Update(final, finish);
        }
        finally
        {
            _gate.Release();
        }
    }

    private Sampler CreateSampler(ChatOptions? options)
    {
        var g = _options.Generation;
        bool sample = g is { DoSample: true };
        float temperature = options?.Temperature ?? (sample ? g!.Temperature : 0);
        int topK = options?.TopK ?? (sample ? g!.TopK : 0);
        float topP = options?.TopP ?? (sample ? g!.TopP : 1);
        int seed = options?.Seed is long s ? unchecked((int)(s ^ (s >> 32))) : Random.Shared.Next();
        return new Sampler(temperature, topK, topP, seed);
    }

    /// <summary>The functions offered (none when ToolMode is None), as chat templates take them.</summary>
    private static List<object?> Tools(ChatOptions? options) => ToolDeclarations(options).Select(f => (object?)new Dictionary<string, object?>
        {
            ["type"] = "function",
            ["function"] = new Dictionary<string, object?>
            {
                ["name"] = f.Name,
                ["description"] = f.Description,
                ["parameters"] = f.JsonSchema,
            },
        }).ToList();

    private static IEnumerable<AIFunctionDeclaration> ToolDeclarations(ChatOptions? options) =>
        options?.ToolMode is NoneChatToolMode ? [] : options?.Tools?.OfType<AIFunctionDeclaration>() ?? [];

    /// <summary>A ChatMessage as chat templates expect it: role and content; an assistant's tool_calls; one "tool"
    /// message per function result, with its tool_call_id.</summary>
    private static IEnumerable<Dictionary<string, object?>> TemplateMessages(ChatMessage m)
    {
        string text = string.Concat(m.Contents.OfType<TextContent>().Select(t => t.Text));
        var results = m.Contents.OfType<FunctionResultContent>().ToList();
        foreach (var r in results)
            yield return new Dictionary<string, object?>
            {
                ["role"] = "tool",
                ["tool_call_id"] = r.CallId,
                ["content"] = r.Result switch
                {
                    null => "",
                    string s => s,
                    JsonElement { ValueKind: JsonValueKind.String } e => e.GetString(),
                    var o => JsonSerializer.Serialize(o, AIJsonUtilities.DefaultOptions),
                },
            };
        if (results.Count > 0 && text.Length == 0) yield break;

        var message = new Dictionary<string, object?> { ["role"] = m.Role.Value };
        var calls = m.Contents.OfType<FunctionCallContent>().ToList();
        if (calls.Count > 0)
        {
            // transformers' convention: an assistant turn with tool calls has no content key unless it has text.
            if (text.Length > 0) message["content"] = text;
            message["tool_calls"] = calls.Select(c => (object?)new Dictionary<string, object?>
            {
                ["id"] = c.CallId,
                ["type"] = "function",
                ["function"] = new Dictionary<string, object?>
                {
                    ["name"] = c.Name,
                    ["arguments"] = JsonSerializer.SerializeToElement(c.Arguments ?? new Dictionary<string, object?>(), AIJsonUtilities.DefaultOptions),
                },
            }).ToList();
        }
        else message["content"] = text;
        yield return message;
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        foreach (object candidate in new object[] { this, Model, Model.Config, _tokenizer, _template, _session })
            if (serviceType.IsInstanceOfType(candidate)) return candidate;
        return null;
    }

    public void Dispose()
    {
        _session.Dispose();
        _owned?.Dispose();
        _gate.Dispose();
    }

    private sealed class Owned(LlamaModel model, Context? context) : IDisposable
    {
        public void Dispose()
        {
            model.Dispose();
            context?.Dispose();
        }
    }
}
