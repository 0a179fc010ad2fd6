using System.Text.Json;

namespace LlmKernels.Models;

/// <summary>
/// The one reader of the runner's JSON files (config.json, tokenizer.json, tokenizer_config.json,
/// generation_config.json): a JSON element plus its path, so that every error is a
/// <see cref="ModelFormatException"/> naming the file and the field ("config.json: 'rope_scaling.factor' is
/// missing", "tokenizer.json: 'model.merges[3]' ...").
/// </summary>
internal readonly struct JsonField(JsonElement element, string source, string path)
{
    public JsonElement Element => element;
    public string Path => path;

    /// <summary>A JSON object from a small file's bytes (see <see cref="ModelFile.ParseJson"/>); trailing commas are
    /// accepted, as Python's writers of these files leave them.</summary>
    public static JsonField ParseObject(byte[] utf8, string source)
    {
        using var doc = ModelFile.ParseJson(utf8, source, new JsonDocumentOptions { AllowTrailingCommas = true });
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{source}: expected a JSON object, found {doc.RootElement.ValueKind}");
        return new JsonField(doc.RootElement.Clone(), source, "");
    }

    public ModelFormatException Error(string what) => new($"{source}: {Name(path)} {what}");

    /// <summary>An error about <paramref name="field"/> of this object, present or not.</summary>
    public ModelFormatException Error(string field, string what) => new($"{source}: {Name(Child(field))} {what}");

    public JsonField? Optional(string field)
    {
        Object();
        return element.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null
            ? new JsonField(v, source, Child(field))
            : null;
    }

    public JsonField Required(string field) => Optional(field) ?? throw Error(field, "is missing");

    /// <summary>This node, which must be an object.</summary>
    public JsonField Object() =>
        element.ValueKind == JsonValueKind.Object ? this : throw Error($"is a JSON {element.ValueKind}, expected an object");

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

    /// <summary>A finite number.</summary>
    public double Double()
    {
        if (element.ValueKind != JsonValueKind.Number || !element.TryGetDouble(out double d) || !double.IsFinite(d))
            throw Error($"is {Raw()}, expected a number");
        return d;
    }

    /// <summary>A number the kernels take as a float: it must be finite in single precision too (1e300 is a finite
    /// double and an infinite float).</summary>
    public double Float()
    {
        double d = Double();
        if (!float.IsFinite((float)d)) throw Error($"is {d}, beyond the single-precision range the kernels compute in");
        return d;
    }

    /// <summary>The largest size (layers, widths, vocabulary, positions) taken: far above any real model (hidden sizes
    /// reach 16384, vocabularies 262k, contexts 10M), so that no list sized by one (the per-layer flags) is made huge
    /// by one number in the file; the fuzz test found that one.</summary>
    public const int MaxSize = 1 << 24;

    /// <summary>A size: an integer in [<paramref name="min"/>, <see cref="MaxSize"/>]; Python writes 4096.0 for some
    /// integer fields, so integral doubles are accepted.</summary>
    public int Size(int min)
    {
        double d = element.ValueKind == JsonValueKind.Number && element.TryGetDouble(out double number) ? number : double.NaN;
        if (!(d == Math.Floor(d) && d >= min))
            throw Error($"is {Raw()}, expected {(min switch { 0 => "a non-negative integer", 1 => "a positive integer", _ => $"an integer >= {min}" })}");
        if (d > MaxSize)
            throw Error($"is {Raw()}, more than the {MaxSize} this runner takes for a size");
        return (int)d;
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

    /// <summary>An id or a list of ids (Llama 3 lists several EOS ids), each below <paramref name="vocabSize"/>.</summary>
    public List<int> TokenIds(int vocabSize)
    {
        var items = element.ValueKind == JsonValueKind.Array ? element.EnumerateArray().ToList() : [element];
        var ids = new List<int>();
        foreach (var e in items)
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id) || id < 0)
                throw Error($"is {Raw()}, expected a token id or a list of token ids");
            if (id >= vocabSize)
                throw Error($"is {Raw()}; id {id} is not below vocab_size ({vocabSize})");
            ids.Add(id);
        }
        return ids;
    }

    public List<string> StringList()
    {
        if (element.ValueKind != JsonValueKind.Array || element.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
            throw Error($"is {Raw()}, expected an array of strings");
        return element.EnumerateArray().Select(e => e.GetString()!).ToList();
    }

    public string? OptionalString(string field) => Optional(field)?.String();

    public bool OptionalBool(string field, bool fallback) => Optional(field)?.Bool() ?? fallback;

    public int OptionalInt(string field, int fallback, int min = int.MinValue) => Optional(field)?.Int(min) ?? fallback;

    public IEnumerable<JsonField> Items()
    {
        if (element.ValueKind != JsonValueKind.Array) throw Error($"is a JSON {element.ValueKind}, expected an array");
        int i = 0;
        foreach (var item in element.EnumerateArray()) yield return new JsonField(item, source, $"{path}[{i++}]");
    }

    public IEnumerable<(string Name, JsonField Value)> Properties()
    {
        Object();
        foreach (var p in element.EnumerateObject()) yield return (p.Name, new JsonField(p.Value, source, Child(p.Name)));
    }

    public string Type() => Required("type").String();

    private string Child(string field) => path.Length == 0 ? field : $"{path}.{field}";

    private static string Name(string path) => path.Length == 0 ? "the root" : $"'{path}'";

    private string Raw()
    {
        string raw = element.GetRawText();
        return raw.Length > 60 ? raw[..60] + "..." : raw;
    }
}
