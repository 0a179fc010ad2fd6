using System.Globalization;

namespace LlmKernels.Models.Templates;

/// <summary>Tokens to a syntax tree, with @huggingface/jinja's grammar and operator precedence.</summary>
internal sealed class Parser(List<Token> source)
{
    private readonly List<Token> tokens = source;
    private int _pos;

    public static List<Node> Parse(string source)
    {
        var parser = new Parser(Lexer.Tokenize(source));
        var program = new List<Node>();
        while (parser._pos < parser.tokens.Count) program.Add(parser.ParseAny());
        return program;
    }

    private static TemplateException Error(string what) => new($"chat template syntax error: {what}");

    private Token Current => _pos < tokens.Count ? tokens[_pos] : throw Error("unexpected end of the template (an unclosed block?)");

    private bool Is(params TokenType[] types) =>
        _pos + types.Length <= tokens.Count && types.Select((t, i) => tokens[_pos + i].Type == t).All(x => x);

    private bool IsIdentifier(params string[] names) =>
        _pos + names.Length <= tokens.Count
        && names.Select((n, i) => tokens[_pos + i].Type == TokenType.Identifier && tokens[_pos + i].Value == n).All(x => x);

    private bool IsStatement(params string[] names) =>
        _pos + 1 < tokens.Count && tokens[_pos].Type == TokenType.OpenStatement && tokens[_pos + 1].Type == TokenType.Identifier
        && names.Contains(tokens[_pos + 1].Value);

    private Token Expect(TokenType type, string what)
    {
        var token = Current;
        if (token.Type != type) throw Error($"expected {what}, found '{token.Value}'");
        _pos++;
        return token;
    }

    private void ExpectIdentifier(string name)
    {
        if (!IsIdentifier(name)) throw Error($"expected '{name}', found '{Current.Value}'");
        _pos++;
    }

    private void ExpectEnd(string name)
    {
        Expect(TokenType.OpenStatement, $"{{% {name} %}}");
        ExpectIdentifier(name);
        Expect(TokenType.CloseStatement, "%}");
    }

    /// <summary>Statements up to (not including) one of the given block tags.</summary>
    private List<Node> Block(params string[] until)
    {
        var body = new List<Node>();
        while (!IsStatement(until))
        {
            if (_pos >= tokens.Count) throw Error($"missing {{% {until[^1]} %}}");
            body.Add(ParseAny());
        }
        return body;
    }

    private Node ParseAny()
    {
        var token = Current;
        switch (token.Type)
        {
            case TokenType.Comment:
                _pos++;
                return new CommentNode();
            case TokenType.Text:
                _pos++;
                return new TextNode(token.Value);
            case TokenType.OpenStatement:
                return ParseStatement();
            case TokenType.OpenExpression:
                _pos++;
                var expression = ParseExpression();
                Expect(TokenType.CloseExpression, "}}");
                return expression;
            default:
                throw Error($"unexpected '{token.Value}'");
        }
    }

    private Node ParseStatement()
    {
        Expect(TokenType.OpenStatement, "{%");
        var name = Current;
        if (name.Type != TokenType.Identifier) throw Error($"expected a statement name after {{%, found '{name.Value}'");
        _pos++;
        switch (name.Value)
        {
            case "set":
                return ParseSet();
            case "if":
            {
                var node = ParseIf();
                ExpectEnd("endif");
                return node;
            }
            case "for":
            {
                var node = ParseFor();
                ExpectEnd("endfor");
                return node;
            }
            case "macro":
            {
                var macroName = Expect(TokenType.Identifier, "a macro name").Value;
                var parameters = ParseArguments();
                foreach (var p in parameters)
                    if (p is not (IdentifierNode or KeywordArgumentNode)) throw Error($"macro {macroName}: a parameter must be a name or name=default");
                Expect(TokenType.CloseStatement, "%}");
                var node = new MacroNode(macroName, parameters, Block("endmacro"));
                ExpectEnd("endmacro");
                return node;
            }
            case "filter":
            {
                Node filter = ParsePrimary();
                if (filter is not IdentifierNode) throw Error("expected a filter name after {% filter");
                if (Is(TokenType.OpenParen)) filter = ParseCall(filter);
                Expect(TokenType.CloseStatement, "%}");
                var node = new FilterBlockNode(filter, Block("endfilter"));
                ExpectEnd("endfilter");
                return node;
            }
            case "break":
                Expect(TokenType.CloseStatement, "%}");
                return new BreakNode();
            case "continue":
                Expect(TokenType.CloseStatement, "%}");
                return new ContinueNode();
            default:
                throw Error($"unknown or unsupported statement '{{% {name.Value} %}}'");
        }
    }

    private Node ParseSet()
    {
        var target = ParseSequence(primary: false);
        if (Is(TokenType.Equals))
        {
            _pos++;
            var value = ParseSequence(primary: false);
            Expect(TokenType.CloseStatement, "%}");
            return new SetNode(target, value, []);
        }
        Expect(TokenType.CloseStatement, "%}");
        var body = Block("endset");
        ExpectEnd("endset");
        return new SetNode(target, null, body);
    }

    private IfNode ParseIf()
    {
        var test = ParseExpression();
        Expect(TokenType.CloseStatement, "%}");
        var body = Block("elif", "else", "endif");
        var alternate = new List<Node>();
        if (IsStatement("elif"))
        {
            _pos += 2;
            alternate.Add(ParseIf());
        }
        else if (IsStatement("else"))
        {
            _pos += 2;
            Expect(TokenType.CloseStatement, "%}");
            alternate = Block("endif");
        }
        return new IfNode(test, body, alternate);
    }

    private ForNode ParseFor()
    {
        var target = ParseSequence(primary: true);
        if (target is not (IdentifierNode or ArrayNode { IsTuple: true })) throw Error("expected a name or names after {% for");
        if (!IsIdentifier("in")) throw Error("expected 'in' after the loop variable");
        _pos++;
        var iterable = ParseExpression();
        Expect(TokenType.CloseStatement, "%}");
        var body = Block("endfor", "else");
        var otherwise = new List<Node>();
        if (IsStatement("else"))
        {
            _pos += 2;
            Expect(TokenType.CloseStatement, "%}");
            otherwise = Block("endfor");
        }
        return new ForNode(target, iterable, body, otherwise);
    }

    /// <summary>One expression, or several separated by commas (a tuple).</summary>
    private Node ParseSequence(bool primary)
    {
        Func<Node> next = primary ? ParsePrimary : ParseExpression;
        var items = new List<Node> { next() };
        bool tuple = Is(TokenType.Comma);
        while (tuple)
        {
            _pos++;
            items.Add(next());
            if (!Is(TokenType.Comma)) break;
        }
        return tuple ? new ArrayNode(items, IsTuple: true) : items[0];
    }

    private const int MaxNesting = 200;
    private int _nesting;

    private Node ParseExpression()
    {
        if (++_nesting > MaxNesting) throw Error($"expressions nest deeper than {MaxNesting}");
        try
        {
            return ParseConditional();
        }
        finally
        {
            _nesting--;
        }
    }

    private Node ParseConditional()
    {
        var a = ParseOr();
        if (!IsIdentifier("if")) return a;
        _pos++;
        var test = ParseOr();
        if (!IsIdentifier("else")) return new SelectNode(a, test);
        _pos++;
        return new TernaryNode(test, a, ParseExpression());
    }

    /// <summary>operand (op operand)*, left-associative; <paramref name="op"/> consumes and names the operator, or gives null.</summary>
    private static Node LeftAssociative(Func<Node> operand, Func<string?> op)
    {
        var left = operand();
        while (op() is { } name) left = new BinaryNode(name, left, operand());
        return left;
    }

    private string? Keyword(string name)
    {
        if (!IsIdentifier(name)) return null;
        _pos++;
        return name;
    }

    private string? Symbol(TokenType type) => Is(type) ? tokens[_pos++].Value : null;

    private Node ParseOr() => LeftAssociative(ParseAnd, () => Keyword("or"));

    private Node ParseAnd() => LeftAssociative(ParseNot, () => Keyword("and"));

    private Node ParseNot()
    {
        if (Keyword("not") is null) return ParseComparison();
        return new UnaryNode("not", ParseNot());
    }

    /// <summary>Comparisons and membership share one level, left to right: a in b == c is (a in b) == c.</summary>
    private Node ParseComparison() => LeftAssociative(ParseAdditive, () =>
    {
        if (IsIdentifier("not", "in"))
        {
            _pos += 2;
            return "not in";
        }
        return Keyword("in") ?? Symbol(TokenType.ComparisonBinaryOperator);
    });

    private Node ParseAdditive() => LeftAssociative(ParseMultiplicative, () => Symbol(TokenType.AdditiveBinaryOperator));

    private Node ParseMultiplicative() => LeftAssociative(ParsePower, () => Symbol(TokenType.MultiplicativeBinaryOperator));

    private Node ParsePower() => LeftAssociative(ParseTest, () => Symbol(TokenType.ExponentiationBinaryOperator));

    private Node ParseTest()
    {
        var operand = ParseFilter();
        while (IsIdentifier("is"))
        {
            _pos++;
            bool negate = IsIdentifier("not");
            if (negate) _pos++;
            if (ParsePrimary() is not IdentifierNode test) throw Error("expected a test name after 'is'");
            operand = new TestNode(operand, negate, test.Name);
        }
        return operand;
    }

    private Node ParseFilter()
    {
        var operand = ParseSign();
        while (Is(TokenType.Pipe))
        {
            _pos++;
            Node filter = ParsePrimary();
            if (filter is not IdentifierNode) throw Error("expected a filter name after '|'");
            if (Is(TokenType.OpenParen)) filter = ParseCall(filter);
            operand = new FilterNode(operand, filter);
        }
        return operand;
    }

    private Node ParseSign()
    {
        if (_pos < tokens.Count && tokens[_pos].Type is TokenType.UnaryOperator or TokenType.AdditiveBinaryOperator
            && tokens[_pos].Value is "-" or "+")
        {
            string op = tokens[_pos++].Value;
            return new UnaryNode(op, ParseSign());
        }
        var member = ParseMember(ParsePrimary());
        return Is(TokenType.OpenParen) ? ParseCall(member) : member;
    }

    private Node ParseCall(Node callee)
    {
        Node call = ParseMember(new CallNode(callee, ParseArguments()));
        return Is(TokenType.OpenParen) ? ParseCall(call) : call;
    }

    /// <summary>(a, b, key=value): positional arguments first, then keyword arguments.</summary>
    private List<Node> ParseArguments()
    {
        Expect(TokenType.OpenParen, "(");
        var args = new List<Node>();
        bool keywords = false;
        while (!Is(TokenType.CloseParen))
        {
            var argument = ParseExpression();
            if (Is(TokenType.Equals))
            {
                _pos++;
                if (argument is not IdentifierNode key) throw Error("expected a name before '=' in an argument list");
                argument = new KeywordArgumentNode(key.Name, ParseExpression());
                keywords = true;
            }
            else if (keywords) throw Error("positional arguments must come before keyword arguments");
            args.Add(argument);
            if (Is(TokenType.Comma)) _pos++;
        }
        _pos++;
        return args;
    }

    private Node ParseMember(Node obj)
    {
        while (Is(TokenType.Dot) || Is(TokenType.OpenSquareBracket))
        {
            bool computed = tokens[_pos++].Type == TokenType.OpenSquareBracket;
            Node property;
            if (computed)
            {
                property = ParseSubscript();
                Expect(TokenType.CloseSquareBracket, "]");
            }
            else
            {
                property = ParsePrimary();
                if (property is not (IdentifierNode or LiteralNode { Value: IntValue })) throw Error("expected a name or an integer after '.'");
            }
            obj = new MemberNode(obj, property, computed);
        }
        return obj;
    }

    /// <summary>[key], [start:stop:step] with any part left out.</summary>
    private Node ParseSubscript()
    {
        var parts = new List<Node?>();
        bool slice = false;
        while (!Is(TokenType.CloseSquareBracket))
        {
            if (Is(TokenType.Colon))
            {
                parts.Add(null);
                _pos++;
                slice = true;
            }
            else
            {
                parts.Add(ParseExpression());
                if (Is(TokenType.Colon))
                {
                    _pos++;
                    slice = true;
                }
            }
        }
        if (parts.Count == 0) throw Error("empty []");
        if (!slice) return parts[0]!;
        if (parts.Count > 3) throw Error("a slice takes at most 3 parts");
        return new SliceNode(parts[0], parts.ElementAtOrDefault(1), parts.ElementAtOrDefault(2));
    }

    private Node ParsePrimary()
    {
        var token = Current;
        _pos++;
        switch (token.Type)
        {
            case TokenType.NumericLiteral:
                return new LiteralNode(token.Value.Contains('.')
                    ? new FloatValue(double.Parse(token.Value, CultureInfo.InvariantCulture))
                    : new IntValue(long.Parse(token.Value, CultureInfo.InvariantCulture)));
            case TokenType.StringLiteral:
            {
                string value = token.Value;
                while (Is(TokenType.StringLiteral)) value += tokens[_pos++].Value;
                return new LiteralNode(new StringValue(value));
            }
            case TokenType.Identifier:
                return new IdentifierNode(token.Value);
            case TokenType.OpenParen:
            {
                var expression = ParseSequence(primary: false);
                Expect(TokenType.CloseParen, ")");
                return expression;
            }
            case TokenType.OpenSquareBracket:
            {
                var items = new List<Node>();
                while (!Is(TokenType.CloseSquareBracket))
                {
                    items.Add(ParseExpression());
                    if (Is(TokenType.Comma)) _pos++;
                }
                _pos++;
                return new ArrayNode(items, IsTuple: false);
            }
            case TokenType.OpenCurlyBracket:
            {
                var entries = new List<(Node, Node)>();
                while (!Is(TokenType.CloseCurlyBracket))
                {
                    var key = ParseExpression();
                    Expect(TokenType.Colon, "':' between a key and its value");
                    entries.Add((key, ParseExpression()));
                    if (Is(TokenType.Comma)) _pos++;
                }
                _pos++;
                return new ObjectNode(entries);
            }
            default:
                throw Error($"unexpected '{token.Value}'");
        }
    }
}
