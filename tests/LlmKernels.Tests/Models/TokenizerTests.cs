using NUnit.Framework;
using System.Text;
using System.Text.Json;
using LlmKernels.Models;
using LlmKernels.Models.Tokenization;

namespace LlmKernels.Tests.Models;

/// <summary>
/// Our tokenizer against Hugging Face tokenizers: tests/fixtures/tokenizer holds small BPE models TRAINED by
/// the Rust library (npm `tokenizers`, see make_fixtures.mjs) and that library's encodings and decodings.
/// </summary>
public class TokenizerTests
{
    private static readonly string[] FixtureNames = ["gpt2", "llama3", "qwen2", "llama2", "metaspace"];

    /// <summary>The fixtures folder: copied beside the tests, else found up the tree from the test binary.</summary>
    internal static string FixtureDirectory()
    {
        string beside = Path.Combine(AppContext.BaseDirectory, "fixtures", "tokenizer");
        if (Directory.Exists(beside)) return beside;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "fixtures", "tokenizer");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("tests/fixtures/tokenizer not found beside the tests or above them");
    }

    private static readonly Dictionary<string, Tokenizer> Loaded = new();

    private static Tokenizer Load(string name)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(name, out var t))
                Loaded[name] = t = Tokenizer.FromFile(Path.Combine(FixtureDirectory(), name + ".tokenizer.json"));
            return t;
        }
    }

    public sealed record FixtureCase(string Text, int[] Ids, int[] IdsWithSpecial, string Decoded, string DecodedSkippingSpecial);

    public static IEnumerable<TestCaseData> Fixtures()
    {
        foreach (var name in FixtureNames)
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(FixtureDirectory(), name + ".expected.json")));
            int i = 0;
            foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            {
                var fixture = new FixtureCase(c.GetProperty("text").GetString()!,
                    c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                    c.GetProperty("ids_with_special").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                    c.GetProperty("decoded").GetString()!, c.GetProperty("decoded_with_special_skipped").GetString()!);
                yield return new TestCaseData(name, fixture).SetName($"{name}_{i++:D2}");
            }
        }
    }

    [TestCaseSource(nameof(Fixtures))]
    public void MatchesHuggingFaceTokenizers(string name, FixtureCase c) => AssertMatches(Load(name), c);

    /// <summary>Encodes and decodes as the fixture case says Hugging Face tokenizers did.</summary>
    internal static void AssertMatches(Tokenizer t, FixtureCase c)
    {
        Assert.Multiple(() =>
        {
            Assert.That(t.Encode(c.Text), Is.EqualTo(c.Ids), $"encode {JsonSerializer.Serialize(c.Text)}");
            Assert.That(t.Encode(c.Text, addSpecialTokens: true), Is.EqualTo(c.IdsWithSpecial), "encode with special tokens");
            Assert.That(t.Decode(c.Ids), Is.EqualTo(c.Decoded), "decode");
            Assert.That(t.Decode(c.IdsWithSpecial, skipSpecialTokens: true), Is.EqualTo(c.DecodedSkippingSpecial), "decode skipping special tokens");
        });
    }

    /// <summary>Random text from a mix of scripts, whitespace runs and emoji.</summary>
    private static string RandomText(Random rng, int length)
    {
        string[] pool = ["a", "e", "t", " ", "  ", "\n", "\t", "é", "ß", "日", "本", "🦙", "👍🏽", "'s", "1", "42", ".", "<", "|", "\u0301", "𝔘"];
        var sb = new StringBuilder();
        for (int i = 0; i < length; i++) sb.Append(pool[rng.Next(pool.Length)]);
        return sb.ToString();
    }

    [TestCase("gpt2")]
    [TestCase("llama3")]
    [TestCase("llama2")]
    public void DecodeInvertsEncodeOnRandomText(string name)
    {
        // Byte-level and byte-fallback tokenizers lose nothing (no literal ▁ in the text, which Llama 2 decodes as a
        // space); Llama 2's decoder strips the one space its normalizer prepends.
        var t = Load(name);
        var rng = TestSupport.Rng(name);
        for (int i = 0; i < 200; i++)
        {
            string text = RandomText(rng, rng.Next(1, 30));
            var ids = t.Encode(text);
            Assert.That(ids, Is.Not.Empty);
            Assert.That(t.Decode(ids), Is.EqualTo(text), JsonSerializer.Serialize(text));
        }
    }

    [Test]
    public void SpecialTokensAreSplitOutAndSkippable()
    {
        var t = Load("qwen2");
        int start = t.TokenToId("<|im_start|>")!.Value, end = t.TokenToId("<|im_end|>")!.Value;
        var ids = t.Encode("<|im_start|>hi<|im_end|>");
        Assert.That(ids[0], Is.EqualTo(start));
        Assert.That(ids[^1], Is.EqualTo(end));
        Assert.That(t.IsSpecial(start), Is.True);
        Assert.That(t.Decode(ids, skipSpecialTokens: true), Is.EqualTo("hi"));
        Assert.That(t.IdToToken(start), Is.EqualTo("<|im_start|>"));
    }

    [Test]
    public void EmbeddedTinyTokenizerRoundTrips()
    {
        var t = TinyModels.CreateTokenizer();
        var ids = t.Encode("the thing is in the morning", addSpecialTokens: true);
        Assert.That(ids[0], Is.EqualTo(t.TokenToId(TinyModels.BosToken)));
        Assert.That(ids.Length, Is.LessThan("the thing is in the morning".Length), "merges apply");
        Assert.That(t.Decode(ids, skipSpecialTokens: true), Is.EqualTo("the thing is in the morning"));
        Assert.That(t.VocabSize, Is.EqualTo(TinyModels.Config("tiny-llama").VocabSize));
    }

    [Test]
    public void IdsBeyondTheModelsVocabularyAreRejected()
    {
        var t = TinyModels.CreateTokenizer();
        int vocab = TinyModels.Config("tiny-llama").VocabSize;
        Assert.DoesNotThrow(() => t.RequireIdsBelow(vocab));
        var e = Assert.Throws<ModelFormatException>(() => t.RequireIdsBelow(vocab - 1))!;
        Assert.That(e.Message, Does.Contain($"has id {vocab - 1}, not below the model's vocab_size ({vocab - 1})"));

        var added = Tokenizer.FromJson(Minimal("""{"type":"BPE","vocab":{"a":0},"merges":[]}""")
            .Replace("\"added_tokens\":[]", "\"added_tokens\":[{\"id\":7,\"content\":\"<x>\"}]"), "x/tokenizer.json");
        e = Assert.Throws<ModelFormatException>(() => added.RequireIdsBelow(5))!;
        Assert.That(e.Message, Does.StartWith("x/tokenizer.json: added token '<x>' has id 7, not below the model's vocab_size (5)"));
    }

    private static string Minimal(string model, string extra = "") =>
        $$"""{"added_tokens":[],{{extra}}"model":{{model}}}""";

    public static IEnumerable<TestCaseData> BadTokenizers()
    {
        TestCaseData Case(string name, string json, params string[] mentions) => new TestCaseData(json, mentions).SetName("Rejects_" + name);
        yield return Case("Unigram", Minimal("""{"type":"Unigram","vocab":[]}"""), "model", "'Unigram'", "only BPE");
        yield return Case("MergeOutsideVocab", Minimal("""{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a c"]}"""), "model.merges[0]", "'c'");
        yield return Case("MergedTokenOutsideVocab", Minimal("""{"type":"BPE","vocab":{"a":0,"b":1},"merges":[["a","b"]]}"""), "model.merges[0]", "'ab'");
        yield return Case("MergeWithoutSpace", Minimal("""{"type":"BPE","vocab":{"a":0},"merges":["aa"]}"""), "model.merges[0]", "two tokens");
        yield return Case("DuplicateId", Minimal("""{"type":"BPE","vocab":{"a":0,"b":0},"merges":[]}"""), "id 0", "'a'", "'b'");
        yield return Case("UnkNotInVocab", Minimal("""{"type":"BPE","vocab":{"a":0},"merges":[],"unk_token":"<unk>"}"""), "unk_token '<unk>'");
        yield return Case("MissingVocab", Minimal("""{"type":"BPE","merges":[]}"""), "'model.vocab' is missing");
        yield return Case("EmptyVocabulary", Minimal("""{"type":"BPE","vocab":{},"merges":[]}""", ""), "'model.vocab' is empty");
        yield return Case("UnknownPreTokenizer", Minimal("""{"type":"BPE","vocab":{"a":0},"merges":[]}""", "\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"), "pre_tokenizer", "'BertPreTokenizer'");
        yield return Case("BadRegex", Minimal("""{"type":"BPE","vocab":{"a":0},"merges":[]}""", "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"},"), "pre_tokenizer.pattern.Regex", "regular expression");
        yield return Case("BadBehavior", Minimal("""{"type":"BPE","vocab":{"a":0},"merges":[]}""", "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Sideways\"},"), "behavior", "'Sideways'");
        yield return Case("NotJson", "{model:", "not valid JSON");
    }

    [TestCaseSource(nameof(BadTokenizers))]
    public void BadTokenizerJsonIsRejectedWithItsField(string json, string[] mentions)
    {
        var e = Assert.Throws<ModelFormatException>(() => Tokenizer.FromJson(json, "x/tokenizer.json"))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.StartWith("x/tokenizer.json"));
        foreach (var m in mentions) Assert.That(e.Message, Does.Contain(m));
    }
}
