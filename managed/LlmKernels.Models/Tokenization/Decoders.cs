using System.Globalization;
using System.Text;

namespace LlmKernels.Models.Tokenization;

/// <summary>A tokenizer.json decoder: a chain step over the token strings, as Hugging Face's decode_chain.</summary>
internal abstract class Decoder
{
    public abstract List<string> DecodeChain(List<string> tokens);

    public static Decoder? Load(JsonField? node)
    {
        if (node is not JsonField n) return null;
        string type = n.Type();
        return type switch
        {
            "Sequence" => new SequenceDecoder(n.Required("decoders").Items().Select(i => Load(i)!).ToArray()),
            "ByteLevel" => new ByteLevelDecoder(),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Strip" => new StripDecoder(StripContent(n), n.OptionalInt("start", 0, 0), n.OptionalInt("stop", 0, 0)),
            "Replace" => new ReplaceDecoder(Pattern.Load(n.Required("pattern")), n.Required("content").String()),
            "Metaspace" => new MetaspaceDecoder(Metaspace.Load(n)),
            _ => throw n.Error($"has type '{type}'; supported decoders: Sequence, ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace"),
        };
    }

    private static string StripContent(JsonField n)
    {
        string c = n.Required("content").String();
        return c.EnumerateRunes().Count() == 1 ? c : throw n.Error($"content '{c}' must be one character");
    }

    /// <summary>UTF-8 bytes to text, each invalid sequence becoming U+FFFD (as Rust's from_utf8_lossy).</summary>
    public static string Utf8Lossy(List<byte> bytes) => Encoding.UTF8.GetString(bytes.ToArray());
}

internal sealed class SequenceDecoder(Decoder[] steps) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        foreach (var s in steps) tokens = s.DecodeChain(tokens);
        return tokens;
    }
}

/// <summary>Visible characters back to bytes; a token with a character outside the map keeps its own UTF-8.</summary>
internal sealed class ByteLevelDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var t in tokens)
        {
            if (t.All(ByteLevelMap.CharToByte.ContainsKey)) bytes.AddRange(t.Select(c => ByteLevelMap.CharToByte[c]));
            else bytes.AddRange(Encoding.UTF8.GetBytes(t));
        }
        return [Utf8Lossy(bytes)];
    }
}

/// <summary>Runs of &lt;0xNN&gt; tokens to their text; a run that is not valid UTF-8 gives one U+FFFD per byte.</summary>
internal sealed class ByteFallbackDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        var run = new List<byte>();
        void Flush()
        {
            if (run.Count == 0) return;
            try
            {
                output.Add(new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(run.ToArray()));
            }
            catch (DecoderFallbackException)
            {
                for (int i = 0; i < run.Count; i++) output.Add("\uFFFD");
            }
            run.Clear();
        }
        foreach (var t in tokens)
        {
            if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
                && byte.TryParse(t.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out byte b))
            {
                run.Add(b);
                continue;
            }
            Flush();
            output.Add(t);
        }
        Flush();
        return output;
    }
}

internal sealed class FuseDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary>Removes up to start leading and stop trailing occurrences of content from each token.</summary>
internal sealed class StripDecoder(string content, int start, int stop) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => tokens.Select(Strip).ToList();

    private string Strip(string token)
    {
        var runes = token.EnumerateRunes().Select(r => r.ToString()).ToList();
        int from = 0;
        while (from < start && from < runes.Count && runes[from] == content) from++;
        int to = runes.Count;
        while (runes.Count - to < stop && to > from && runes[to - 1] == content) to--;
        return string.Concat(runes.Skip(from).Take(to - from));
    }
}

internal sealed class ReplaceDecoder(Pattern pattern, string content) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => tokens.Select(t => pattern.Replace(t, content)).ToList();
}

/// <summary>Replacement back to spaces; the first token's leading one dropped when encoding prepends it.</summary>
internal sealed class MetaspaceDecoder(Metaspace m) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            var sb = new StringBuilder(tokens[i].Length);
            for (int c = 0; c < tokens[i].Length; c++)
            {
                if (tokens[i][c] != m.Replacement) sb.Append(tokens[i][c]);
                // As Hugging Face: every replacement in the first token is dropped when encoding prepends one.
                else if (!(i == 0 && m.Prepend != PrependScheme.Never)) sb.Append(' ');
            }
            output.Add(sb.ToString());
        }
        return output;
    }
}
