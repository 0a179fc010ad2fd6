using System.Globalization;
using System.Text;

namespace LlmKernels.Models.Templates;

/// <summary>Variables of one level: the globals, a for loop's body, a macro call.</summary>
internal sealed class Scope(Scope? parent = null)
{
    private readonly Dictionary<string, Value> _variables = new(StringComparer.Ordinal);

    public Value Lookup(string name)
    {
        for (var s = this; s is not null; s = s.Parent)
            if (s._variables.TryGetValue(name, out var v)) return v;
        return UndefinedValue.Instance;
    }

    public Scope? Parent { get; } = parent;

    public void Set(string name, Value value) => _variables[name] = value;
}

/// <summary>
/// Runs a template's syntax tree with @huggingface/jinja's semantics (the reference the tests compare against):
/// JavaScript-style equality and number formatting, {% set %} in a loop body local to the loop, macros that see
/// the caller's variables. Every failure is a <see cref="TemplateException"/>.
/// </summary>
internal sealed class Interpreter
{
    private const int MaxCallDepth = 200;
    private int _depth;

    private sealed class BreakSignal : Exception;
    private sealed class ContinueSignal : Exception;

    public string Render(List<Node> program, Scope scope) => Block(program, scope);

    private string Block(List<Node> statements, Scope scope)
    {
        var sb = new StringBuilder();
        foreach (var statement in statements)
        {
            var value = Evaluate(statement, scope);
            if (value is not (NullValue or UndefinedValue)) sb.Append(value.ToString());
        }
        return sb.ToString();
    }

    private static TemplateException Error(string message) => new(message);

    private Value Evaluate(Node? node, Scope scope)
    {
        switch (node)
        {
            case null: return UndefinedValue.Instance;
            case TextNode t: return new StringValue(t.Text);
            case CommentNode: return NullValue.Instance;
            case LiteralNode l: return l.Value;
            case IdentifierNode id: return scope.Lookup(id.Name);
            case IfNode n: return new StringValue(Block(Evaluate(n.Test, scope).IsTrue ? n.Body : n.Alternate, scope));
            case ForNode n: return For(n, scope);
            case SetNode n: return Set(n, scope);
            case MacroNode n: return Macro(n, scope);
            case FilterBlockNode n: return ApplyFilter(new StringValue(Block(n.Body, scope)), n.Filter, scope);
            case BreakNode: throw new BreakSignal();
            case ContinueNode: throw new ContinueSignal();
            case ArrayNode n: return new ArrayValue(n.Items.Select(x => Evaluate(x, scope)).ToList(), n.IsTuple);
            case ObjectNode n:
            {
                var map = new OrderedMap();
                foreach (var (k, v) in n.Entries)
                {
                    if (Evaluate(k, scope) is not StringValue key) throw Error("Object keys must be strings");
                    map.Set(key.Value, Evaluate(v, scope));
                }
                return new ObjectValue(map);
            }
            case MemberNode n: return Member(n, scope);
            case CallNode n:
            {
                var args = Arguments(n.Arguments, scope);
                var callee = Evaluate(n.Callee, scope);
                if (callee is not FunctionValue f) throw Error($"Cannot call something that is not a function: got {callee.TypeName}");
                return f.Function(args, scope);
            }
            case UnaryNode n: return Unary(n, scope);
            case BinaryNode n: return Binary(n, scope);
            case FilterNode n: return ApplyFilter(Evaluate(n.Operand, scope), n.Filter, scope);
            case TestNode n:
            {
                var operand = Evaluate(n.Operand, scope);
                return BoolValue.Of(Test(n.Test, operand, null) != n.Negate);
            }
            case SelectNode n: return Evaluate(n.Test, scope).IsTrue ? Evaluate(n.Value, scope) : UndefinedValue.Instance;
            case TernaryNode n: return Evaluate(Evaluate(n.Condition, scope).IsTrue ? n.IfTrue : n.IfFalse, scope);
            case SliceNode: throw Error("a slice [a:b] is only valid as a subscript");
            case KeywordArgumentNode: throw Error("a keyword argument is only valid in a call");
            default: throw Error($"unknown node {node.GetType().Name}");
        }
    }

    /// <summary>Positional values, then the keyword arguments (if any) as one last KeywordArguments object.</summary>
    private List<Value> Arguments(List<Node> nodes, Scope scope)
    {
        var args = nodes.Where(a => a is not KeywordArgumentNode).Select(a => Evaluate(a, scope)).ToList();
        var kwargs = new OrderedMap();
        foreach (var a in nodes.OfType<KeywordArgumentNode>())
        {
            if (kwargs.Has(a.Name)) throw Error($"Got multiple values for keyword argument '{a.Name}'");
            kwargs.Set(a.Name, Evaluate(a.Value, scope));
        }
        if (kwargs.Count > 0) args.Add(new ObjectValue(kwargs, isKeywordArguments: true));
        return args;
    }

    private static (List<Value> Positional, OrderedMap Keywords) Split(List<Value> args) =>
        args is [.., ObjectValue { IsKeywordArguments: true } kw] ? (args[..^1], kw.Map) : (args, new OrderedMap());

    private Value Set(SetNode n, Scope scope)
    {
        var value = n.Value is not null ? Evaluate(n.Value, scope) : new StringValue(Block(n.Body, scope));
        switch (n.Target)
        {
            case IdentifierNode id:
                scope.Set(id.Name, value);
                break;
            case ArrayNode { IsTuple: true } tuple:
                if (value is not ArrayValue items) throw Error($"Cannot unpack non-iterable type in set: {value.TypeName}");
                if (items.Items.Count != tuple.Items.Count)
                    throw Error($"Too {(tuple.Items.Count > items.Items.Count ? "few" : "many")} items to unpack in set");
                for (int i = 0; i < tuple.Items.Count; i++)
                {
                    if (tuple.Items[i] is not IdentifierNode name) throw Error("Cannot unpack to non-identifier in set");
                    scope.Set(name.Name, items.Items[i]);
                }
                break;
            case MemberNode { Computed: false, Property: IdentifierNode property } member:
                if (Evaluate(member.Object, scope) is not NamespaceValue ns) throw Error("cannot assign attribute on non-namespace object");
                ns.Map.Set(property.Name, value);
                break;
            default:
                throw Error("Invalid left-hand side of {% set %}");
        }
        return NullValue.Instance;
    }

    private Value For(ForNode n, Scope outer)
    {
        var scope = new Scope(outer);
        Node iterableNode = n.Iterable, test = null!;
        if (n.Iterable is SelectNode select)
        {
            iterableNode = select.Value;
            test = select.Test;
        }
        var iterable = Evaluate(iterableNode, scope);
        List<Value> all = iterable switch
        {
            ArrayValue a => a.Items,
            ObjectValue o => o.Map.Keys.Select(k => (Value)new StringValue(k)).ToList(),
            _ => throw Error($"Expected iterable or object type in for loop: got {iterable.TypeName}"),
        };

        void Bind(Scope s, Value item)
        {
            if (n.Target is IdentifierNode id)
            {
                s.Set(id.Name, item);
                return;
            }
            var names = ((ArrayNode)n.Target).Items;
            if (item is not ArrayValue values) throw Error($"Cannot unpack non-iterable type: {item.TypeName}");
            if (values.Items.Count != names.Count) throw Error($"Too {(names.Count > values.Items.Count ? "few" : "many")} items to unpack");
            for (int j = 0; j < names.Count; j++)
            {
                if (names[j] is not IdentifierNode name) throw Error("Cannot unpack non-identifier type");
                s.Set(name.Name, values.Items[j]);
            }
        }

        var items = new List<Value>();
        foreach (var item in all)
        {
            if (test is not null)
            {
                var filterScope = new Scope(scope);
                Bind(filterScope, item);
                if (!Evaluate(test, filterScope).IsTrue) continue;
            }
            items.Add(item);
        }

        var sb = new StringBuilder();
        bool none = true;
        for (int i = 0; i < items.Count; i++)
        {
            var loop = new OrderedMap();
            loop.Set("index", new IntValue(i + 1));
            loop.Set("index0", new IntValue(i));
            loop.Set("revindex", new IntValue(items.Count - i));
            loop.Set("revindex0", new IntValue(items.Count - i - 1));
            loop.Set("first", BoolValue.Of(i == 0));
            loop.Set("last", BoolValue.Of(i == items.Count - 1));
            loop.Set("length", new IntValue(items.Count));
            loop.Set("previtem", i > 0 ? items[i - 1] : UndefinedValue.Instance);
            loop.Set("nextitem", i < items.Count - 1 ? items[i + 1] : UndefinedValue.Instance);
            scope.Set("loop", new ObjectValue(loop));
            Bind(scope, items[i]);
            try
            {
                sb.Append(Block(n.Body, scope));
            }
            catch (ContinueSignal)
            {
                continue;
            }
            catch (BreakSignal)
            {
                break;
            }
            none = false;
        }
        if (none) sb.Append(Block(n.Else, scope));
        return new StringValue(sb.ToString());
    }

    private Value Macro(MacroNode n, Scope scope)
    {
        scope.Set(n.Name, new FunctionValue((args, callerScope) =>
        {
            if (++_depth > MaxCallDepth) throw Error($"macro {n.Name}: calls nest deeper than {MaxCallDepth} (endless recursion?)");
            try
            {
                var local = new Scope(callerScope);
                var (positional, keywords) = Split(args);
                if (positional.Count > n.Parameters.Count)
                    throw Error($"macro '{n.Name}' takes not more than {n.Parameters.Count} argument(s)");
                var defaults = new List<(string, Node)>();
                for (int i = 0; i < n.Parameters.Count; i++)
                {
                    var (name, fallback) = n.Parameters[i] is KeywordArgumentNode k ? (k.Name, k.Value) : (((IdentifierNode)n.Parameters[i]).Name, null);
                    Value? value = i < positional.Count ? positional[i] : keywords.Get(name);
                    if (value is null && fallback is not null) defaults.Add((name, fallback));
                    local.Set(name, value ?? UndefinedValue.Instance);
                }
                foreach (var key in keywords.Keys)
                    if (!n.Parameters.Any(p => (p is KeywordArgumentNode k ? k.Name : ((IdentifierNode)p).Name) == key))
                        throw Error($"macro '{n.Name}' takes no keyword argument '{key}'");
                foreach (var (name, fallback) in defaults) local.Set(name, Evaluate(fallback, local));
                return new StringValue(Block(n.Body, local));
            }
            finally
            {
                _depth--;
            }
        }));
        return NullValue.Instance;
    }

    private Value Member(MemberNode n, Scope scope)
    {
        var obj = Evaluate(n.Object, scope);
        Value property;
        if (n.Computed)
        {
            if (n.Property is SliceNode slice) return Slice(obj, slice, scope);
            property = Evaluate(n.Property, scope);
        }
        else property = n.Property is IdentifierNode id ? new StringValue(id.Name) : ((LiteralNode)n.Property).Value;

        Value? value;
        switch (obj)
        {
            case ObjectValue or NamespaceValue:
                if (property is not StringValue key) throw Error($"Cannot access property with non-string: got {property.TypeName}");
                value = obj is ObjectValue o ? o.Map.Get(key.Value) ?? Builtins.Method(o, key.Value) : ((NamespaceValue)obj).Map.Get(key.Value);
                break;
            case ArrayValue or StringValue:
                if (property is IntValue index)
                {
                    if (obj is ArrayValue a) value = At(a.Items.Count, index.Value) is int i ? a.Items[i] : null;
                    else
                    {
                        string s = ((StringValue)obj).Value;
                        value = At(s.Length, index.Value) is int i ? new StringValue(s[i].ToString()) : null;
                    }
                }
                else if (property is StringValue name) value = Builtins.Method(obj, name.Value);
                else throw Error($"Cannot access property with non-string/non-number: got {property.TypeName}");
                break;
            default:
                if (property is not StringValue) throw Error($"Cannot access property with non-string: got {property.TypeName}");
                value = null;
                break;
        }
        return value ?? UndefinedValue.Instance;
    }

    /// <summary>Array.prototype.at: negative indices count from the end.</summary>
    private static int? At(int length, long index)
    {
        long i = index < 0 ? length + index : index;
        return i >= 0 && i < length ? (int)i : null;
    }

    private Value Slice(Value obj, SliceNode n, Scope scope)
    {
        long? Part(Node? node, string what) => Evaluate(node, scope) switch
        {
            IntValue i => i.Value,
            UndefinedValue => null,
            _ => throw Error($"Slice {what} must be numeric or undefined"),
        };
        long? start = Part(n.Start, "start"), stop = Part(n.Stop, "stop"), step = Part(n.Step, "step");
        if (step == 0) throw Error("slice step cannot be zero");
        switch (obj)
        {
            case ArrayValue a: return new ArrayValue(SliceList(a.Items, start, stop, step ?? 1));
            case StringValue s:
                var runes = s.Value.EnumerateRunes().Select(r => r.ToString()).ToList();
                return new StringValue(string.Concat(SliceList(runes, start, stop, step ?? 1)));
            default: throw Error("Slice object must be an array or string");
        }
    }

    /// <summary>Python's list[start:stop:step].</summary>
    private static List<T> SliceList<T>(List<T> list, long? start, long? stop, long step)
    {
        long n = list.Count;
        long a, b;
        if (step > 0)
        {
            a = start is long s0 ? (s0 < 0 ? Math.Max(n + s0, 0) : Math.Min(s0, n)) : 0;
            b = stop is long e0 ? (e0 < 0 ? Math.Max(n + e0, 0) : Math.Min(e0, n)) : n;
        }
        else
        {
            a = start is long s1 ? (s1 < 0 ? Math.Max(n + s1, -1) : Math.Min(s1, n - 1)) : n - 1;
            b = stop is long e1 ? (e1 < -1 ? Math.Max(n + e1, -1) : Math.Min(e1, n - 1)) : -1;
        }
        var result = new List<T>();
        for (long i = a; step > 0 ? i < b : i > b; i += step) result.Add(list[(int)i]);
        return result;
    }

    private Value Unary(UnaryNode n, Scope scope)
    {
        var v = Evaluate(n.Operand, scope);
        if (n.Operator == "not") return BoolValue.Of(!v.IsTrue);
        int sign = n.Operator == "-" ? -1 : 1;
        return v switch
        {
            IntValue i => new IntValue(sign * i.Value),
            FloatValue f => new FloatValue(sign * f.Value),
            BoolValue b => new IntValue(sign * (b.Value ? 1 : 0)),
            _ => throw Error($"Unknown operator \"{n.Operator}\" for {v.TypeName}"),
        };
    }

    private Value Binary(BinaryNode n, Scope scope)
    {
        var left = Evaluate(n.Left, scope);
        if (n.Operator == "and") return left.IsTrue ? Evaluate(n.Right, scope) : left;
        if (n.Operator == "or") return left.IsTrue ? left : Evaluate(n.Right, scope);
        var right = Evaluate(n.Right, scope);
        string op = n.Operator;
        if (op == "==") return BoolValue.Of(Builtins.LooseEquals(left, right));
        if (op == "!=") return BoolValue.Of(!Builtins.LooseEquals(left, right));

        if (left is UndefinedValue || right is UndefinedValue)
        {
            if (right is UndefinedValue && op is "in" or "not in") return BoolValue.Of(op == "not in");
            throw Error($"Cannot perform operation {op} on undefined values");
        }
        if (left is NullValue || right is NullValue) throw Error("Cannot perform operation on null values");
        if (op == "~") return new StringValue(Builtins.JsString(left) + Builtins.JsString(right));
        if (op == "**" && Builtins.IsNumeric(left, bools: true) && Builtins.IsNumeric(right, bools: true))
        {
            double a = Builtins.Number(left), b = Builtins.Number(right);
            if (a == 0 && b < 0) throw Error("0.0 cannot be raised to a negative power");
            double result = Math.Pow(a, b);
            if (!double.IsFinite(result)) throw Error("Exponentiation result is not a finite real number");
            return left is FloatValue || right is FloatValue || b < 0 ? new FloatValue(result) : new IntValue((long)result);
        }
        if (Builtins.IsNumeric(left, bools: false) && Builtins.IsNumeric(right, bools: false))
        {
            bool isFloat = left is FloatValue || right is FloatValue;
            if (!isFloat && op is "+" or "-" or "*" or "//" or "%")
            {
                long a = ((IntValue)left).Value, b = ((IntValue)right).Value;
                if (b == 0 && op is "//" or "%") throw Error("integer division or modulo by zero");
                return new IntValue(op switch
                {
                    "+" => a + b,
                    "-" => a - b,
                    "*" => a * b,
                    "//" => (long)Math.Floor((double)a / b),
                    _ => a % b,
                });
            }
            double x = Builtins.Number(left), y = Builtins.Number(right);
            switch (op)
            {
                case "+": return new FloatValue(x + y);
                case "-": return new FloatValue(x - y);
                case "*": return new FloatValue(x * y);
                case "/": return new FloatValue(x / y);
                case "//": return new FloatValue(Math.Floor(x / y));
                case "%": return new FloatValue(x % y);   // JavaScript's remainder: the sign of x
                case "<": return BoolValue.Of(x < y);
                case ">": return BoolValue.Of(x > y);
                case "<=": return BoolValue.Of(x <= y);
                case ">=": return BoolValue.Of(x >= y);
            }
        }
        else if (left is ArrayValue la && right is ArrayValue ra)
        {
            if (op == "+") return new ArrayValue([.. la.Items, .. ra.Items]);
        }
        else if (right is ArrayValue list)
        {
            bool member = list.Items.Any(x => Builtins.StrictEquals(x, left));
            if (op == "in") return BoolValue.Of(member);
            if (op == "not in") return BoolValue.Of(!member);
        }
        if ((left is StringValue || right is StringValue) && op == "+")
            return new StringValue(Builtins.JsString(left) + Builtins.JsString(right));
        if (left is StringValue ls && right is StringValue rs && op is "in" or "not in")
            return BoolValue.Of(rs.Value.Contains(ls.Value, StringComparison.Ordinal) == (op == "in"));
        if (left is StringValue key && right is ObjectValue obj && op is "in" or "not in")
            return BoolValue.Of(obj.Map.Has(key.Value) == (op == "in"));
        throw Error($"Unknown operator \"{op}\" between {left.TypeName} and {right.TypeName}");
    }

    internal static bool Test(string name, Value v, Value? other) => name switch
    {
        "boolean" => v is BoolValue,
        "callable" => v is FunctionValue,
        "odd" => v is IntValue i ? i.Value % 2 != 0 : throw Error($"cannot odd on {v.TypeName}"),
        "even" => v is IntValue i ? i.Value % 2 == 0 : throw Error($"cannot even on {v.TypeName}"),
        "false" => v is BoolValue { Value: false },
        "true" => v is BoolValue { Value: true },
        "none" => v is NullValue,
        "string" => v is StringValue,
        "number" => v is IntValue or FloatValue,
        "integer" => v is IntValue,
        "iterable" => v is ArrayValue or StringValue,
        "mapping" => v is ObjectValue,
        "sequence" => v is ArrayValue or ObjectValue or StringValue,
        "lower" => v is StringValue s && s.Value == s.Value.ToLowerInvariant(),
        "upper" => v is StringValue s && s.Value == Builtins.Upper(s.Value),
        "defined" => v is not UndefinedValue,
        "undefined" => v is UndefinedValue,
        "equalto" or "eq" => Builtins.StrictEquals(v, other ?? UndefinedValue.Instance),
        _ => throw Error($"Unknown test: {name}"),
    };

    private Value ApplyFilter(Value operand, Node filterNode, Scope scope)
    {
        if (filterNode is IdentifierNode id) return Builtins.Filter(operand, id.Name, [], new OrderedMap());
        var call = (CallNode)filterNode;
        string name = ((IdentifierNode)call.Callee).Name;
        if (name is "selectattr" or "rejectattr" && call.Arguments.Any(a => a is not LiteralNode { Value: StringValue }))
            throw Error($"arguments of `{name}` must be strings");
        var (positional, keywords) = Split(Arguments(call.Arguments, scope));
        return Builtins.Filter(operand, name, positional, keywords);
    }
}
