using System.Text.Json;

namespace LlmKernels.Models.Tokenization;

/// <summary>A JSON element plus its path, so every error names the file and the field ("model.merges[3]").</summary>
internal readonly struct JsonNode(JsonElement element, string source, string path)
{
    public JsonElement Element => element;
    public string Path => path;

    public ModelFormatException Error(string what) =>
        new($"{source}: {(path.Length == 0 ? "root" : path)} {what}");

    public JsonNode? Optional(string field)
    {
        if (element.ValueKind != JsonValueKind.Object) throw Error($"is a JSON {element.ValueKind}, expected an object");
        return element.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null
            ? new JsonNode(v, source, path.Length == 0 ? field : $"{path}.{field}")
            : null;
    }

    public JsonNode Required(string field) =>
        Optional(field) ?? throw new ModelFormatException($"{source}: {(path.Length == 0 ? "" : path + ".")}{field} is missing");

    public string String()
    {
        if (element.ValueKind != JsonValueKind.String) throw Error($"is {Raw()}, expected a string");
        return element.GetString()!;
    }

    public bool Bool()
    {
        if (element.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw Error($"is {Raw()}, expected true or false");
        return element.GetBoolean();
    }

    public int Int(int min = int.MinValue)
    {
        if (element.ValueKind != JsonValueKind.Number || !element.TryGetInt32(out int v) || v < min)
            throw Error($"is {Raw()}, expected an integer >= {min}");
        return v;
    }

    /// <summary>Far above any real vocabulary (the largest have about 262k tokens), so that no id + 1 overflows
    /// and nothing sized by an id can be made huge by one number in the file.</summary>
    public const int MaxTokenId = (1 << 24) - 1;

    /// <summary>A token id: an integer in [0, <see cref="MaxTokenId"/>].</summary>
    public int TokenId()
    {
        int id = Int(0);
        if (id > MaxTokenId) throw Error($"is {id}, more than the largest token id this tokenizer takes ({MaxTokenId})");
        return id;
    }

    public string? OptionalString(string field) => Optional(field)?.String();

    public bool OptionalBool(string field, bool fallback) => Optional(field)?.Bool() ?? fallback;

    public int OptionalInt(string field, int fallback, int min = int.MinValue) => Optional(field)?.Int(min) ?? fallback;

    public IEnumerable<JsonNode> Items()
    {
        if (element.ValueKind != JsonValueKind.Array) throw Error($"is a JSON {element.ValueKind}, expected an array");
        int i = 0;
        foreach (var item in element.EnumerateArray()) yield return new JsonNode(item, source, $"{path}[{i++}]");
    }

    public IEnumerable<(string Name, JsonNode Value)> Properties()
    {
        if (element.ValueKind != JsonValueKind.Object) throw Error($"is a JSON {element.ValueKind}, expected an object");
        foreach (var p in element.EnumerateObject()) yield return (p.Name, new JsonNode(p.Value, source, $"{path}.{p.Name}"));
    }

    public string Type() => Required("type").String();

    private string Raw()
    {
        string raw = element.GetRawText();
        return raw.Length > 60 ? raw[..60] + "..." : raw;
    }
}
