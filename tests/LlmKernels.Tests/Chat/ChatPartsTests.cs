using System.Text;
using LlmKernels.Models;
using LlmKernels.Models.Chat;
using LlmKernels.Models.Templates;

namespace LlmKernels.Tests.Chat;

/// <summary>The pieces under the chat client: stop sequences, the async generator and its session, the config files.</summary>
public class ChatPartsTests
{
    [TestCase(new[] { "STOP" }, new[] { "abc", "ST", "OP and more" }, "abc", true)]
    [TestCase(new[] { "STOP" }, new[] { "abcST", "x" }, "abcSTx", false)]
    [TestCase(new[] { "\n\n", "User:" }, new[] { "one\n", "two", "\nUs", "er: three" }, "one\ntwo\n", true)]
    [TestCase(new string[0], new[] { "a", "b" }, "ab", false)]
    public void StopSequencesReleaseOnlyTextBeforeTheFirstStop(string[] stops, string[] chunks, string expected, bool stopped)
    {
        var filter = new StopSequences(stops);
        var released = new StringBuilder();
        foreach (string chunk in chunks)
        {
            released.Append(filter.Push(chunk));
            // Never released: any text that a stop sequence could still begin with.
            foreach (string stop in stops)
                Assert.That(released.ToString(), Does.Not.Contain(stop));
        }
        released.Append(filter.Flush());
        Assert.That(released.ToString(), Is.EqualTo(expected));
        Assert.That(filter.Stopped, Is.EqualTo(stopped));
    }

    [Test]
    public async Task AsyncGeneratorGivesTheTokensOfTheSynchronousOneAndHonoursCancellation()
    {
        using var ctx = Context.CreateCpu();
        using var model = TinyModels.Load(ctx, "tiny-llama", TestSupport.SeedFor(nameof(AsyncGeneratorGivesTheTokensOfTheSynchronousOneAndHonoursCancellation)));
        var generator = new Generator(model, TinyModels.CreateTokenizer()) { StopTokens = [] };
        int[] prompt = [5, 17, 33, 2];
        var expected = generator.Generate(prompt, 10, new Sampler(0.8f, 20, 0.9f, seed: 3)).ToList();
        var actual = new List<GeneratedToken>();
        await foreach (var t in generator.GenerateAsync(prompt, 10, new Sampler(0.8f, 20, 0.9f, seed: 3))) actual.Add(t);
        Assert.That(actual, Is.EqualTo(expected));

        using var cts = new CancellationTokenSource();
        int seen = 0;
        Assert.That(async () =>
        {
            await foreach (var _ in generator.GenerateAsync(prompt, 100, cancellationToken: cts.Token))
                if (++seen == 3) cts.Cancel();
        }, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(seen, Is.EqualTo(3));
    }

    [Test]
    public void SessionReusesTheCachedPrefix()
    {
        using var ctx = Context.CreateCpu(0, LlmKernels.Interop.LlmkCpuKernels.Reference);
        using var model = TinyModels.Load(ctx, "tiny-llama", TestSupport.SeedFor(nameof(SessionReusesTheCachedPrefix)));
        var generator = new Generator(model) { StopTokens = [] };
        using var session = new GenerationSession(generator, capacity: 64);
        int[] first = [1, 2, 3, 4, 5];
        var answer = session.Generate(first, 4).Select(t => t.Id).ToList();
        Assert.That(session.ReusedTokens, Is.EqualTo(0));
        Assert.That(session.CachedTokens, Is.EqualTo(first.Concat(answer.Take(3))), "the last answer token was never run");

        int[] second = [.. first, .. answer, 9, 10];
        var continued = session.Generate(second, 5).Select(t => t.Id).ToList();
        Assert.That(session.ReusedTokens, Is.EqualTo(first.Length + 3));
        Assert.That(continued, Is.EqualTo(generator.Generate(second, 5).Select(t => t.Id)), "the same tokens as a full prefill");

        // A prompt that leaves the cached path reuses only the common prefix.
        session.Generate([1, 2, 99], 1).ToList();
        Assert.That(session.ReusedTokens, Is.EqualTo(2));
        session.Reset();
        Assert.That(session.CachedTokens, Is.Empty);
        Assert.That(() => session.Generate(Enumerable.Range(0, 64).ToArray(), 1), Throws.ArgumentException.With.Message.Contains("the context holds 64"));
    }

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    [Test]
    public void TokenizerConfigReadsTemplatesAndSpecialTokens()
    {
        var plain = TokenizerConfig.Parse(Utf8("""{"chat_template": "{{ x }}", "bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": false}, "pad_token": null}"""));
        Assert.That(plain.ChatTemplate, Is.EqualTo("{{ x }}"));
        Assert.That((plain.BosToken, plain.EosToken, plain.PadToken), Is.EqualTo(("<s>", "</s>", (string?)null)));

        var named = TokenizerConfig.Parse(Utf8("""{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"""));
        Assert.That(named.ChatTemplate, Is.EqualTo("D"));
        Assert.That(named.NamedChatTemplates["tool_use"], Is.EqualTo("T"));

        var both = ChatTemplate.FromTokenizerConfig(named)!;
        Assert.That(both.Render([]), Is.EqualTo("D"));
        Assert.That(both.Render([], tools: [new Dictionary<string, object?> { ["name"] = "f" }]), Is.EqualTo("T"), "with tools: the tool_use template");

        var template = ChatTemplate.FromTokenizerConfig(plain)!;
        Assert.That(template.Render([], variables: new Dictionary<string, object?> { ["x"] = "ok" }), Is.EqualTo("ok"));
        Assert.That(ChatTemplate.FromTokenizerConfig(new TokenizerConfig()), Is.Null);
    }

    [TestCase("""{"eos_token": 5}""", "'eos_token' is 5")]
    [TestCase("""{"chat_template": [{"template": "x"}]}""", "'chat_template[0].name' is missing")]
    [TestCase("[1, 2]", "expected a JSON object")]
    [TestCase("""{"chat_template": "x",}}""", "not valid JSON")]
    public void MalformedTokenizerConfigIsAClearError(string json, string expected)
    {
        Assert.That(() => TokenizerConfig.Parse(Utf8(json), "tokenizer_config.json"),
                    Throws.TypeOf<ModelFormatException>().With.Message.StartsWith("tokenizer_config.json: ").And.Message.Contains(expected));
    }

    [Test]
    public void GenerationConfigReadsEosIdsAndSampling()
    {
        var single = GenerationConfig.Parse(Utf8("""{"eos_token_id": 7, "bos_token_id": 1}"""));
        Assert.That(single.EosTokenIds, Is.EqualTo(new[] { 7 }));
        Assert.That(single.CreateSampler(1).Temperature, Is.EqualTo(0), "no do_sample: greedy");

        var sampled = GenerationConfig.Parse(Utf8("""{"eos_token_id": [7, 9], "do_sample": true, "temperature": 0.6, "top_p": 0.9, "top_k": 20, "max_new_tokens": 100}"""));
        Assert.That(sampled.EosTokenIds, Is.EqualTo(new[] { 7, 9 }));
        var sampler = sampled.CreateSampler(5);
        Assert.That((sampler.Temperature, sampler.TopK, sampler.TopP, sampler.Seed), Is.EqualTo((0.6f, 20, 0.9f, 5)));
        Assert.That(sampled.MaxNewTokens, Is.EqualTo(100));

        Assert.That(() => GenerationConfig.Parse(Utf8("""{"temperature": -1}"""), "generation_config.json"),
                    Throws.TypeOf<ModelFormatException>().With.Message.Contains("generation_config.json: 'temperature' is -1"));
        Assert.That(() => GenerationConfig.Parse(Utf8("""{"eos_token_id": "x"}""")), Throws.TypeOf<ModelFormatException>());
    }
}
