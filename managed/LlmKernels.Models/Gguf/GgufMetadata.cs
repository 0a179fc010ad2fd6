namespace LlmKernels.Models.Gguf;

/// <summary>Typed reads of GGUF metadata; a missing or mistyped key is a ModelFormatException naming the file and key.</summary>
internal sealed class GgufMetadata(IReadOnlyDictionary<string, object> values, string source)
{
    public string Source => source;

    public bool Contains(string key) => values.ContainsKey(key);

    public ModelFormatException Error(string key, string what) => new($"{source}: metadata '{key}' {what}");

    private object? Get(string key) => values.TryGetValue(key, out var v) ? v : null;

    public string? OptionalString(string key) => Get(key) switch
    {
        null => null,
        string s => s,
        var v => throw Error(key, $"is {GgufFile.Describe(v)}; expected a string"),
    };

    public string String(string key) => OptionalString(key) ?? throw Error(key, "is missing");

    /// <summary>Any integer type, within [min, int.MaxValue].</summary>
    public int? OptionalInt(string key, int min = 0)
    {
        var v = Get(key);
        if (v is null) return null;
        long? value = v switch
        {
            byte b => b, sbyte b => b, ushort b => b, short b => b, uint b => b, int b => b, long b => b,
            ulong b when b <= long.MaxValue => (long)b,
            _ => null,
        };
        if (value is not long n || n < min || n > int.MaxValue)
            throw Error(key, $"is {GgufFile.Describe(v)}; expected an integer >= {min}");
        return (int)n;
    }

    public int Int(string key, int min = 0) => OptionalInt(key, min) ?? throw Error(key, "is missing");

    public double? OptionalDouble(string key) => Get(key) switch
    {
        null => null,
        float f when float.IsFinite(f) => f,
        double d when double.IsFinite(d) => d,
        var v => throw Error(key, $"is {GgufFile.Describe(v)}; expected a finite float"),
    };

    public bool? OptionalBool(string key) => Get(key) switch
    {
        null => null,
        bool b => b,
        var v => throw Error(key, $"is {GgufFile.Describe(v)}; expected a bool"),
    };

    /// <summary>An array of <typeparamref name="T"/> (string, float, int), or null when absent.</summary>
    public T[]? OptionalArray<T>(string key) => Get(key) switch
    {
        null => null,
        T[] a => a,
        var v => throw Error(key, $"is {GgufFile.Describe(v)}; expected an array of {typeof(T).Name}"),
    };
}
