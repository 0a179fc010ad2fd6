using System.Text.Json;

namespace LlmKernels.Models.Tokenization;

/// <summary>A token the tokenizer.json lists in added_tokens: matched in the text before anything else.</summary>
public sealed record AddedToken(int Id, string Content, bool Special, bool Normalized, bool LStrip, bool RStrip, bool SingleWord);

/// <summary>
/// A Hugging Face tokenizer.json with a BPE model, as used by Llama 2/3, Mistral, Qwen2 and Mixtral:
/// byte-level BPE (GPT-2 / Llama 3 / Qwen2 split regexes) and SentencePiece-style BPE (▁ for spaces, byte
/// fallback). Encoding follows Hugging Face tokenizers: added tokens are split out of the raw text, each
/// remaining piece is normalized, pre-tokenized into words and each word is BPE-encoded; the post-processor
/// adds BOS/EOS when asked. Decoding maps ids to token strings and runs the decoder chain.
/// </summary>
public sealed partial class Tokenizer
{
    private readonly BpeModel _model;
    private readonly Normalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly Decoder? _decoder;
    private readonly List<object> _template = []; // post-processor: int[] (special ids) or null (the sequence)
    private readonly Dictionary<int, AddedToken> _addedById = new();
    private readonly Dictionary<string, int> _addedByContent = new(StringComparer.Ordinal);
    private readonly AddedMatcher _rawMatcher, _normalizedMatcher;

    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>Largest id + 1 over the model vocabulary and the added tokens.</summary>
    public int VocabSize { get; }

    private readonly string _source;

    private Tokenizer(JsonField root, string source)
    {
        _source = source;
        var model = root.Required("model");
        string modelType = model.OptionalString("type") ?? "BPE";
        if (modelType != "BPE")
            throw model.Error($"type is '{modelType}'; only BPE models are supported");
        _model = new BpeModel(model);
        _normalizer = Normalizer.Load(root.Optional("normalizer"));
        _preTokenizer = PreTokenizer.Load(root.Optional("pre_tokenizer"));
        _decoder = Decoder.Load(root.Optional("decoder"));

        var added = new List<AddedToken>();
        if (root.Optional("added_tokens") is JsonField list)
        {
            foreach (var t in list.Items())
            {
                bool special = t.OptionalBool("special", false);
                var token = new AddedToken(t.Required("id").TokenId(), t.Required("content").String(), special,
                    t.OptionalBool("normalized", !special), t.OptionalBool("lstrip", false), t.OptionalBool("rstrip", false),
                    t.OptionalBool("single_word", false));
                if (token.Content.Length == 0) throw t.Error("has empty content");
                if (!_addedById.TryAdd(token.Id, token)) throw t.Error($"reuses id {token.Id}");
                _addedByContent.TryAdd(token.Content, token.Id);
                added.Add(token);
            }
        }
        AddedTokens = added;
        _rawMatcher = new AddedMatcher(added.Where(a => !a.Normalized).Select(a => (a.Content, a)));
        _normalizedMatcher = new AddedMatcher(added.Where(a => a.Normalized)
            .Select(a => (_normalizer?.Normalize(a.Content) ?? a.Content, a)));
        VocabSize = Math.Max(_model.VocabSize, added.Count == 0 ? 0 : added.Max(a => a.Id) + 1);

        LoadPostProcessor(root.Optional("post_processor"));
    }

    public static Tokenizer FromFile(string path) => FromJson(ModelFile.ReadSmallFile(path), path);

    public static Tokenizer FromJson(string json, string source = "tokenizer.json") =>
        FromJson(System.Text.Encoding.UTF8.GetBytes(json), source);

    public static Tokenizer FromJson(byte[] utf8, string source = "tokenizer.json")
    {
        using var doc = ModelFile.ParseJson(utf8, source);
        return new Tokenizer(new JsonField(doc.RootElement, source, ""), source);
    }

    /// <summary>
    /// Throws a <see cref="ModelFormatException"/> unless every id this tokenizer can produce (its vocabulary, its
    /// added tokens, the post-processor's special tokens) is below <paramref name="modelVocabSize"/>, the
    /// vocab_size of the model it feeds: a larger id means the tokenizer belongs to another model.
    /// </summary>
    public void RequireIdsBelow(int modelVocabSize)
    {
        var (id, what) = AddedTokens.Select(a => (a.Id, $"added token '{a.Content}'"))
            .Concat(_template.OfType<int[]>().SelectMany(ids => ids).Select(i => (i, "a special token of the post-processor")))
            .Append((_model.VocabSize - 1, "the largest id of the vocabulary"))
            .MaxBy(t => t.Item1);
        if (id >= modelVocabSize)
            throw new ModelFormatException($"{_source}: {what} has id {id}, not below the model's vocab_size ({modelVocabSize}); is this the model's tokenizer?");
    }

    public int? TokenToId(string token) => _addedByContent.TryGetValue(token, out int id) ? id : _model.TokenToId(token);

    public string? IdToToken(int id) => _addedById.TryGetValue(id, out var a) ? a.Content : _model.IdToToken(id);

    public bool IsSpecial(int id) => _addedById.TryGetValue(id, out var a) && a.Special;

    /// <summary>Token ids of <paramref name="text"/>; with addSpecialTokens the post-processor's BOS/EOS too.</summary>
    public int[] Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        // Added tokens that match raw text come out first; the rest is normalized piece by piece.
        foreach (var (raw, rawToken, rawAtStart) in _rawMatcher.Split(text, true))
        {
            if (rawToken is not null) { ids.Add(rawToken.Id); continue; }
            string normalized = _normalizer?.Normalize(raw) ?? raw;
            foreach (var (piece, token, atStart) in _normalizedMatcher.Split(normalized, rawAtStart))
            {
                if (token is not null) { ids.Add(token.Id); continue; }
                var words = new List<Piece> { new(piece, atStart) };
                if (_preTokenizer is not null) words = _preTokenizer.Apply(words);
                foreach (var w in words) _model.Tokenize(w.Text, ids);
            }
        }
        if (!addSpecialTokens || _template.Count == 0) return ids.ToArray();
        var output = new List<int>(ids.Count + 2);
        foreach (var item in _template)
        {
            if (item is int[] special) output.AddRange(special);
            else output.AddRange(ids);
        }
        return output.ToArray();
    }

    /// <summary>Text of <paramref name="ids"/>. Ids with no token are skipped, as Hugging Face does.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var tokens = new List<string>();
        foreach (int id in ids)
        {
            if (skipSpecialTokens && IsSpecial(id)) continue;
            if (IdToToken(id) is string t) tokens.Add(t);
        }
        return _decoder is null ? string.Join(" ", tokens) : string.Concat(_decoder.DecodeChain(tokens));
    }

    private void LoadPostProcessor(JsonField? node)
    {
        if (node is not JsonField n) return;
        string type = n.Type();
        switch (type)
        {
            case "ByteLevel": // only adjusts offsets
                return;
            case "Sequence":
                foreach (var p in n.Required("processors").Items())
                    if (p.Type() != "ByteLevel")
                    {
                        if (_template.Count > 0) throw p.Error("is a second template; only one is supported");
                        LoadPostProcessor(p);
                    }
                return;
            case "TemplateProcessing":
                var specials = new Dictionary<string, int[]>();
                if (n.Optional("special_tokens") is JsonField st)
                    foreach (var (name, value) in st.Properties())
                        specials[name] = value.Required("ids").Items().Select(i => i.TokenId()).ToArray();
                foreach (var item in n.Required("single").Items())
                {
                    if (item.Optional("SpecialToken") is JsonField s)
                    {
                        string id = s.Required("id").String();
                        _template.Add(specials.TryGetValue(id, out var ids) ? ids
                            : throw s.Error($"names special token '{id}', which special_tokens does not define"));
                    }
                    else if (item.Optional("Sequence") is not null) _template.Add(null!);
                    else throw item.Error("expected SpecialToken or Sequence");
                }
                if (!_template.Contains(null!)) throw n.Error("single template has no $A sequence");
                return;
            default:
                throw n.Error($"has type '{type}'; supported post-processors: TemplateProcessing, ByteLevel, Sequence");
        }
    }

    /// <summary>Leftmost-longest matching of added tokens, honoring lstrip, rstrip and single_word.</summary>
    private sealed class AddedMatcher
    {
        private readonly Dictionary<char, List<(string Content, AddedToken Token)>> _byFirst = new();

        public AddedMatcher(IEnumerable<(string Content, AddedToken Token)> tokens)
        {
            foreach (var t in tokens)
            {
                if (t.Content.Length == 0) continue;
                if (!_byFirst.TryGetValue(t.Content[0], out var list)) _byFirst[t.Content[0]] = list = [];
                list.Add(t);
            }
            foreach (var list in _byFirst.Values) list.Sort((a, b) => b.Content.Length.CompareTo(a.Content.Length));
        }

        /// <summary>The text as pieces (Token null) and matched added tokens, in order; empty pieces dropped.</summary>
        public List<(string Text, AddedToken? Token, bool AtStart)> Split(string text, bool atStart)
        {
            var result = new List<(string, AddedToken?, bool)>();
            if (_byFirst.Count == 0)
            {
                if (text.Length > 0) result.Add((text, null, atStart));
                return result;
            }
            int pieceStart = 0;
            for (int i = 0; i < text.Length; i++)
            {
                if (!_byFirst.TryGetValue(text[i], out var candidates)) continue;
                foreach (var (content, token) in candidates)
                {
                    if (i + content.Length > text.Length || string.CompareOrdinal(text, i, content, 0, content.Length) != 0) continue;
                    int end = i + content.Length;
                    if (token.SingleWord && ((i > 0 && IsWordChar(text[i - 1])) || (end < text.Length && IsWordChar(text[end]))))
                        continue;
                    int start = i;
                    if (token.LStrip) while (start > pieceStart && char.IsWhiteSpace(text[start - 1])) start--;
                    if (token.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
                    if (start > pieceStart) result.Add((text[pieceStart..start], null, atStart && pieceStart == 0));
                    result.Add((content, token, false));
                    pieceStart = end;
                    i = end - 1;
                    break;
                }
            }
            if (pieceStart < text.Length) result.Add((text[pieceStart..], null, atStart && pieceStart == 0));
            return result;
        }

        private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';
    }
}
