using System.Text;
using System.Text.RegularExpressions;

namespace LlmKernels.Models.Templates;

internal enum TokenType
{
    Text, NumericLiteral, StringLiteral, Identifier, Equals, OpenParen, CloseParen, OpenStatement, CloseStatement,
    OpenExpression, CloseExpression, OpenSquareBracket, CloseSquareBracket, OpenCurlyBracket, CloseCurlyBracket,
    Comma, Dot, Colon, Pipe, AdditiveBinaryOperator, MultiplicativeBinaryOperator, ExponentiationBinaryOperator,
    ComparisonBinaryOperator, UnaryOperator, Comment,
}

internal sealed record Token(string Value, TokenType Type)
{
    public string Value { get; set; } = Value;
}

/// <summary>
/// Splits a template into tokens the way @huggingface/jinja does (the renderer Hugging Face uses in JavaScript):
/// lstrip_blocks and trim_blocks on, one trailing newline dropped, <c>{%-</c>/<c>-%}</c> strip the whitespace beside
/// them, and <c>true</c>/<c>none</c>/... are identifiers resolved when the template runs.
/// </summary>
internal static partial class Lexer
{
    private static readonly (string Text, TokenType Type)[] Symbols =
    [
        ("{%", TokenType.OpenStatement), ("%}", TokenType.CloseStatement), ("{{", TokenType.OpenExpression),
        ("}}", TokenType.CloseExpression), ("(", TokenType.OpenParen), (")", TokenType.CloseParen),
        ("{", TokenType.OpenCurlyBracket), ("}", TokenType.CloseCurlyBracket), ("[", TokenType.OpenSquareBracket),
        ("]", TokenType.CloseSquareBracket), (",", TokenType.Comma), (".", TokenType.Dot), (":", TokenType.Colon),
        ("|", TokenType.Pipe), ("<=", TokenType.ComparisonBinaryOperator), (">=", TokenType.ComparisonBinaryOperator),
        ("==", TokenType.ComparisonBinaryOperator), ("!=", TokenType.ComparisonBinaryOperator),
        ("<", TokenType.ComparisonBinaryOperator), (">", TokenType.ComparisonBinaryOperator),
        ("+", TokenType.AdditiveBinaryOperator), ("-", TokenType.AdditiveBinaryOperator), ("~", TokenType.AdditiveBinaryOperator),
        ("**", TokenType.ExponentiationBinaryOperator), ("*", TokenType.MultiplicativeBinaryOperator),
        ("//", TokenType.MultiplicativeBinaryOperator), ("/", TokenType.MultiplicativeBinaryOperator),
        ("%", TokenType.MultiplicativeBinaryOperator), ("=", TokenType.Equals),
    ];

    [GeneratedRegex(@"^[ \t]*(\{[#%-])", RegexOptions.Multiline)]
    private static partial Regex LstripBlocks();

    [GeneratedRegex(@"([#%-]\})\n")]
    private static partial Regex TrimBlocks();

    [GeneratedRegex(@"(\s*)\{%(-?)\s*(?:end)?generation\s*(-?)%\}(\s*)", RegexOptions.Singleline)]
    private static partial Regex GenerationTag();

    /// <summary>JavaScript's \s: what String.prototype.trim removes.</summary>
    public static bool IsSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r' or '\u00a0' or '\u1680' or '\u2028'
        or '\u2029' or '\u202f' or '\u205f' or '\u3000' or '\ufeff' || c is >= '\u2000' and <= '\u200a';

    private static bool IsWord(char c) => c is >= 'a' and <= 'z' or >= 'A' and <= 'Z' or >= '0' and <= '9' or '_';

    private static bool IsDigit(char c) => c is >= '0' and <= '9';

    private static string Preprocess(string template)
    {
        if (template.EndsWith('\n')) template = template[..^1];
        template = LstripBlocks().Replace(template, "$1");
        template = TrimBlocks().Replace(template, "$1");
        // transformers' {% generation %} tag marks assistant text for training masks; it renders nothing.
        return GenerationTag().Replace(template, m => (m.Groups[2].Length > 0 ? "" : m.Groups[1].Value) + (m.Groups[3].Length > 0 ? "" : m.Groups[4].Value));
    }

    public static List<Token> Tokenize(string source)
    {
        var tokens = new List<Token>();
        string src = Preprocess(source);
        int pos = 0, curlyDepth = 0;
        char At(int i) => i < src.Length ? src[i] : '\0';
        bool Starts(string s) => pos + s.Length <= src.Length && string.CompareOrdinal(src, pos, s, 0, s.Length) == 0;
        TokenType? Last() => tokens.Count == 0 ? null : tokens[^1].Type;
        TemplateException Error(string what) =>
            new($"chat template syntax error near line {1 + src.AsSpan(0, Math.Min(pos, src.Length)).Count('\n')}: {what}");

        string ConsumeWhile(Func<char, bool> predicate)
        {
            var sb = new StringBuilder();
            while (pos < src.Length && predicate(src[pos]))
            {
                if (src[pos] == '\\')
                {
                    if (++pos >= src.Length) throw Error("unexpected end of input after '\\'");
                    char escaped = src[pos++];
                    if (escaped is 'x' or 'u')
                    {
                        int length = escaped == 'x' ? 2 : 4;
                        string hex = pos + length <= src.Length ? src.Substring(pos, length) : "";
                        if (hex.Length != length || !hex.All(Uri.IsHexDigit)) throw Error($"invalid escape \\{escaped}{hex}");
                        sb.Append((char)Convert.ToInt32(hex, 16));
                        pos += length;
                        continue;
                    }
                    sb.Append(escaped switch
                    {
                        'n' => '\n', 't' => '\t', 'r' => '\r', 'b' => '\b', 'f' => '\f', 'v' => '\v',
                        '\'' => '\'', '"' => '"', '\\' => '\\',
                        _ => throw Error($"unknown escape \\{escaped}"),
                    });
                    continue;
                }
                sb.Append(src[pos++]);
                if (pos >= src.Length) throw Error("unexpected end of input (an unclosed string, {{ or {%?)");
            }
            return sb.ToString();
        }

        void StripTrailingWhitespace()
        {
            if (tokens.Count > 0 && tokens[^1].Type == TokenType.Text)
            {
                tokens[^1].Value = tokens[^1].Value.TrimEnd(JsSpaces);
                if (tokens[^1].Value.Length == 0) tokens.RemoveAt(tokens.Count - 1);
            }
        }

        void SkipLeadingWhitespace()
        {
            while (pos < src.Length && IsSpace(src[pos])) pos++;
        }

        while (pos < src.Length)
        {
            if (Last() is null or TokenType.CloseStatement or TokenType.CloseExpression or TokenType.Comment)
            {
                int start = pos;
                while (pos < src.Length && !(src[pos] == '{' && At(pos + 1) is '%' or '{' or '#')) pos++;
                if (pos > start)
                {
                    tokens.Add(new Token(src[start..pos], TokenType.Text));
                    continue;
                }
            }

            if (Starts("{#"))
            {
                pos += 2;
                bool stripBefore = At(pos) == '-';
                if (stripBefore) pos++;
                int start = pos;
                while (!(At(pos) == '#' && At(pos + 1) == '}'))
                {
                    if (pos + 2 >= src.Length) throw Error("a {# comment is never closed with #}");
                    pos++;
                }
                string comment = src[start..pos];
                bool stripAfter = comment.EndsWith('-');
                if (stripAfter) comment = comment[..^1];
                if (stripBefore) StripTrailingWhitespace();
                tokens.Add(new Token(comment, TokenType.Comment));
                pos += 2;
                if (stripAfter) SkipLeadingWhitespace();
                continue;
            }
            if (Starts("{%-"))
            {
                StripTrailingWhitespace();
                tokens.Add(new Token("{%", TokenType.OpenStatement));
                pos += 3;
                continue;
            }
            if (Starts("{{-"))
            {
                StripTrailingWhitespace();
                tokens.Add(new Token("{{", TokenType.OpenExpression));
                curlyDepth = 0;
                pos += 3;
                continue;
            }

            ConsumeWhile(IsSpace);
            if (pos >= src.Length) break;
            if (Starts("-%}"))
            {
                tokens.Add(new Token("%}", TokenType.CloseStatement));
                pos += 3;
                SkipLeadingWhitespace();
                continue;
            }
            if (Starts("-}}"))
            {
                tokens.Add(new Token("}}", TokenType.CloseExpression));
                pos += 3;
                SkipLeadingWhitespace();
                continue;
            }

            char c = src[pos];
            if (c is '-' or '+')
            {
                var last = Last();
                if (last is null or TokenType.Text) throw Error($"unexpected character '{c}'");
                if (last is not (TokenType.Identifier or TokenType.NumericLiteral or TokenType.StringLiteral or TokenType.CloseParen
                    or TokenType.CloseSquareBracket))
                {
                    pos++;   // a sign: (-1), [-1], not -x
                    string num = ConsumeWhile(IsDigit);
                    if (num.Length > 0 && At(pos) == '.' && IsDigit(At(pos + 1)))
                    {
                        pos++;
                        num = $"{num}.{ConsumeWhile(IsDigit)}";
                    }
                    tokens.Add(new Token(c + num, num.Length > 0 ? TokenType.NumericLiteral : TokenType.UnaryOperator));
                    continue;
                }
            }

            bool matched = false;
            foreach (var (text, type) in Symbols)
            {
                if (text == "}}" && curlyDepth > 0) continue;   // inside an object literal
                if (!Starts(text)) continue;
                tokens.Add(new Token(text, type));
                if (type == TokenType.OpenExpression) curlyDepth = 0;
                else if (type == TokenType.OpenCurlyBracket) curlyDepth++;
                else if (type == TokenType.CloseCurlyBracket) curlyDepth--;
                pos += text.Length;
                matched = true;
                break;
            }
            if (matched) continue;

            if (c is '\'' or '"')
            {
                pos++;
                string s = ConsumeWhile(ch => ch != c);
                tokens.Add(new Token(s, TokenType.StringLiteral));
                pos++;
                continue;
            }
            if (IsDigit(c))
            {
                string num = ConsumeWhile(IsDigit);
                if (Last() != TokenType.Dot && At(pos) == '.' && IsDigit(At(pos + 1)))
                {
                    pos++;
                    num = $"{num}.{ConsumeWhile(IsDigit)}";
                }
                tokens.Add(new Token(num, TokenType.NumericLiteral));
                continue;
            }
            if (IsWord(c))
            {
                tokens.Add(new Token(ConsumeWhile(IsWord), TokenType.Identifier));
                continue;
            }
            throw Error($"unexpected character '{c}'");
        }
        return tokens;
    }

    private static readonly char[] JsSpaces =
        [' ', '\t', '\n', '\v', '\f', '\r', '\u00a0', '\u1680', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\ufeff',
         '\u2000', '\u2001', '\u2002', '\u2003', '\u2004', '\u2005', '\u2006', '\u2007', '\u2008', '\u2009', '\u200a'];

    public static string Trim(string s) => s.Trim(JsSpaces);
    public static string TrimStart(string s) => s.TrimStart(JsSpaces);
    public static string TrimEnd(string s) => s.TrimEnd(JsSpaces);
}
