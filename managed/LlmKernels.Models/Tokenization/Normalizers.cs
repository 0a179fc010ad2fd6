using System.Text;
using System.Text.RegularExpressions;

namespace LlmKernels.Models.Tokenization;

/// <summary>A tokenizer.json normalizer: text -> text, applied to each piece between added tokens.</summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);

    public static Normalizer? Load(JsonField? node)
    {
        if (node is not JsonField n) return null;
        string type = n.Type();
        return type switch
        {
            "Sequence" => new SequenceNormalizer(n.Required("normalizers").Items().Select(i => Load(i)!).ToArray()),
            "Prepend" => new PrependNormalizer(n.Required("prepend").String()),
            "Replace" => new ReplaceNormalizer(Pattern.Load(n.Required("pattern")), n.Required("content").String()),
            "NFC" => new UnicodeNormalizer(NormalizationForm.FormC),
            "NFD" => new UnicodeNormalizer(NormalizationForm.FormD),
            "NFKC" => new UnicodeNormalizer(NormalizationForm.FormKC),
            "NFKD" => new UnicodeNormalizer(NormalizationForm.FormKD),
            "Lowercase" => new LowercaseNormalizer(),
            "Strip" => new StripNormalizer(n.OptionalBool("strip_left", true), n.OptionalBool("strip_right", true)),
            _ => throw n.Error($"has type '{type}'; supported normalizers: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip"),
        };
    }
}

internal sealed class SequenceNormalizer(Normalizer[] steps) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (var s in steps) text = s.Normalize(text);
        return text;
    }
}

/// <summary>Llama 2's "▁" in front of every non-empty piece.</summary>
internal sealed class PrependNormalizer(string prepend) : Normalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prepend + text;
}

internal sealed class ReplaceNormalizer(Pattern pattern, string content) : Normalizer
{
    public override string Normalize(string text) => pattern.Replace(text, content);
}

internal sealed class UnicodeNormalizer(NormalizationForm form) : Normalizer
{
    public override string Normalize(string text) => text.Normalize(form);
}

internal sealed class LowercaseNormalizer : Normalizer
{
    public override string Normalize(string text) => text.ToLowerInvariant();
}

internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text) => left && right ? text.Trim() : left ? text.TrimStart() : right ? text.TrimEnd() : text;
}

/// <summary>The {"String": s} or {"Regex": r} pattern of Replace and Split.</summary>
internal sealed class Pattern
{
    private readonly string? _literal;
    private readonly Regex? _regex;

    private Pattern(string? literal, Regex? regex) { _literal = literal; _regex = regex; }

    public static Pattern FromRegex(string source) =>
        new(null, new Regex(source, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(10)));

    public static Pattern Load(JsonField node)
    {
        if (node.Optional("String") is JsonField s) return new Pattern(s.String(), null);
        if (node.Optional("Regex") is JsonField r)
        {
            string source = r.String();
            try
            {
                return FromRegex(source);
            }
            catch (ArgumentException e)
            {
                throw r.Error($"is not a regular expression .NET accepts: {e.Message}");
            }
        }
        throw node.Error("expected {\"String\": ...} or {\"Regex\": ...}");
    }

    public string Replace(string text, string content) =>
        _literal is not null ? (_literal.Length == 0 ? text : text.Replace(_literal, content, StringComparison.Ordinal))
                             : _regex!.Replace(text, content.Replace("$", "$$"));

    /// <summary>Non-empty matches as (start, length), left to right.</summary>
    public IEnumerable<(int Start, int Length)> Matches(string text)
    {
        if (_literal is not null)
        {
            if (_literal.Length == 0) yield break;
            for (int i = text.IndexOf(_literal, StringComparison.Ordinal); i >= 0;
                 i = text.IndexOf(_literal, i + _literal.Length, StringComparison.Ordinal))
                yield return (i, _literal.Length);
            yield break;
        }
        foreach (Match m in _regex!.Matches(text))
            if (m.Length > 0) yield return (m.Index, m.Length);
    }
}
