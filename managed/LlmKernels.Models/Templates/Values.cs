using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace LlmKernels.Models.Templates;

/// <summary>
/// A value inside a running template. Arrays, objects and namespaces are compared by reference (as JavaScript does),
/// so <c>message == user_messages[-1]</c> asks "the same message?".
/// </summary>
internal abstract class Value
{
    public abstract string TypeName { get; }

    /// <summary>Truthiness: empty strings, zero, none, undefined, empty arrays and objects are false.</summary>
    public abstract bool IsTrue { get; }

    /// <summary>The text this value renders as in {{ }}.</summary>
    public override string ToString() => Json.Write(this, null, undefinedAsNull: false);
}

internal sealed class StringValue(string value) : Value
{
    public string Value { get; } = value;
    public override string TypeName => "StringValue";
    public override bool IsTrue => Value.Length > 0;
    public override string ToString() => Value;
}

internal sealed class IntValue(long value) : Value
{
    public long Value { get; } = value;
    public override string TypeName => "IntegerValue";
    public override bool IsTrue => Value != 0;
    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);
}

internal sealed class FloatValue(double value) : Value
{
    public double Value { get; } = value;
    public override string TypeName => "FloatValue";
    public override bool IsTrue => Value != 0 && !double.IsNaN(Value);

    public override string ToString() =>
        Value == 0 && double.IsNegative(Value) ? "-0.0"
        : Value % 1 == 0 && Math.Abs(Value) < 1e21 ? Json.Number(Value) + ".0"
        : Json.Number(Value);
}

internal sealed class BoolValue : Value
{
    public static readonly BoolValue True = new(true), False = new(false);
    private BoolValue(bool value) => Value = value;
    public bool Value { get; }
    public static BoolValue Of(bool value) => value ? True : False;
    public override string TypeName => "BooleanValue";
    public override bool IsTrue => Value;
    public override string ToString() => Value ? "true" : "false";
}

internal sealed class NullValue : Value
{
    public static readonly NullValue Instance = new();
    public override string TypeName => "NullValue";
    public override bool IsTrue => false;
    public override string ToString() => "null";
}

internal sealed class UndefinedValue : Value
{
    public static readonly UndefinedValue Instance = new();
    public override string TypeName => "UndefinedValue";
    public override bool IsTrue => false;
    public override string ToString() => "undefined";
}

internal sealed class ArrayValue(List<Value> items, bool isTuple = false) : Value
{
    public List<Value> Items { get; } = items;
    public bool IsTuple { get; } = isTuple;
    public override string TypeName => IsTuple ? "TupleValue" : "ArrayValue";
    public override bool IsTrue => Items.Count > 0;
}

/// <summary>A string-keyed map that keeps insertion order (JSON objects, dict literals, keyword arguments).</summary>
internal sealed class OrderedMap : IEnumerable<KeyValuePair<string, Value>>
{
    private readonly Dictionary<string, int> _index = new(StringComparer.Ordinal);
    private readonly List<KeyValuePair<string, Value>> _entries = [];

    public int Count => _entries.Count;
    public IEnumerable<string> Keys => _entries.Select(e => e.Key);

    public Value? Get(string key) => _index.TryGetValue(key, out int i) ? _entries[i].Value : null;
    public bool Has(string key) => _index.ContainsKey(key);

    public void Set(string key, Value value)
    {
        if (_index.TryGetValue(key, out int i)) _entries[i] = new(key, value);
        else
        {
            _index[key] = _entries.Count;
            _entries.Add(new(key, value));
        }
    }

    public IEnumerator<KeyValuePair<string, Value>> GetEnumerator() => _entries.GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>A mapping (a JSON object or a {...} literal); <see cref="IsKeywordArguments"/> for f(a=1)'s.</summary>
internal sealed class ObjectValue(OrderedMap map, bool isKeywordArguments = false) : Value
{
    public OrderedMap Map { get; } = map;
    public bool IsKeywordArguments { get; } = isKeywordArguments;
    public override string TypeName => IsKeywordArguments ? "KeywordArgumentsValue" : "ObjectValue";
    public override bool IsTrue => Map.Count > 0;
}

/// <summary>namespace(...): attributes that a {% set ns.x = ... %} inside a loop can change.</summary>
internal sealed class NamespaceValue(OrderedMap map) : Value
{
    public OrderedMap Map { get; } = map;
    public override string TypeName => "NamespaceValue";
    public override bool IsTrue => true;
}

internal delegate Value TemplateFunction(List<Value> arguments, Scope scope);

internal sealed class FunctionValue(TemplateFunction function) : Value
{
    public TemplateFunction Function { get; } = function;
    public override string TypeName => "FunctionValue";
    public override bool IsTrue => true;
    public override string ToString() => "[function]";
}

/// <summary>JSON as tojson (and a container's rendering) writes it: Python's json.dumps separators, JavaScript's numbers.</summary>
internal static class Json
{
    public static string Write(Value value, int? indent, bool undefinedAsNull = true, bool ensureAscii = false,
                               (string Item, string Key)? separators = null, bool sortKeys = false)
    {
        var sb = new StringBuilder();
        var (item, key) = separators ?? (indent is > 0 ? (",", ": ") : (", ", ": "));
        Append(sb, value, 0);
        return sb.ToString();

        void Append(StringBuilder sb, Value v, int depth)
        {
            if (depth > 512) throw new TemplateException("tojson: the value nests too deeply (a cycle?)");
            switch (v)
            {
                case NullValue: sb.Append("null"); break;
                case UndefinedValue: sb.Append(undefinedAsNull ? "null" : "undefined"); break;
                case IntValue i: sb.Append(i.Value.ToString(CultureInfo.InvariantCulture)); break;
                case FloatValue f: sb.Append(double.IsFinite(f.Value) ? Number(f.Value) : "null"); break;
                case BoolValue b: sb.Append(b.Value ? "true" : "false"); break;
                case StringValue s: String(sb, s.Value, ensureAscii); break;
                case ArrayValue { IsTuple: true }: throw new TemplateException("Cannot convert to JSON: TupleValue");
                case ArrayValue a:
                {
                    string pad = indent is > 0 ? "\n" + new string(' ', indent.Value * depth) : "";
                    string childPad = indent is > 0 ? pad + new string(' ', indent.Value) : "";
                    sb.Append('[');
                    for (int n = 0; n < a.Items.Count; n++)
                    {
                        if (n > 0) sb.Append(item);
                        sb.Append(childPad);
                        Append(sb, a.Items[n], depth + 1);
                    }
                    if (a.Items.Count > 0) sb.Append(pad);
                    sb.Append(']');
                    break;
                }
                case ObjectValue or NamespaceValue:
                {
                    var map = v is ObjectValue o ? o.Map : ((NamespaceValue)v).Map;
                    IEnumerable<KeyValuePair<string, Value>> entries = map;
                    if (sortKeys) entries = entries.OrderBy(e => e.Key, StringComparer.InvariantCulture);
                    string pad = indent is > 0 ? "\n" + new string(' ', indent.Value * depth) : "";
                    string childPad = indent is > 0 ? pad + new string(' ', indent.Value) : "";
                    sb.Append('{');
                    int n = 0;
                    foreach (var (k, child) in entries)
                    {
                        if (n++ > 0) sb.Append(item);
                        sb.Append(childPad);
                        String(sb, k, ensureAscii);
                        sb.Append(key);
                        Append(sb, child, depth + 1);
                    }
                    if (n > 0) sb.Append(pad);
                    sb.Append('}');
                    break;
                }
                default:
                    throw new TemplateException($"Cannot convert to JSON: {v.TypeName}");
            }
        }
    }

    /// <summary>JSON.stringify of a string: quotes, backslashes and control characters escaped, nothing else.</summary>
    private static void String(StringBuilder sb, string s, bool ensureAscii)
    {
        sb.Append('"');
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    bool lone = char.IsHighSurrogate(c) ? i + 1 >= s.Length || !char.IsLowSurrogate(s[i + 1])
                              : char.IsLowSurrogate(c) && (i == 0 || !char.IsHighSurrogate(s[i - 1]));
                    if (c < 0x20 || lone || (ensureAscii && c >= 0x7f)) sb.Append("\\u").Append(((int)c).ToString("x4"));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>A double as JavaScript's Number#toString writes it (shortest round trip; exponent past 1e21 and below 1e-6).</summary>
    public static string Number(double v)
    {
        if (double.IsNaN(v)) return "NaN";
        if (double.IsInfinity(v)) return v > 0 ? "Infinity" : "-Infinity";
        if (v == 0) return "0";
        string r = Math.Abs(v).ToString("R", CultureInfo.InvariantCulture);
        int e = 0, ei = r.IndexOf('E');
        string m = r;
        if (ei >= 0)
        {
            e = int.Parse(r[(ei + 1)..], CultureInfo.InvariantCulture);
            m = r[..ei];
        }
        int dot = m.IndexOf('.');
        string digits = m.Replace(".", "");
        int n = (dot < 0 ? m.Length : dot) + e;   // value = 0.digits * 10^n
        int zeros = 0;
        while (zeros < digits.Length - 1 && digits[zeros] == '0') zeros++;
        digits = digits[zeros..].TrimEnd('0');
        n -= zeros;
        int k = digits.Length;
        string s;
        if (k <= n && n <= 21) s = digits + new string('0', n - k);
        else if (0 < n && n <= 21) s = digits[..n] + "." + digits[n..];
        else if (-6 < n && n <= 0) s = "0." + new string('0', -n) + digits;
        else
        {
            int exp = n - 1;
            string es = exp >= 0 ? "+" + exp : exp.ToString(CultureInfo.InvariantCulture);
            s = (k == 1 ? digits : digits[0] + "." + digits[1..]) + "e" + es;
        }
        return v < 0 ? "-" + s : s;
    }
}

/// <summary>Values from .NET: strings, numbers, booleans, null, dictionaries, lists, System.Text.Json elements and nodes.</summary>
internal static class Values
{
    public static Value From(object? o, int depth = 0)
    {
        if (depth > 256) throw new TemplateException("a template variable nests too deeply (a cycle?)");
        switch (o)
        {
            case null: return NullValue.Instance;
            case Value v: return v;
            case string s: return new StringValue(s);
            case bool b: return BoolValue.Of(b);
            case int or long or short or byte or sbyte or ushort or uint: return new IntValue(Convert.ToInt64(o, CultureInfo.InvariantCulture));
            case float or double or decimal or ulong:
                double d = Convert.ToDouble(o, CultureInfo.InvariantCulture);
                return d % 1 == 0 && Math.Abs(d) < 9.2e18 ? new IntValue((long)d) : new FloatValue(d);
            case JsonElement e: return FromJson(e, depth);
            case System.Text.Json.Nodes.JsonNode node: return FromJson(JsonSerializer.SerializeToElement(node), depth);
            case IEnumerable<KeyValuePair<string, object?>> dict:
            {
                var map = new OrderedMap();
                foreach (var (k, v) in dict) map.Set(k, From(v, depth + 1));
                return new ObjectValue(map);
            }
            case IDictionary dict:
            {
                var map = new OrderedMap();
                foreach (DictionaryEntry entry in dict) map.Set(Convert.ToString(entry.Key, CultureInfo.InvariantCulture) ?? "", From(entry.Value, depth + 1));
                return new ObjectValue(map);
            }
            case IEnumerable list: return new ArrayValue(list.Cast<object?>().Select(x => From(x, depth + 1)).ToList());
            default: throw new TemplateException($"a template variable of type {o.GetType().Name} is not supported (use strings, numbers, lists, dictionaries or JSON)");
        }
    }

    private static Value FromJson(JsonElement e, int depth)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.String: return new StringValue(e.GetString()!);
            case JsonValueKind.Number:
                double d = e.GetDouble();
                return d % 1 == 0 && Math.Abs(d) < 9.2e18 ? new IntValue((long)d) : new FloatValue(d);
            case JsonValueKind.True: return BoolValue.True;
            case JsonValueKind.False: return BoolValue.False;
            case JsonValueKind.Array: return new ArrayValue(e.EnumerateArray().Select(x => From(x, depth + 1)).ToList());
            case JsonValueKind.Object:
            {
                var map = new OrderedMap();
                foreach (var p in e.EnumerateObject()) map.Set(p.Name, From(p.Value, depth + 1));
                return new ObjectValue(map);
            }
            default: return NullValue.Instance;
        }
    }
}
