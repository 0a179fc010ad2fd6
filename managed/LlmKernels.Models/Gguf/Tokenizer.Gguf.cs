using System.Text.Json;
using LlmKernels.Models.Gguf;

namespace LlmKernels.Models.Tokenization;

public sealed partial class Tokenizer
{
    // GGUF token_type values (llama.cpp's llama_token_type).
    private const int UnknownToken = 2, ControlToken = 3, UserDefinedToken = 4;

    /// <summary>The split regexes of Llama 3's and Qwen2's tokenizer.json (tokenizer.ggml.pre "llama3" / "qwen2").</summary>
    private const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Qwen2Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static Tokenizer FromGguf(GgufFile file) => FromGguf(file.Metadata, file.Path);

    /// <summary>
    /// The tokenizer in GGUF metadata, as the tokenizer.json Hugging Face's GGUF converter makes of it:
    /// tokenizer.ggml.model "llama" is SentencePiece BPE (merges built from the scores unless the file stores them, byte fallback, ▁ for
    /// spaces), "gpt2" byte-level BPE with tokenizer.ggml.merges and the split regex tokenizer.ggml.pre names.
    /// Control and unknown tokens are special added tokens, user-defined ones plain added tokens;
    /// add_bos_token / add_eos_token make the post-processor.
    /// </summary>
    public static Tokenizer FromGguf(IReadOnlyDictionary<string, object> metadata, string source)
    {
        var m = new GgufMetadata(metadata, source);
        string model = m.String("tokenizer.ggml.model");
        if (model is not ("llama" or "gpt2"))
            throw m.Error("tokenizer.ggml.model", $"is '{model}'; supported: llama (SentencePiece), gpt2 (byte-level BPE)");
        bool spm = model == "llama";
        var tokens = m.OptionalArray<string>("tokenizer.ggml.tokens") ?? throw m.Error("tokenizer.ggml.tokens", "is missing");
        var types = m.OptionalArray<int>("tokenizer.ggml.token_type");
        if (types is not null && types.Length != tokens.Length)
            throw m.Error("tokenizer.ggml.token_type", $"has {types.Length} entries for {tokens.Length} tokens");
        int? TokenId(string key)
        {
            int? id = m.OptionalInt(key);
            if (id >= tokens.Length) throw m.Error(key, $"is {id}, past the {tokens.Length} tokens");
            return id;
        }
        int? bos = TokenId("tokenizer.ggml.bos_token_id"), eos = TokenId("tokenizer.ggml.eos_token_id");
        int? unk = TokenId("tokenizer.ggml.unknown_token_id"), pad = TokenId("tokenizer.ggml.padding_token_id");
        string pre = spm ? "" : m.OptionalString("tokenizer.ggml.pre") ?? "default";
        bool addBos = m.OptionalBool("tokenizer.ggml.add_bos_token") ?? (spm || pre != "qwen2");
        bool addEos = m.OptionalBool("tokenizer.ggml.add_eos_token") ?? false;

        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteStartArray("added_tokens");
            for (int id = 0; id < tokens.Length; id++)
            {
                int type = types?[id] ?? 1;
                if (type is not (UnknownToken or ControlToken or UserDefinedToken) && id != bos && id != eos && id != unk && id != pad) continue;
                w.WriteStartObject();
                w.WriteNumber("id", id);
                w.WriteString("content", tokens[id]);
                w.WriteBoolean("special", type != UserDefinedToken);
                w.WriteBoolean("normalized", false);
                w.WriteEndObject();
            }
            w.WriteEndArray();

            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteStartObject("vocab");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (int id = 0; id < tokens.Length; id++)
            {
                if (!seen.Add(tokens[id])) throw m.Error("tokenizer.ggml.tokens", $"lists '{tokens[id]}' twice (id {id})");
                w.WriteNumber(tokens[id], id);
            }
            w.WriteEndObject();
            // SentencePiece merges built as [left, right] pairs (a token may hold a space); stored ones as they are ("a b").
            w.WriteStartArray("merges");
            var merges = m.OptionalArray<string>("tokenizer.ggml.merges");
            if (spm && merges is null)
                foreach (var (left, right) in MergesFromScores(m, tokens))
                {
                    w.WriteStartArray();
                    w.WriteStringValue(left);
                    w.WriteStringValue(right);
                    w.WriteEndArray();
                }
            else
                foreach (var merge in merges ?? throw m.Error("tokenizer.ggml.merges", "is missing; a gpt2 tokenizer needs its merges"))
                    w.WriteStringValue(merge);
            w.WriteEndArray();
            if (spm)
            {
                if (unk is int u) w.WriteString("unk_token", tokens[u]);
                w.WriteBoolean("fuse_unk", true);
                w.WriteBoolean("byte_fallback", true);
            }
            else w.WriteBoolean("ignore_merges", pre is "llama3" or "llama-v3" or "llama-bpe");
            w.WriteEndObject();

            if (spm) WriteSentencePieceSteps(w, m.OptionalBool("tokenizer.ggml.add_space_prefix") ?? true);
            else WriteByteLevelSteps(w, m, pre);

            WriteTemplate(w, tokens, addBos ? bos : null, addEos ? eos : null);
            w.WriteEndObject();
        }
        return FromJson(stream.ToArray(), $"{source} (tokenizer metadata)");
    }

    /// <summary>
    /// SentencePiece BPE's merges from the token scores, as Hugging Face's GGUF converter builds them: every
    /// split of a token into two tokens is a merge, ranked by the merged token's score, highest first.
    /// </summary>
    private static List<(string Left, string Right)> MergesFromScores(GgufMetadata m, string[] tokens)
    {
        var scores = m.OptionalArray<float>("tokenizer.ggml.scores") ?? throw m.Error("tokenizer.ggml.scores", "is missing; SentencePiece merges come from them");
        if (scores.Length != tokens.Length)
            throw m.Error("tokenizer.ggml.scores", $"has {scores.Length} entries for {tokens.Length} tokens");
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++) ids.TryAdd(tokens[i], i);
        var merges = new List<(string Left, string Right, float Score, int Token)>();
        for (int t = 0; t < tokens.Length; t++)
        {
            string token = tokens[t];
            for (int split = 1; split < token.Length; split++)
            {
                if (char.IsLowSurrogate(token[split])) continue; // never inside a code point
                string left = token[..split], right = token[split..];
                if (ids.ContainsKey(left) && ids.ContainsKey(right)) merges.Add((left, right, scores[t], t));
            }
        }
        // Highest merged score first, equal scores in token order; a token's splits by their parts' scores, highest first.
        float Score(string token) => scores[ids[token]];
        return merges.OrderByDescending(x => x.Score).ThenBy(x => x.Token)
                     .ThenByDescending(x => Score(x.Left)).ThenByDescending(x => Score(x.Right))
                     .Select(x => (x.Left, x.Right)).ToList();
    }

    /// <summary>The post-processor: [bos] $A [eos], each special present only when given.</summary>
    private static void WriteTemplate(Utf8JsonWriter w, string[] tokens, int? bos, int? eos)
    {
        void Item(string kind, string id)
        {
            w.WriteStartObject();
            w.WriteStartObject(kind);
            w.WriteString("id", id);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteStartObject("post_processor");
        w.WriteString("type", "TemplateProcessing");
        w.WriteStartArray("single");
        if (bos is int b) Item("SpecialToken", tokens[b]);
        Item("Sequence", "A");
        if (eos is int e) Item("SpecialToken", tokens[e]);
        w.WriteEndArray();
        w.WriteStartObject("special_tokens");
        foreach (int id in new[] { bos, eos }.OfType<int>().Distinct())
        {
            w.WriteStartObject(tokens[id]);
            w.WriteStartArray("ids");
            w.WriteNumberValue(id);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteSentencePieceSteps(Utf8JsonWriter w, bool addSpacePrefix)
    {
        // Spaces become ▁, with one in front when the model adds a space prefix; decoding undoes both.
        w.WriteStartObject("normalizer");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("normalizers");
        if (addSpacePrefix)
        {
            w.WriteStartObject();
            w.WriteString("type", "Prepend");
            w.WriteString("prepend", "\u2581");
            w.WriteEndObject();
        }
        WriteReplace(w, " ", "\u2581");
        w.WriteEndArray();
        w.WriteEndObject();

        w.WriteStartObject("decoder");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("decoders");
        WriteReplace(w, "\u2581", " ");
        w.WriteStartObject();
        w.WriteString("type", "ByteFallback");
        w.WriteEndObject();
        w.WriteStartObject();
        w.WriteString("type", "Fuse");
        w.WriteEndObject();
        if (addSpacePrefix)
        {
            w.WriteStartObject();
            w.WriteString("type", "Strip");
            w.WriteString("content", " ");
            w.WriteNumber("start", 1);
            w.WriteNumber("stop", 0);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteReplace(Utf8JsonWriter w, string pattern, string content)
    {
        w.WriteStartObject();
        w.WriteString("type", "Replace");
        w.WriteStartObject("pattern");
        w.WriteString("String", pattern);
        w.WriteEndObject();
        w.WriteString("content", content);
        w.WriteEndObject();
    }

    private static void WriteByteLevelSteps(Utf8JsonWriter w, GgufMetadata m, string pre)
    {
        string? pattern = pre switch
        {
            "default" or "gpt-2" or "gpt2" => null, // ByteLevel's own GPT-2 regex
            "llama3" or "llama-v3" or "llama-bpe" => Llama3Pattern,
            "qwen2" => Qwen2Pattern,
            _ => throw m.Error("tokenizer.ggml.pre", $"is '{pre}'; supported pre-tokenizers: default, gpt-2, llama3 (llama-bpe), qwen2"),
        };
        if (pre == "qwen2")
        {
            w.WriteStartObject("normalizer");
            w.WriteString("type", "NFC");
            w.WriteEndObject();
        }
        w.WriteStartObject("pre_tokenizer");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("pretokenizers");
        if (pattern is not null)
        {
            w.WriteStartObject();
            w.WriteString("type", "Split");
            w.WriteStartObject("pattern");
            w.WriteString("Regex", pattern);
            w.WriteEndObject();
            w.WriteString("behavior", "Isolated");
            w.WriteBoolean("invert", false);
            w.WriteEndObject();
        }
        w.WriteStartObject();
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("use_regex", pattern is null);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();

        w.WriteStartObject("decoder");
        w.WriteString("type", "ByteLevel");
        w.WriteEndObject();
    }
}
