namespace LlmKernels.Models.Templates;

/// <summary>
/// A model's chat template with the special tokens it refers to. Where it comes from is the caller's business:
/// tokenizer_config.json (<see cref="FromTokenizerConfig"/>), a chat_template.jinja file, or GGUF metadata
/// (tokenizer.chat_template) all give a template string and the bos/eos tokens.
/// </summary>
public sealed class ChatTemplate
{
    private readonly JinjaTemplate _template;
    private readonly JinjaTemplate? _toolUse;
    private readonly Dictionary<string, object?> _tokens = new(StringComparer.Ordinal);

    /// <summary>Parses <paramref name="source"/> (a TemplateException if it is not valid); <paramref name="specialTokens"/>
    /// are more variables the template may use (unk_token, pad_token, ...); <paramref name="toolUseSource"/>, where a
    /// model has one, is the template for requests with tools (tokenizer_config.json's named "tool_use" template).</summary>
    public ChatTemplate(string source, string? bosToken = null, string? eosToken = null, IReadOnlyDictionary<string, string>? specialTokens = null,
                        string? toolUseSource = null)
    {
        _template = new JinjaTemplate(source);
        _toolUse = toolUseSource is null ? null : new JinjaTemplate(toolUseSource);
        BosToken = bosToken;
        EosToken = eosToken;
        foreach (var (name, value) in specialTokens ?? new Dictionary<string, string>()) _tokens[name] = value;
        _tokens["bos_token"] = bosToken ?? "";
        _tokens["eos_token"] = eosToken ?? "";
    }

    public string Source => _template.Source;
    public string? BosToken { get; }
    public string? EosToken { get; }

    /// <summary>The chat template of a tokenizer_config.json, or null when it has none.</summary>
    public static ChatTemplate? FromTokenizerConfig(TokenizerConfig config)
    {
        if (config.ChatTemplate is null) return null;
        var extra = new Dictionary<string, string>();
        if (config.UnkToken is { } unk) extra["unk_token"] = unk;
        if (config.PadToken is { } pad) extra["pad_token"] = pad;
        return new ChatTemplate(config.ChatTemplate, config.BosToken, config.EosToken, extra, config.NamedChatTemplates.GetValueOrDefault("tool_use"));
    }

    /// <summary>
    /// The prompt for <paramref name="messages"/> (with tools, in the tool_use template where there is one) (each a dictionary: role, content, and tool_calls / tool_call_id
    /// where there are), with the assistant's header after them when <paramref name="addGenerationPrompt"/>.
    /// <paramref name="tools"/> (function schemas) are passed as `tools` when given; <paramref name="variables"/>
    /// add or override variables (date_string, ...).
    /// </summary>
    public string Render(IEnumerable<object?> messages, bool addGenerationPrompt = true, IEnumerable<object?>? tools = null,
                         IReadOnlyDictionary<string, object?>? variables = null, Func<DateTime>? now = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var all = new Dictionary<string, object?>(_tokens, StringComparer.Ordinal)
        {
            ["messages"] = messages.ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        var toolList = tools?.ToList();
        if (toolList is not null) all["tools"] = toolList;
        foreach (var (name, value) in variables ?? new Dictionary<string, object?>()) all[name] = value;
        return (toolList is { Count: > 0 } && _toolUse is not null ? _toolUse : _template).Render(all, now);
    }
}
