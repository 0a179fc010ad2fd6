using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;

namespace LlmKernels.Models.Chat;

/// <summary>
/// Finds the tool calls in a model's answer, in the formats chat templates ask for: Hermes/Qwen
/// <c>&lt;tool_call&gt;{"name": ..., "arguments": {...}}&lt;/tool_call&gt;</c>, Mistral
/// <c>[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]</c>, Llama 3.x's bare
/// <c>{"name": ..., "parameters": {...}}</c> (optionally after &lt;|python_tag|&gt;, several joined by ';'), and
/// Functionary's <c>&lt;function=name&gt;{...}&lt;/function&gt;</c>. The bare JSON form counts only when it names one
/// of the tools offered, so an answer that merely is JSON stays text.
/// </summary>
public static partial class ToolCallParser
{
    [GeneratedRegex(@"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", RegexOptions.Singleline)]
    private static partial Regex HermesCall();

    [GeneratedRegex(@"<function=([^>]+)>(.*?)(?:</function>|$)", RegexOptions.Singleline)]
    private static partial Regex FunctionaryCall();

    /// <summary>The calls in <paramref name="text"/> and the text around them (trimmed); no calls: the text as is.</summary>
    public static (string Text, IReadOnlyList<FunctionCallContent> Calls) Parse(string text, IReadOnlyCollection<string> toolNames)
    {
        ArgumentNullException.ThrowIfNull(text);
        var calls = new List<FunctionCallContent>();

        if (text.Contains("<tool_call>", StringComparison.Ordinal))
        {
            string rest = HermesCall().Replace(text, m =>
            {
                if (Object(m.Groups[1].Value) is { } o && Call(o, "arguments") is { } call) { calls.Add(call); return ""; }
                return m.Value;
            });
            if (calls.Count > 0) return (rest.Trim(), calls);
        }

        int mistral = text.IndexOf("[TOOL_CALLS]", StringComparison.Ordinal);
        if (mistral >= 0 && Parse(text[(mistral + "[TOOL_CALLS]".Length)..].Trim()) is { ValueKind: JsonValueKind.Array } array)
        {
            foreach (var item in array.EnumerateArray())
                if (item.ValueKind == JsonValueKind.Object && Call(item, "arguments") is { } call) calls.Add(call);
            if (calls.Count > 0) return (text[..mistral].Trim(), calls);
        }

        if (text.Contains("<function=", StringComparison.Ordinal))
        {
            string rest = FunctionaryCall().Replace(text, m =>
            {
                var args = Parse(m.Groups[2].Value.Trim());
                if (args is { ValueKind: JsonValueKind.Object } a) { calls.Add(new FunctionCallContent(NewCallId(), m.Groups[1].Value.Trim(), Arguments(a))); return ""; }
                return m.Value;
            });
            if (calls.Count > 0) return (rest.Trim(), calls);
        }

        string bare = text.Trim();
        if (bare.StartsWith("<|python_tag|>", StringComparison.Ordinal)) bare = bare["<|python_tag|>".Length..].Trim();
        if (bare.StartsWith('{'))
        {
            foreach (string part in bare.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (Object(part) is not { } o || Call(o, "parameters", "arguments") is not { } call || !toolNames.Contains(call.Name))
                    return (text, []);
                calls.Add(call);
            }
            if (calls.Count > 0) return ("", calls);
        }
        return (text, []);
    }

    private static JsonElement? Parse(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.Clone();
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static JsonElement? Object(string json) => Parse(json) is { ValueKind: JsonValueKind.Object } o ? o : null;

    /// <summary>{"name": ..., "&lt;arguments field&gt;": {...} or a JSON string of it, "id"?: ...}</summary>
    private static FunctionCallContent? Call(JsonElement o, params string[] argumentFields)
    {
        if (!o.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString() is not { Length: > 0 } n) return null;
        JsonElement? args = null;
        foreach (string field in argumentFields)
            if (o.TryGetProperty(field, out var a)) { args = a; break; }
        if (args is { ValueKind: JsonValueKind.String } s) args = Parse(s.GetString()!);
        if (args is not null && args.Value.ValueKind != JsonValueKind.Object) return null;
        string id = o.TryGetProperty("id", out var i) && i.ValueKind == JsonValueKind.String && i.GetString() is { Length: > 0 } given ? given : NewCallId();
        return new FunctionCallContent(id, n, args is { } obj ? Arguments(obj) : new Dictionary<string, object?>());
    }

    private static Dictionary<string, object?> Arguments(JsonElement o) =>
        o.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());

    /// <summary>Nine letters and digits: the id shape Mistral's templates insist on, and fine for every other.</summary>
    internal static string NewCallId()
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        return string.Create(9, 0, (span, _) =>
        {
            for (int i = 0; i < span.Length; i++) span[i] = alphabet[Random.Shared.Next(alphabet.Length)];
        });
    }
}

/// <summary>
/// Streams an answer's text while it cannot be a tool call and holds it back from where one may begin: a marker
/// (&lt;tool_call&gt;, [TOOL_CALLS], &lt;function=, &lt;|python_tag|&gt;) anywhere, or a '{' as the first character (Llama 3.x's
/// bare JSON). At the end, what was held back is parsed by <see cref="ToolCallParser"/>.
/// </summary>
internal sealed class ToolCallStream(IReadOnlyCollection<string> toolNames)
{
    private readonly StopSequences _markers = new(["<tool_call>", "[TOOL_CALLS]", "<function=", "<|python_tag|>"]);
    private readonly StringBuilder _held = new();
    private bool? _json;   // unknown until the first character that is not white space

    /// <summary>Adds text; returns what can be released now.</summary>
    public string Push(string text)
    {
        if (_json is null)
        {
            _held.Append(text);
            string start = _held.ToString().TrimStart();
            if (start.Length == 0) return "";
            _json = start[0] == '{';
            if (_json.Value) return "";
            text = _held.ToString();
            _held.Clear();
        }
        if (_json.Value)
        {
            _held.Append(text);
            return "";
        }
        return _markers.Push(text);
    }

    /// <summary>The end of the answer: the text never released (but for the calls) and the calls.</summary>
    public (string Text, IReadOnlyList<FunctionCallContent> Calls) Finish() =>
        ToolCallParser.Parse(_json == false ? _markers.Flush() + _markers.Tail : _held.ToString(), toolNames);
}
