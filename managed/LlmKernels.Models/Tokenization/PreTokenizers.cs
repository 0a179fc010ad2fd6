namespace LlmKernels.Models.Tokenization;

/// <summary>A piece of text on its way to the model. AtStart: it begins at offset 0 of the input.</summary>
internal readonly record struct Piece(string Text, bool AtStart);

internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>A tokenizer.json pre-tokenizer: splits pieces into smaller pieces (words), possibly rewriting them.</summary>
internal abstract class PreTokenizer
{
    public abstract void Apply(Piece piece, List<Piece> output);

    public List<Piece> Apply(List<Piece> pieces)
    {
        var output = new List<Piece>(pieces.Count * 2);
        foreach (var p in pieces) Apply(p, output);
        return output;
    }

    /// <summary>GPT-2's split regex, used by ByteLevel with use_regex.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static PreTokenizer? Load(JsonField? node)
    {
        if (node is not JsonField n) return null;
        string type = n.Type();
        return type switch
        {
            "Sequence" => new SequencePreTokenizer(n.Required("pretokenizers").Items().Select(i => Load(i)!).ToArray()),
            "ByteLevel" => new ByteLevelPreTokenizer(n.OptionalBool("add_prefix_space", true), n.OptionalBool("use_regex", true)),
            "Split" => new SplitPreTokenizer(Pattern.Load(n.Required("pattern")), ParseBehavior(n.Required("behavior")),
                                             n.OptionalBool("invert", false)),
            "Metaspace" => new MetaspacePreTokenizer(Metaspace.Load(n), n.OptionalBool("split", true)),
            "Digits" => new DigitsPreTokenizer(n.OptionalBool("individual_digits", false)),
            _ => throw n.Error($"has type '{type}'; supported pre-tokenizers: Sequence, ByteLevel, Split, Metaspace, Digits"),
        };
    }

    private static SplitBehavior ParseBehavior(JsonField node)
    {
        string s = node.String();
        return Enum.TryParse<SplitBehavior>(s, false, out var b) && Enum.IsDefined(b)
            ? b
            : throw node.Error($"is '{s}'; expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
    }

    /// <summary>Hugging Face's split of a text by matches under a delimiter behavior; empty parts are dropped.</summary>
    public static void Split(Piece piece, IEnumerable<(int Start, int Length)> matches, SplitBehavior behavior,
                             bool invert, List<Piece> output)
    {
        string text = piece.Text;
        var parts = new List<(int Start, int End, bool Match)>();
        int at = 0;
        foreach (var (start, length) in matches)
        {
            if (start > at) parts.Add((at, start, invert));
            parts.Add((start, start + length, !invert));
            at = start + length;
        }
        if (at < text.Length) parts.Add((at, text.Length, invert));

        var merged = new List<(int Start, int End)>();
        bool previousMatch = false;
        switch (behavior)
        {
            case SplitBehavior.Removed:
                merged.AddRange(parts.Where(p => !p.Match).Select(p => (p.Start, p.End)));
                break;
            case SplitBehavior.Isolated:
                merged.AddRange(parts.Select(p => (p.Start, p.End)));
                break;
            case SplitBehavior.MergedWithPrevious:
                foreach (var p in parts)
                {
                    if (p.Match && !previousMatch && merged.Count > 0) merged[^1] = (merged[^1].Start, p.End);
                    else merged.Add((p.Start, p.End));
                    previousMatch = p.Match;
                }
                break;
            case SplitBehavior.MergedWithNext:
                for (int i = parts.Count - 1; i >= 0; i--)
                {
                    var p = parts[i];
                    if (p.Match && !previousMatch && merged.Count > 0) merged[^1] = (p.Start, merged[^1].End);
                    else merged.Add((p.Start, p.End));
                    previousMatch = p.Match;
                }
                merged.Reverse();
                break;
            case SplitBehavior.Contiguous:
                for (int i = 0; i < parts.Count; i++)
                {
                    var p = parts[i];
                    if (i > 0 && p.Match == previousMatch) merged[^1] = (merged[^1].Start, p.End);
                    else merged.Add((p.Start, p.End));
                    previousMatch = p.Match;
                }
                break;
        }
        foreach (var (start, end) in merged)
            if (end > start) output.Add(new Piece(text[start..end], piece.AtStart && start == 0));
    }
}

internal sealed class SequencePreTokenizer(PreTokenizer[] steps) : PreTokenizer
{
    public override void Apply(Piece piece, List<Piece> output)
    {
        var pieces = new List<Piece> { piece };
        foreach (var s in steps) pieces = s.Apply(pieces);
        output.AddRange(pieces);
    }
}

/// <summary>GPT-2 byte level: optional leading space, optional GPT-2 regex split, then bytes -> visible characters.</summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : PreTokenizer
{
    private static readonly Pattern Gpt2 = Pattern.FromRegex(Gpt2Pattern);

    public override void Apply(Piece piece, List<Piece> output)
    {
        string text = addPrefixSpace && !piece.Text.StartsWith(' ') ? " " + piece.Text : piece.Text;
        var words = new List<Piece>();
        if (useRegex) Split(piece with { Text = text }, Gpt2.Matches(text), SplitBehavior.Isolated, false, words);
        else words.Add(piece with { Text = text });
        foreach (var w in words) output.Add(w with { Text = ByteLevelMap.Encode(w.Text) });
    }
}

internal sealed class SplitPreTokenizer(Pattern pattern, SplitBehavior behavior, bool invert) : PreTokenizer
{
    public override void Apply(Piece piece, List<Piece> output) =>
        Split(piece, pattern.Matches(piece.Text), behavior, invert, output);
}

/// <summary>Digits: numbers apart from the rest, each digit alone with individual_digits.</summary>
internal sealed class DigitsPreTokenizer(bool individual) : PreTokenizer
{
    public override void Apply(Piece piece, List<Piece> output)
    {
        var matches = new List<(int, int)>();
        for (int i = 0; i < piece.Text.Length; i++)
            if (char.IsDigit(piece.Text[i])) matches.Add((i, 1));
        Split(piece, matches, individual ? SplitBehavior.Isolated : SplitBehavior.Contiguous, false, output);
    }
}

internal enum PrependScheme { Always, First, Never }

/// <summary>SentencePiece's space handling shared by the Metaspace pre-tokenizer and decoder.</summary>
internal sealed record Metaspace(char Replacement, PrependScheme Prepend)
{
    public static Metaspace Load(JsonField n)
    {
        string replacement = n.OptionalString("replacement") ?? "\u2581";
        if (replacement.Length != 1) throw n.Error($"replacement '{replacement}' must be one character");
        PrependScheme scheme;
        if (n.OptionalString("prepend_scheme") is string s)
            scheme = s switch
            {
                "always" => PrependScheme.Always,
                "first" => PrependScheme.First,
                "never" => PrependScheme.Never,
                _ => throw n.Error($"prepend_scheme is '{s}', expected always, first or never"),
            };
        else // files older than prepend_scheme spell it add_prefix_space
            scheme = n.OptionalBool("add_prefix_space", true) ? PrependScheme.Always : PrependScheme.Never;
        return new Metaspace(replacement[0], scheme);
    }
}

internal sealed class MetaspacePreTokenizer(Metaspace m, bool split) : PreTokenizer
{
    public override void Apply(Piece piece, List<Piece> output)
    {
        if (piece.Text.Length == 0) return;
        string text = piece.Text.Replace(' ', m.Replacement);
        bool prepend = m.Prepend == PrependScheme.Always || (m.Prepend == PrependScheme.First && piece.AtStart);
        if (prepend && !text.StartsWith(m.Replacement)) text = m.Replacement + text;
        var p = piece with { Text = text };
        if (!split)
        {
            output.Add(p);
            return;
        }
        var matches = new List<(int, int)>();
        for (int i = 0; i < text.Length; i++)
            if (text[i] == m.Replacement) matches.Add((i, 1));
        Split(p, matches, SplitBehavior.MergedWithNext, false, output);
    }
}
