using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace LlmKernels.Models.Templates;

/// <summary>Filters, methods of strings and objects, global functions and the comparisons of @huggingface/jinja.</summary>
internal static partial class Builtins
{
    private static TemplateException Error(string message) => new(message);

    public static bool IsNumeric(Value v, bool bools) => v is IntValue or FloatValue || (bools && v is BoolValue);

    public static double Number(Value v) => v switch
    {
        IntValue i => i.Value,
        FloatValue f => f.Value,
        BoolValue b => b.Value ? 1 : 0,
        _ => double.NaN,
    };

    /// <summary>JavaScript's String(x.value): what + and ~ concatenate.</summary>
    public static string JsString(Value v) => v switch
    {
        StringValue s => s.Value,
        IntValue i => i.Value.ToString(CultureInfo.InvariantCulture),
        FloatValue f => Json.Number(f.Value),
        BoolValue b => b.Value ? "true" : "false",
        ArrayValue a => string.Join(",", a.Items.Select(x => x is NullValue or UndefinedValue ? "" : x.ToString())),
        ObjectValue or NamespaceValue => "[object Map]",
        _ => v.ToString(),
    };

    /// <summary>JavaScript's === on the values: primitives by value (1 === 1.0), containers by identity.</summary>
    public static bool StrictEquals(Value a, Value b) => (a, b) switch
    {
        (StringValue x, StringValue y) => x.Value == y.Value,
        (IntValue or FloatValue, IntValue or FloatValue) => Number(a) == Number(b),
        (BoolValue x, BoolValue y) => x.Value == y.Value,
        (NullValue, NullValue) or (UndefinedValue, UndefinedValue) => true,
        _ => ReferenceEquals(a, b),
    };

    /// <summary>JavaScript's == on the values: none == undefined, true == 1, "1" == 1.</summary>
    public static bool LooseEquals(Value a, Value b)
    {
        bool aNull = a is NullValue or UndefinedValue, bNull = b is NullValue or UndefinedValue;
        if (aNull || bNull) return aNull && bNull;
        if (a is StringValue x && b is StringValue y) return x.Value == y.Value;
        bool aPrimitive = a is StringValue or IntValue or FloatValue or BoolValue, bPrimitive = b is StringValue or IntValue or FloatValue or BoolValue;
        if (aPrimitive && bPrimitive) return ToNumber(a) == ToNumber(b);
        return ReferenceEquals(a, b);

        static double ToNumber(Value v) => v is StringValue s
            ? (Lexer.Trim(s.Value) is var t && t.Length == 0 ? 0 : double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d : double.NaN)
            : Number(v);
    }

    private static int Compare(Value a, Value b, bool caseSensitive)
    {
        if (a is NullValue && b is NullValue || a is UndefinedValue && b is UndefinedValue) return 0;
        if (a is NullValue or UndefinedValue || b is NullValue or UndefinedValue) throw Error($"Cannot compare {a.TypeName} with {b.TypeName}");
        if (IsNumeric(a, true) && IsNumeric(b, true)) return Number(a).CompareTo(Number(b));
        if (a is StringValue x && b is StringValue y)
            return Math.Sign(caseSensitive ? string.CompareOrdinal(x.Value, y.Value)
                                           : string.CompareOrdinal(x.Value.ToLowerInvariant(), y.Value.ToLowerInvariant()));
        if (a.TypeName != b.TypeName) throw Error($"Cannot compare different types: {a.TypeName} and {b.TypeName}");
        throw Error($"Cannot compare type: {a.TypeName}");
    }

    private static Value Attribute(Value item, string path)
    {
        foreach (string part in path.Split('.'))
        {
            item = item switch
            {
                ObjectValue o => o.Map.Get(part) ?? UndefinedValue.Instance,
                NamespaceValue ns => ns.Map.Get(part) ?? UndefinedValue.Instance,
                ArrayValue a when int.TryParse(part, out int i) && i >= 0 && i < a.Items.Count => a.Items[i],
                _ => UndefinedValue.Instance,
            };
            if (item is UndefinedValue) break;
        }
        return item;
    }

    private static T Arg<T>(List<Value> args, OrderedMap kwargs, int index, string name, T fallback, string what) where T : Value
    {
        var v = index < args.Count ? args[index] : kwargs.Get(name);
        return v switch
        {
            null => fallback,
            T t => t,
            _ => throw Error($"{name} must be {what}"),
        };
    }

    /// <summary>value | name(args): the filters chat templates use, by operand type as @huggingface/jinja dispatches them.</summary>
    public static Value Filter(Value operand, string name, List<Value> args, OrderedMap kwargs)
    {
        switch (name)
        {
            case "safe": return operand;
            case "tojson":
            {
                var indent = kwargs.Get("indent") ?? NullValue.Instance;
                if (indent is not (IntValue or NullValue)) throw Error("If set, indent must be a number");
                var ascii = Arg(args, kwargs, 99, "ensure_ascii", BoolValue.False, "a boolean");
                var sort = Arg(args, kwargs, 99, "sort_keys", BoolValue.False, "a boolean");
                (string, string)? separators = null;
                if (kwargs.Get("separators") is ArrayValue { Items: [StringValue item, StringValue key] }) separators = (item.Value, key.Value);
                else if (kwargs.Get("separators") is { } bad and not NullValue) throw Error("separators must be a tuple of two strings");
                return new StringValue(Json.Write(operand, indent is IntValue i ? (int)i.Value : null, true, ascii.Value, separators, sort.Value));
            }
            case "default":
            {
                var fallback = args.Count > 0 ? args[0] : new StringValue("");
                var boolean = Arg(args, kwargs, 1, "boolean", BoolValue.False, "a boolean");
                return operand is UndefinedValue || (boolean.Value && !operand.IsTrue) ? fallback : operand;
            }
            case "join" when operand is StringValue or ArrayValue:
            {
                var separator = Arg(args, kwargs, 0, "separator", new StringValue(""), "a string");
                var parts = operand is StringValue s ? s.Value.EnumerateRunes().Select(r => r.ToString())
                                                     : ((ArrayValue)operand).Items.Select(x => x is NullValue or UndefinedValue ? "" : JsString(x));
                return new StringValue(string.Join(separator.Value, parts));
            }
            case "int" or "float" when operand is StringValue or IntValue or FloatValue or BoolValue:
            {
                Value fallback = args.Count > 0 ? args[0] : kwargs.Get("default") ?? (name == "int" ? new IntValue(0) : new FloatValue(0));
                switch (operand)
                {
                    case StringValue s:
                        var m = (name == "int" ? IntPrefix() : FloatPrefix()).Match(Lexer.TrimStart(s.Value));
                        if (!m.Success) return fallback;
                        return name == "int" ? new IntValue((long)double.Parse(m.Value, CultureInfo.InvariantCulture))
                                             : new FloatValue(double.Parse(m.Value, CultureInfo.InvariantCulture));
                    case BoolValue b: return name == "int" ? new IntValue(b.Value ? 1 : 0) : new FloatValue(b.Value ? 1 : 0);
                    case FloatValue f when name == "int": return new IntValue((long)Math.Floor(f.Value));
                    case IntValue i when name == "float": return new FloatValue(i.Value);
                    default: return operand;
                }
            }
        }

        // Python's Jinja (what transformers runs) renders undefined as "" in string filters; the JavaScript renderer
        // throws. Being lenient here changes nothing a template renders in both, and lets `x.description | trim`
        // work for a parameter without a description.
        if (operand is UndefinedValue && name is "trim" or "upper" or "lower" or "title" or "capitalize" or "indent" or "string")
            operand = new StringValue("");

        switch (operand)
        {
            case ArrayValue a:
                switch (name)
                {
                    case "list": return a;
                    case "first": return a.Items.Count > 0 ? a.Items[0] : UndefinedValue.Instance;
                    case "last": return a.Items.Count > 0 ? a.Items[^1] : UndefinedValue.Instance;
                    case "length": return new IntValue(a.Items.Count);
                    case "reverse": return new ArrayValue(Enumerable.Reverse(a.Items).ToList());
                    case "string": return new StringValue(Json.Write(a, null, undefinedAsNull: false));
                    case "unique":
                    {
                        var seen = new List<Value>();
                        foreach (var x in a.Items)
                            if (!seen.Any(y => StrictEquals(x, y))) seen.Add(x);
                        return new ArrayValue(seen);
                    }
                    case "sort":
                    {
                        var reverse = Arg(args, kwargs, 0, "reverse", BoolValue.False, "a boolean");
                        var caseSensitive = Arg(args, kwargs, 1, "case_sensitive", BoolValue.False, "a boolean");
                        var attribute = args.Count > 2 ? args[2] : kwargs.Get("attribute") ?? NullValue.Instance;
                        if (attribute is not (StringValue or IntValue or NullValue)) throw Error("attribute must be a string, integer, or null");
                        Value Key(Value x) => attribute is NullValue ? x : Attribute(x, attribute is StringValue s ? s.Value : JsString(attribute));
                        var sorted = a.Items.Order(Comparer<Value>.Create((x, y) =>
                        {
                            int c = Compare(Key(x), Key(y), caseSensitive.Value);
                            return reverse.Value ? -c : c;
                        })).ToList();
                        return new ArrayValue(sorted);
                    }
                    case "selectattr" or "rejectattr" or "select" or "reject":
                    {
                        bool keep = name.StartsWith("select", StringComparison.Ordinal), byAttribute = name.EndsWith("attr", StringComparison.Ordinal);
                        if (byAttribute && a.Items.Any(x => x is not (ObjectValue or NamespaceValue)))
                            throw Error($"`{name}` can only be applied to array of objects");
                        int t = byAttribute ? 1 : 0;
                        string? attr = byAttribute ? (args.Count > 0 ? ((StringValue)args[0]).Value : throw Error($"`{name}` needs an attribute")) : null;
                        string? test = args.Count > t ? JsString(args[t]) : null;
                        Value? against = args.Count > t + 1 ? args[t + 1] : null;
                        var result = a.Items.Where(x =>
                        {
                            Value? v = byAttribute ? (x is ObjectValue o ? o.Map.Get(attr!) : ((NamespaceValue)x).Map.Get(attr!)) : x;
                            bool passed = v is not null && (test is null ? v.IsTrue : Interpreter.Test(test, v, against));
                            return passed == keep;
                        });
                        return new ArrayValue(result.ToList());
                    }
                    case "map":
                    {
                        if (kwargs.Get("attribute") is not StringValue attr) throw Error("`map` needs attribute=\"name\"");
                        var fallback = kwargs.Get("default");
                        return new ArrayValue(a.Items.Select(x =>
                        {
                            if (x is not (ObjectValue or NamespaceValue)) throw Error("items in map must be an object");
                            var v = Attribute(x, attr.Value);
                            return v is UndefinedValue ? fallback ?? v : v;
                        }).ToList());
                    }
                }
                throw Error($"Unknown ArrayValue filter: {name}");
            case StringValue s:
                switch (name)
                {
                    case "length" or "upper" or "lower" or "title" or "capitalize":
                        return Method(s, name) is FunctionValue f ? f.Function([], null!) : Method(s, name)!;
                    case "trim": return new StringValue(Lexer.Trim(s.Value));
                    case "string": return s;
                    case "replace": return ((FunctionValue)Method(s, "replace")!).Function([.. args, new ObjectValue(kwargs, true)], null!);
                    case "indent":
                    {
                        var width = Arg(args, kwargs, 0, "width", new IntValue(4), "a number");
                        bool first = (args.Count > 1 ? args[1] : kwargs.Get("first"))?.IsTrue ?? false;
                        bool blank = (args.Count > 2 ? args[2] : kwargs.Get("blank"))?.IsTrue ?? false;
                        string pad = new(' ', (int)Math.Clamp(width.Value, 0, 1000));
                        var lines = s.Value.Split('\n').Select((line, i) => (!first && i == 0) || (!blank && line.Length == 0) ? line : pad + line);
                        return new StringValue(string.Join("\n", lines));
                    }
                }
                throw Error($"Unknown StringValue filter: {name}");
            case IntValue or FloatValue:
                switch (name)
                {
                    case "abs": return operand is IntValue i ? new IntValue(Math.Abs(i.Value)) : new FloatValue(Math.Abs(((FloatValue)operand).Value));
                    case "string": return new StringValue(operand.ToString());
                }
                throw Error($"Unknown NumericValue filter: {name}");
            case ObjectValue o:
                switch (name)
                {
                    case "length": return new IntValue(o.Map.Count);
                    case "items": return Items(o);
                }
                if (Method(o, name) is FunctionValue method)
                {
                    var callArgs = new List<Value>(args);
                    if (kwargs.Count > 0) callArgs.Add(new ObjectValue(kwargs, true));
                    return method.Function(callArgs, null!);
                }
                throw Error($"Unknown ObjectValue filter: {name}");
            case BoolValue b:
                switch (name)
                {
                    case "bool": return b;
                    case "string": return new StringValue(b.Value ? "true" : "false");
                }
                throw Error($"Unknown BooleanValue filter: {name}");
        }
        throw Error($"Cannot apply filter \"{name}\" to type: {operand.TypeName}");
    }

    [GeneratedRegex(@"^[+-]?\d+")]
    private static partial Regex IntPrefix();

    [GeneratedRegex(@"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)")]
    private static partial Regex FloatPrefix();

    [GeneratedRegex(@"\S+")]
    private static partial Regex NonSpace();

    private static ArrayValue Items(ObjectValue o) =>
        new(o.Map.Select(e => (Value)new ArrayValue([new StringValue(e.Key), e.Value])).ToList());

    private static FunctionValue Fn(Func<List<Value>, Value> body) => new((args, _) => body(args));

    /// <summary>x.name for strings (upper, strip, split, ...), arrays (length) and objects (get, items, keys, values, dictsort).</summary>
    public static Value? Method(Value target, string name)
    {
        switch (target)
        {
            case StringValue str:
            {
                string s = str.Value;
                return name switch
                {
                    "upper" => Fn(_ => new StringValue(Upper(s))),
                    "lower" => Fn(_ => new StringValue(s.ToLowerInvariant())),
                    "strip" => Fn(_ => new StringValue(Lexer.Trim(s))),
                    "lstrip" => Fn(_ => new StringValue(Lexer.TrimStart(s))),
                    "rstrip" => Fn(_ => new StringValue(Lexer.TrimEnd(s))),
                    "title" => Fn(_ => new StringValue(Title(s))),
                    "capitalize" => Fn(_ => new StringValue(s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..])),
                    "length" => new IntValue(s.Length),
                    "startswith" or "endswith" => Fn(args =>
                    {
                        bool start = name == "startswith";
                        bool Matches(string p) => start ? s.StartsWith(p, StringComparison.Ordinal) : s.EndsWith(p, StringComparison.Ordinal);
                        return args switch
                        {
                            [StringValue p, ..] => BoolValue.Of(Matches(p.Value)),
                            [ArrayValue list, ..] => BoolValue.Of(list.Items.Any(x => x is StringValue p ? Matches(p.Value)
                                                                                   : throw Error($"{name}() tuple elements must be strings"))),
                            [] => throw Error($"{name}() requires at least one argument"),
                            _ => throw Error($"{name}() argument must be a string or tuple of strings"),
                        };
                    }),
                    "split" => Fn(args => Split(s, args)),
                    "replace" => Fn(args => Replace(s, args)),
                    _ => null,
                };
            }
            case ArrayValue a:
                return name == "length" ? new IntValue(a.Items.Count) : null;
            case ObjectValue o:
                return name switch
                {
                    "get" => Fn(args => args is [StringValue key, ..]
                        ? o.Map.Get(key.Value) ?? (args.Count > 1 ? args[1] : NullValue.Instance)
                        : throw Error($"Object key must be a string: got {(args.Count > 0 ? args[0].TypeName : "nothing")}")),
                    "items" => Fn(_ => Items(o)),
                    "keys" => Fn(_ => new ArrayValue(o.Map.Keys.Select(k => (Value)new StringValue(k)).ToList())),
                    "values" => Fn(_ => new ArrayValue(o.Map.Select(e => e.Value).ToList())),
                    "dictsort" => Fn(args =>
                    {
                        var (positional, kwargs) = args is [.., ObjectValue { IsKeywordArguments: true } kw] ? (args[..^1], kw.Map) : (args, new OrderedMap());
                        var caseSensitive = Arg(positional, kwargs, 0, "case_sensitive", BoolValue.False, "a boolean");
                        var by = Arg(positional, kwargs, 1, "by", new StringValue("key"), "a string");
                        if (by.Value is not ("key" or "value")) throw Error("by must be either 'key' or 'value'");
                        var reverse = Arg(positional, kwargs, 2, "reverse", BoolValue.False, "a boolean");
                        int index = by.Value == "key" ? 0 : 1;
                        var sorted = Items(o).Items.Order(Comparer<Value>.Create((x, y) =>
                        {
                            int c = Compare(((ArrayValue)x).Items[index], ((ArrayValue)y).Items[index], caseSensitive.Value);
                            return reverse.Value ? -c : c;
                        })).ToList();
                        return new ArrayValue(sorted);
                    }),
                    _ => null,
                };
            default:
                return null;
        }
    }

    /// <summary>JavaScript's toUpperCase: invariant upper case plus the one-to-many mappings (ß to SS, ligatures).</summary>
    internal static string Upper(string s)
    {
        string upper = s.ToUpperInvariant();
        if (!upper.AsSpan().ContainsAny("ßŉﬀﬁﬂﬃﬄﬅﬆ")) return upper;
        var sb = new StringBuilder();
        foreach (char c in upper)
            sb.Append(c switch
            {
                'ß' => "SS", 'ŉ' => "ʼN", 'ﬀ' => "FF", 'ﬁ' => "FI", 'ﬂ' => "FL", 'ﬃ' => "FFI", 'ﬄ' => "FFL", 'ﬅ' or 'ﬆ' => "ST",
                _ => c.ToString(),
            });
        return sb.ToString();
    }

    private static string Title(string s)
    {
        var sb = new StringBuilder(s);
        for (int i = 0; i < sb.Length; i++)
            if (IsAsciiWord(sb[i]) && (i == 0 || !IsAsciiWord(sb[i - 1]))) sb[i] = char.ToUpperInvariant(sb[i]);
        return sb.ToString();

        static bool IsAsciiWord(char c) => char.IsAsciiLetterOrDigit(c) || c == '_';
    }

    /// <summary>Python's str.split(sep=None, maxsplit=-1).</summary>
    private static ArrayValue Split(string s, List<Value> args)
    {
        var sep = args.Count > 0 ? args[0] : NullValue.Instance;
        if (sep is not (StringValue or NullValue)) throw Error("sep argument must be a string or null");
        var max = args.Count > 1 ? args[1] : new IntValue(-1);
        if (max is not IntValue maxSplit) throw Error("maxsplit argument must be a number");
        var result = new List<string>();
        if (sep is StringValue separator)
        {
            if (separator.Value.Length == 0) throw Error("empty separator");
            result.AddRange(s.Split(separator.Value));
            if (maxSplit.Value != -1 && result.Count > maxSplit.Value)
            {
                int keep = (int)Math.Max(maxSplit.Value, 0);
                var rest = string.Join(separator.Value, result.Skip(keep));
                result = [.. result.Take(keep), rest];
            }
        }
        else
        {
            string text = Lexer.TrimStart(s);
            foreach (Match m in NonSpace().Matches(text))
            {
                if (maxSplit.Value != -1 && result.Count >= maxSplit.Value)
                {
                    result.Add(text[m.Index..]);
                    break;
                }
                result.Add(m.Value);
            }
        }
        return new ArrayValue(result.Select(x => (Value)new StringValue(x)).ToList());
    }

    private static StringValue Replace(string s, List<Value> args)
    {
        var (positional, kwargs) = args is [.., ObjectValue { IsKeywordArguments: true } kw] ? (args[..^1], kw.Map) : (args, new OrderedMap());
        if (positional.Count < 2) throw Error("replace() requires at least two arguments");
        if (positional[0] is not StringValue old || positional[1] is not StringValue replacement) throw Error("replace() arguments must be strings");
        var count = positional.Count > 2 ? positional[2] : kwargs.Get("count") ?? NullValue.Instance;
        if (count is not (IntValue or NullValue)) throw Error("replace() count argument must be a number or null");
        long remaining = count is IntValue { Value: >= 0 } c ? c.Value : long.MaxValue;
        var sb = new StringBuilder();
        if (old.Value.Length == 0)
        {
            // Between every character (code point), and at both ends.
            var runes = s.EnumerateRunes().ToList();
            for (int i = 0; i <= runes.Count; i++)
            {
                if (remaining-- > 0) sb.Append(replacement.Value);
                if (i < runes.Count) sb.Append(runes[i].ToString());
            }
            return new StringValue(sb.ToString());
        }
        int pos = 0;
        while (remaining > 0 && s.IndexOf(old.Value, pos, StringComparison.Ordinal) is var at and >= 0)
        {
            sb.Append(s, pos, at - pos).Append(replacement.Value);
            pos = at + old.Value.Length;
            remaining--;
        }
        return new StringValue(sb.Append(s, pos, s.Length - pos).ToString());
    }

    /// <summary>The globals every template sees: true/false/none (also True/False/None), namespace, range, raise_exception, strftime_now.</summary>
    public static void AddGlobals(Scope scope, Func<DateTime> now)
    {
        scope.Set("true", BoolValue.True);
        scope.Set("false", BoolValue.False);
        scope.Set("none", NullValue.Instance);
        scope.Set("True", BoolValue.True);
        scope.Set("False", BoolValue.False);
        scope.Set("None", NullValue.Instance);
        scope.Set("raise_exception", Fn(args => throw new TemplateException(args.Count > 0 ? JsString(args[0]) : "raise_exception() was called", raised: true)));
        scope.Set("namespace", Fn(args =>
        {
            var (positional, kwargs) = args is [.., ObjectValue { IsKeywordArguments: true } kw] ? (args[..^1], kw.Map) : (args, new OrderedMap());
            if (positional.Count > 1) throw Error($"namespace expected at most 1 argument, got {positional.Count}");
            var map = new OrderedMap();
            if (positional is [ObjectValue source]) foreach (var (k, v) in source.Map) map.Set(k, v);
            else if (positional is [var other]) throw Error($"'{other.TypeName}' object is not iterable");
            foreach (var (k, v) in kwargs) map.Set(k, v);
            return new NamespaceValue(map);
        }));
        scope.Set("range", Fn(args =>
        {
            if (args.Count is < 1 or > 3 || args.Any(a => a is not IntValue)) throw Error("range() takes 1 to 3 integers");
            long[] n = args.Select(a => ((IntValue)a).Value).ToArray();
            long start = n.Length > 1 ? n[0] : 0, stop = n.Length > 1 ? n[1] : n[0], step = n.Length > 2 ? n[2] : 1;
            if (step == 0) throw Error("range() step must not be zero");
            var items = new List<Value>();
            for (long i = start; step > 0 ? i < stop : i > stop; i += step)
            {
                if (items.Count >= 1_000_000) throw Error("range() is longer than 1000000 items");
                items.Add(new IntValue(i));
            }
            return new ArrayValue(items);
        }));
        scope.Set("strftime_now", Fn(args =>
        {
            if (args is not [StringValue format, ..]) throw Error("strftime_now() takes a format string");
            var t = now();
            var c = CultureInfo.InvariantCulture;
            return new StringValue(Regex.Replace(format.Value, "%[YmdbBHM%]", m => m.Value[1] switch
            {
                'Y' => t.Year.ToString(c),
                'm' => t.Month.ToString("00", c),
                'd' => t.Day.ToString("00", c),
                'b' => t.ToString("MMM", c),
                'B' => t.ToString("MMMM", c),
                'H' => t.Hour.ToString("00", c),
                'M' => t.Minute.ToString("00", c),
                _ => "%",
            }));
        }));
    }
}
