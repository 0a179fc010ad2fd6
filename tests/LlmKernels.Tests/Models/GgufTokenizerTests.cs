using NUnit.Framework;
using System.Text.Json;
using LlmKernels.Models.Gguf;
using LlmKernels.Models.Tokenization;

namespace LlmKernels.Tests.Models;

/// <summary>
/// The tokenizer in GGUF metadata against Hugging Face tokenizers: each fixture's tokenizer.json is written as the
/// tokenizer.ggml.* keys llama.cpp's converter makes of it (SentencePiece: tokens, scores and types, no merges;
/// byte-level: tokens, merges and the pre-tokenizer name), and the tokenizer read back from the GGUF must encode
/// and decode the fixture strings exactly as the Rust library did with the tokenizer.json.
/// </summary>
public class GgufTokenizerTests
{
    // GGUF token types.
    private const int Normal = 1, Control = 3, UserDefined = 4, Byte = 6;

    /// <summary>Fixture name -> tokenizer.ggml.model, tokenizer.ggml.pre.</summary>
    private static readonly Dictionary<string, (string Model, string? Pre)> Fixtures = new()
    {
        ["llama2"] = ("llama", null), ["gpt2"] = ("gpt2", "default"), ["llama3"] = ("gpt2", "llama-bpe"), ["qwen2"] = ("gpt2", "qwen2"),
    };

    private static List<KeyValuePair<string, object>> Metadata(string fixture)
    {
        var (model, pre) = Fixtures[fixture];
        return Metadata(File.ReadAllBytes(Path.Combine(TokenizerTests.FixtureDirectory(), fixture + ".tokenizer.json")), model, pre);
    }

    /// <summary>The GGUF tokenizer metadata of a tokenizer.json, as llama.cpp's converter writes it.</summary>
    internal static List<KeyValuePair<string, object>> Metadata(byte[] tokenizerJson, string model, string? pre)
    {
        using var doc = JsonDocument.Parse(tokenizerJson);
        var root = doc.RootElement;
        var byId = new SortedDictionary<int, (string Token, int Type)>();
        foreach (var v in root.GetProperty("model").GetProperty("vocab").EnumerateObject())
            byId[v.Value.GetInt32()] = (v.Name, v.Name.Length == 6 && v.Name.StartsWith("<0x") ? Byte : Normal);
        foreach (var a in root.GetProperty("added_tokens").EnumerateArray())
            byId[a.GetProperty("id").GetInt32()] = (a.GetProperty("content").GetString()!, a.GetProperty("special").GetBoolean() ? Control : UserDefined);
        Assert.That(byId.Keys, Is.EqualTo(Enumerable.Range(0, byId.Count)), "dense ids");
        var tokens = byId.Values.Select(v => v.Token).ToArray();
        var merges = root.GetProperty("model").GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.String ? m.GetString()! : $"{m[0].GetString()} {m[1].GetString()}").ToList();

        var meta = new List<KeyValuePair<string, object>>
        {
            new("tokenizer.ggml.model", model),
            new("tokenizer.ggml.tokens", tokens),
            new("tokenizer.ggml.token_type", byId.Values.Select(v => v.Type).ToArray()),
        };
        if (pre is not null) meta.Add(new("tokenizer.ggml.pre", pre));
        if (model == "llama")
        {
            // SentencePiece keeps no merges, only scores: a merged token scores by its merge's rank (earlier is higher),
            // tokens no merge makes score below all of them.
            var scores = Enumerable.Range(0, tokens.Length).Select(i => -1e6f - i).ToArray();
            var ids = tokens.Select((t, i) => (t, i)).ToDictionary(x => x.t, x => x.i);
            for (int rank = merges.Count - 1; rank >= 0; rank--)
                scores[ids[merges[rank].Replace(" ", "")]] = -rank;
            meta.Add(new("tokenizer.ggml.scores", scores));
        }
        else meta.Add(new("tokenizer.ggml.merges", merges.ToArray()));

        // Special ids as the tokenizer.json's post-processor and unk_token name them.
        var post = root.TryGetProperty("post_processor", out var p) && p.ValueKind == JsonValueKind.Object
            ? p.GetProperty("type").GetString() == "Sequence" ? p.GetProperty("processors")[1] : p
            : (JsonElement?)null;
        string? bos = post?.GetProperty("single")[0].TryGetProperty("SpecialToken", out var st) == true ? st.GetProperty("id").GetString() : null;
        meta.Add(new("tokenizer.ggml.add_bos_token", bos is not null));
        meta.Add(new("tokenizer.ggml.add_eos_token", false));
        if (bos is not null) meta.Add(new("tokenizer.ggml.bos_token_id", (uint)Array.IndexOf(tokens, bos)));
        if (root.GetProperty("model").TryGetProperty("unk_token", out var unk) && unk.ValueKind == JsonValueKind.String)
            meta.Add(new("tokenizer.ggml.unknown_token_id", (uint)Array.IndexOf(tokens, unk.GetString())));
        meta.Add(new("tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}"));
        return meta;
    }

    private static readonly Dictionary<string, Tokenizer> Loaded = new();

    private static Tokenizer Load(string fixture)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(fixture, out var t))
            {
                // Through the writer and the reader, as a file would go.
                var header = GgufFile.Parse(GgufWriter.ToBytes(Metadata(fixture), []), fixture + ".gguf");
                Loaded[fixture] = t = Tokenizer.FromGguf(header.Metadata, fixture + ".gguf");
            }
            return t;
        }
    }

    public static IEnumerable<TestCaseData> Cases() =>
        TokenizerTests.Fixtures().Where(c => Fixtures.ContainsKey((string)c.Arguments[0]!))
            .Select(c => new TestCaseData(c.Arguments).SetName("Gguf_" + c.TestName));

    [TestCaseSource(nameof(Cases))]
    public void MatchesTheTokenizerJsonOfTheSameVocabulary(string fixture, TokenizerTests.FixtureCase c) =>
        TokenizerTests.AssertMatches(Load(fixture), c);

    [Test]
    public void CorpusEncodesLikeTheTokenizerJson()
    {
        // The fixtures' training text, line by line: every word the merges were learned from.
        var lines = File.ReadAllLines(Path.Combine(TokenizerTests.FixtureDirectory(), "corpus.txt")).Where(l => l.Length > 0).ToList();
        foreach (var fixture in Fixtures.Keys)
        {
            var json = Tokenizer.FromFile(Path.Combine(TokenizerTests.FixtureDirectory(), fixture + ".tokenizer.json"));
            var gguf = Load(fixture);
            foreach (var line in lines)
                Assert.That(gguf.Encode(line, addSpecialTokens: true), Is.EqualTo(json.Encode(line, addSpecialTokens: true)), $"{fixture}: {line}");
        }
    }

    [Test]
    public void ChatTemplateIsExposed()
    {
        using var temp = new TempDirectory("llmk-gguf");
        var dir = temp.Path;
        string path = Path.Combine(dir, "t.gguf");
        GgufWriter.Write(path, Metadata("qwen2"), []);
        using var file = GgufFile.Open(path);
        Assert.That(file.ChatTemplate, Is.EqualTo("{% for m in messages %}{{ m.content }}{% endfor %}"));
    }

    public static IEnumerable<TestCaseData> BadTokenizers()
    {
        List<KeyValuePair<string, object>> With(string fixture, string key, object? value) =>
            Metadata(fixture).Where(kv => kv.Key != key).Concat(value is null ? [] : [new(key, value)]).ToList();
        yield return new TestCaseData(With("gpt2", "tokenizer.ggml.model", "bert"), "'tokenizer.ggml.model' is 'bert'").SetName("UnknownModel");
        yield return new TestCaseData(With("gpt2", "tokenizer.ggml.pre", "falcon"), "'tokenizer.ggml.pre' is 'falcon'").SetName("UnknownPreTokenizer");
        yield return new TestCaseData(With("gpt2", "tokenizer.ggml.merges", null), "'tokenizer.ggml.merges' is missing").SetName("MissingMerges");
        yield return new TestCaseData(With("llama2", "tokenizer.ggml.scores", new float[3]), "'tokenizer.ggml.scores' has 3 entries").SetName("ScoresCount");
        yield return new TestCaseData(With("llama2", "tokenizer.ggml.bos_token_id", 100000u), "'tokenizer.ggml.bos_token_id' is 100000").SetName("BosOutOfRange");
        yield return new TestCaseData(With("gpt2", "tokenizer.ggml.merges", new[] { "Ġ zzz" }), "'zzz'").SetName("MergeOutsideVocab");
    }

    [TestCaseSource(nameof(BadTokenizers))]
    public void BadTokenizerMetadataIsNamed(List<KeyValuePair<string, object>> metadata, string mention)
    {
        var header = GgufFile.Parse(GgufWriter.ToBytes(metadata, []), "tok.gguf");
        var e = Assert.Throws<LlmKernels.Models.ModelFormatException>(() => Tokenizer.FromGguf(header.Metadata, "tok.gguf"))!;
        Assert.That(e.Message, Does.StartWith("tok.gguf").And.Contain(mention));
    }
}
