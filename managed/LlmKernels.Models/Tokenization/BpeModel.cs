namespace LlmKernels.Models.Tokenization;

/// <summary>
/// Byte-pair encoding as Hugging Face tokenizers' BPE model: a word starts as one symbol per character
/// (a character missing from the vocabulary becomes its UTF-8 bytes as &lt;0xNN&gt; tokens with
/// byte_fallback, else the unk token, consecutive unks fused with fuse_unk); then the adjacent pair with
/// the lowest merge rank is merged, leftmost first, until no pair has a merge.
/// </summary>
internal sealed class BpeModel
{
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<int, string> _idToToken = new();
    private readonly Dictionary<(int Left, int Right), (int Rank, int NewId)> _merges = new();
    private readonly int? _unkId;
    private readonly bool _fuseUnk, _byteFallback, _ignoreMerges;
    private readonly string? _continuingSubwordPrefix, _endOfWordSuffix;
    private readonly int[]? _byteTokens; // id of <0xNN>, when every byte has one
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    /// <summary>Largest id + 1.</summary>
    public int VocabSize { get; }

    public BpeModel(JsonField model)
    {
        _vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        int maxId = -1;
        foreach (var (token, id) in model.Required("vocab").Properties())
        {
            int value = id.TokenId();
            if (!_vocab.TryAdd(token, value)) throw id.Error("appears twice in the vocabulary");
            maxId = Math.Max(maxId, value);
        }
        // An empty vocabulary would encode every text to nothing (the prompt silently becoming BOS alone).
        if (_vocab.Count == 0) throw model.Required("vocab").Error("is empty; a BPE model needs its tokens");
        VocabSize = maxId + 1;
        foreach (var (token, id) in _vocab)
        {
            if (!_idToToken.TryAdd(id, token))
                throw model.Error($"vocab gives id {id} to both '{_idToToken[id]}' and '{token}'");
        }

        _continuingSubwordPrefix = model.OptionalString("continuing_subword_prefix");
        _endOfWordSuffix = model.OptionalString("end_of_word_suffix");
        _fuseUnk = model.OptionalBool("fuse_unk", false);
        _byteFallback = model.OptionalBool("byte_fallback", false);
        _ignoreMerges = model.OptionalBool("ignore_merges", false);
        if (model.Optional("dropout") is JsonField dropout && dropout.Element.ValueKind == System.Text.Json.JsonValueKind.Number
            && dropout.Element.GetDouble() > 0)
            throw dropout.Error("is set; BPE dropout is a training-time option this tokenizer does not apply");
        if (model.OptionalString("unk_token") is string unk)
        {
            if (!_vocab.TryGetValue(unk, out int unkId)) throw model.Error($"unk_token '{unk}' is not in the vocabulary");
            _unkId = unkId;
        }
        if (_byteFallback)
        {
            var bytes = new int[256];
            bool all = true;
            for (int b = 0; b < 256 && all; b++) all = _vocab.TryGetValue($"<0x{b:X2}>", out bytes[b]);
            _byteTokens = all ? bytes : null;
        }

        int rank = 0;
        foreach (var merge in model.Required("merges").Items())
        {
            // Two spellings: "a b" (older files) and ["a", "b"] (tokenizers >= 0.20, allows spaces in tokens).
            string left, right;
            if (merge.Element.ValueKind == System.Text.Json.JsonValueKind.String)
            {
                string s = merge.String();
                int space = s.IndexOf(' ', 1);
                if (space < 0) throw merge.Error($"is \"{s}\", expected two tokens separated by a space");
                left = s[..space];
                right = s[(space + 1)..];
            }
            else
            {
                var parts = merge.Items().ToList();
                if (parts.Count != 2) throw merge.Error($"has {parts.Count} parts, expected [left, right]");
                left = parts[0].String();
                right = parts[1].String();
            }
            if (!_vocab.TryGetValue(left, out int l)) throw merge.Error($"left token '{left}' is not in the vocabulary");
            if (!_vocab.TryGetValue(right, out int r)) throw merge.Error($"right token '{right}' is not in the vocabulary");
            string joined = left + (right.StartsWith(_continuingSubwordPrefix ?? "\0", StringComparison.Ordinal)
                ? right[_continuingSubwordPrefix!.Length..] : right);
            if (!_vocab.TryGetValue(joined, out int merged)) throw merge.Error($"merged token '{joined}' is not in the vocabulary");
            _merges[(l, r)] = (rank++, merged);
        }
    }

    public int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    public string? IdToToken(int id) => _idToToken.GetValueOrDefault(id);

    /// <summary>Token ids of one pre-tokenized word, appended to <paramref name="output"/>.</summary>
    public void Tokenize(string word, List<int> output)
    {
        if (word.Length == 0) return;
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole))
        {
            output.Add(whole);
            return;
        }
        if (!_cache.TryGetValue(word, out var ids))
        {
            ids = Merge(InitialSymbols(word));
            // Short words repeat; a whole line (SentencePiece style, no pre-tokenizer) is not worth keeping.
            if (word.Length <= 64 && _cache.Count < 100_000) _cache[word] = ids;
        }
        output.AddRange(ids);
    }

    private List<int> InitialSymbols(string word)
    {
        var symbols = new List<int>(word.Length);
        int? pendingUnk = null;
        for (int i = 0; i < word.Length;)
        {
            int length = char.IsSurrogatePair(word, i) ? 2 : 1; // one symbol per code point
            string s = word.Substring(i, length);
            bool first = i == 0;
            i += length;
            if (!first && _continuingSubwordPrefix is not null) s = _continuingSubwordPrefix + s;
            if (i == word.Length && _endOfWordSuffix is not null) s += _endOfWordSuffix;

            if (_vocab.TryGetValue(s, out int id))
            {
                if (pendingUnk is int u) symbols.Add(u);
                pendingUnk = null;
                symbols.Add(id);
                continue;
            }
            if (_byteTokens is not null)
            {
                if (pendingUnk is int u) symbols.Add(u);
                pendingUnk = null;
                foreach (byte b in System.Text.Encoding.UTF8.GetBytes(word.Substring(i - length, length)))
                    symbols.Add(_byteTokens[b]);
                continue;
            }
            if (_unkId is int unk)
            {
                // fuse_unk: a run of unknown characters is one unk token.
                if (pendingUnk is int u && !_fuseUnk) symbols.Add(u);
                pendingUnk = unk;
            }
            // Without unk or byte fallback the character is dropped, as Hugging Face tokenizers does.
        }
        if (pendingUnk is int last) symbols.Add(last);
        return symbols;
    }

    /// <summary>Applies merges lowest rank first (leftmost on ties) over a linked list of symbols.</summary>
    private int[] Merge(List<int> ids)
    {
        int n = ids.Count;
        var id = ids.ToArray();
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; alive[i] = true; }

        var queue = new PriorityQueue<(int Pos, int NewId), (int Rank, int Pos)>();
        for (int i = 0; i + 1 < n; i++)
            if (_merges.TryGetValue((id[i], id[i + 1]), out var m)) queue.Enqueue((i, m.NewId), (m.Rank, i));

        while (queue.TryDequeue(out var top, out _))
        {
            int pos = top.Pos;
            if (!alive[pos] || next[pos] < 0) continue;
            int right = next[pos];
            // A stale entry: one side has been merged since it was queued.
            if (!_merges.TryGetValue((id[pos], id[right]), out var current) || current.NewId != top.NewId) continue;

            id[pos] = top.NewId;
            alive[right] = false;
            next[pos] = next[right];
            if (next[pos] >= 0) prev[next[pos]] = pos;

            if (prev[pos] >= 0 && _merges.TryGetValue((id[prev[pos]], id[pos]), out var before))
                queue.Enqueue((prev[pos], before.NewId), (before.Rank, prev[pos]));
            if (next[pos] >= 0 && _merges.TryGetValue((id[pos], id[next[pos]]), out var after))
                queue.Enqueue((pos, after.NewId), (after.Rank, pos));
        }

        var result = new List<int>(n);
        for (int i = 0; i < n; i++) if (alive[i]) result.Add(id[i]);
        return result.ToArray();
    }
}
