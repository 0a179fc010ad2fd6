using System.Text.Json;

namespace LlmKernels.Models;

/// <summary>
/// What tokenizer_config.json says about chat: the chat template (one string, or named templates such as
/// "default" and "tool_use") and the special tokens (bos, eos, unk, pad; a string or an added-token object).
/// </summary>
public sealed class TokenizerConfig
{
    public string? ChatTemplate { get; init; }

    /// <summary>Named templates when chat_template is a list ([{"name": "default", "template": ...}, ...]).</summary>
    public IReadOnlyDictionary<string, string> NamedChatTemplates { get; init; } = new Dictionary<string, string>();

    public string? BosToken { get; init; }
    public string? EosToken { get; init; }
    public string? UnkToken { get; init; }
    public string? PadToken { get; init; }

    public static TokenizerConfig Load(string path) => Parse(ModelFile.ReadSmallFile(path), path);

    public static TokenizerConfig Parse(byte[] utf8, string source = "tokenizer_config.json")
    {
        var root = JsonField.ParseObject(utf8, source);
        string? Token(string field) => root.Optional(field) is not JsonField n ? null
            : n.Element.ValueKind == JsonValueKind.String ? n.String()
            : n.Element.ValueKind == JsonValueKind.Object ? n.Required("content").String()
            : throw n.Error($"is {n.Element.GetRawText()}; expected a string or an object with \"content\"");

        string? template = null;
        var named = new Dictionary<string, string>(StringComparer.Ordinal);
        if (root.Optional("chat_template") is JsonField t)
        {
            if (t.Element.ValueKind == JsonValueKind.String) template = t.String();
            else if (t.Element.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in t.Items()) named[item.Required("name").String()] = item.Required("template").String();
                template = named.GetValueOrDefault("default") ?? named.Values.FirstOrDefault();
            }
            else throw t.Error("is neither a string nor a list of {name, template}");
        }
        return new TokenizerConfig
        {
            ChatTemplate = template,
            NamedChatTemplates = named,
            BosToken = Token("bos_token"),
            EosToken = Token("eos_token"),
            UnkToken = Token("unk_token"),
            PadToken = Token("pad_token"),
        };
    }
}

/// <summary>
/// generation_config.json: the ids that end generation (they may differ from config.json's, e.g. Llama 3's
/// &lt;|eot_id|&gt;) and the default sampling, as transformers' GenerationConfig reads them.
/// </summary>
public sealed class GenerationConfig
{
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public int? BosTokenId { get; init; }
    public bool DoSample { get; init; }
    public float Temperature { get; init; } = 1;
    public int TopK { get; init; } = 50;
    public float TopP { get; init; } = 1;
    public int? MaxNewTokens { get; init; }

    public static GenerationConfig Load(string path) => Parse(ModelFile.ReadSmallFile(path), path);

    public static GenerationConfig Parse(byte[] utf8, string source = "generation_config.json")
    {
        var root = JsonField.ParseObject(utf8, source);
        var eos = new List<int>();
        if (root.Optional("eos_token_id") is JsonField e)
        {
            if (e.Element.ValueKind == JsonValueKind.Array) eos.AddRange(e.Items().Select(i => i.Int(0)));
            else eos.Add(e.Int(0));
        }
        float Float(string field, float fallback, float min, float max)
        {
            if (root.Optional(field) is not JsonField n) return fallback;
            if (n.Element.ValueKind != JsonValueKind.Number || !n.Element.TryGetDouble(out double v) || !(v >= min && v <= max))
                throw n.Error($"is {n.Element.GetRawText()}, expected a number in [{min}, {max}]");
            return (float)v;
        }
        return new GenerationConfig
        {
            EosTokenIds = eos,
            BosTokenId = root.Optional("bos_token_id")?.Int(0),
            DoSample = root.OptionalBool("do_sample", false),
            Temperature = Float("temperature", 1, 0, 100),
            TopK = root.OptionalInt("top_k", 50, 0),
            TopP = Float("top_p", 1, float.Epsilon, 1),
            MaxNewTokens = root.Optional("max_new_tokens")?.Int(1),
        };
    }

    /// <summary>Greedy unless do_sample; else temperature, top_k and top_p as given.</summary>
    public Sampler CreateSampler(int seed) => DoSample && Temperature > 0 ? new Sampler(Temperature, TopK, TopP, seed) : Sampler.Greedy;
}
