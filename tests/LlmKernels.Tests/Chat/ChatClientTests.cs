using System.Text.Json;
using LlmKernels.Models;
using LlmKernels.Models.Chat;
using LlmKernels.Models.Templates;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;

namespace LlmKernels.Tests.Chat;

/// <summary>
/// LlmkChatClient over the tiny random models. Their answers are noise, so these tests check mechanics: usage
/// counts, finish reasons, seeds, stop sequences, cancellation, and that the KV cache kept between requests gives
/// the tokens a fresh prefill gives. The CPU reference kernels are used where two runs must agree bit for bit.
/// </summary>
public class ChatClientTests
{
    private static LlmkChatClient Client(Context ctx, int seed, string preset = "tiny-llama") => TinyModels.CreateChatClient(ctx, preset, seed);

    private static Context Reference() => Context.CreateCpu(0, LlmkCpuKernels.Reference);

    private static List<ChatMessage> Ask(string text) => [new(ChatRole.User, text)];

    [Test]
    public async Task ResponseReportsUsageAndFinishReason()
    {
        using var ctx = Context.CreateCpu();
        using var client = Client(ctx, TestSupport.SeedFor(nameof(ResponseReportsUsageAndFinishReason)));
        var messages = Ask("Hello there");
        int promptTokens = TinyModels.CreateTokenizer().Encode(client.RenderPrompt(messages)).Length;

        var response = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 6, Temperature = 0 });

        Assert.That(response.Usage, Is.Not.Null);
        Assert.That(response.Usage!.InputTokenCount, Is.EqualTo(promptTokens));
        Assert.That(response.Usage.OutputTokenCount, Is.InRange(1, 6));
        Assert.That(response.Usage.TotalTokenCount, Is.EqualTo(promptTokens + response.Usage.OutputTokenCount));
        // Six tokens without the end-of-text token: the length limit; fewer: the model ended its turn.
        Assert.That(response.FinishReason, Is.EqualTo(response.Usage.OutputTokenCount == 6 ? ChatFinishReason.Length : ChatFinishReason.Stop));
        Assert.That(response.Messages, Has.Count.EqualTo(1));
        Assert.That(response.Messages[0].Role, Is.EqualTo(ChatRole.Assistant));
        Assert.That(response.ModelId, Is.EqualTo("tiny-llama"));
    }

    [Test]
    public async Task StreamingGivesTheTextOfTheResponseAndTheSameSeedTheSameText()
    {
        using var ctx = Reference();
        int seed = TestSupport.SeedFor(nameof(StreamingGivesTheTextOfTheResponseAndTheSameSeedTheSameText));
        using var a = Client(ctx, seed);
        using var b = Client(ctx, seed);
        var options = new ChatOptions { MaxOutputTokens = 12, Temperature = 0.9f, TopK = 40, TopP = 0.95f, Seed = 42 };
        var messages = Ask("Tell me a story");

        var response = await a.GetResponseAsync(messages, options);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in b.GetStreamingResponseAsync(messages, options)) updates.Add(u);

        Assert.That(string.Concat(updates.Select(u => u.Text)), Is.EqualTo(response.Text));
        Assert.That(updates[^1].FinishReason, Is.EqualTo(response.FinishReason));
        Assert.That(updates.Select(u => u.ResponseId).Distinct().Count(), Is.EqualTo(1));
        Assert.That(updates.SelectMany(u => u.Contents).OfType<UsageContent>().Count(), Is.EqualTo(1), "usage comes once, with the last update");
        // Same seed, same text (also on the client whose cache now holds this conversation); another seed must be
        // able to differ: across several seeds, not every answer equals the first.
        Assert.That((await a.GetResponseAsync(messages, options)).Text, Is.EqualTo(response.Text));
        var others = new List<string>();
        for (int s = 1; s <= 4; s++)
            others.Add((await a.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 12, Temperature = 1.5f, Seed = 1000 + s })).Text);
        Assert.That(others, Has.Some.Not.EqualTo(response.Text));
    }

    [Test]
    public async Task KeptCacheGivesTheTokensOfAFullPrefill()
    {
        using var ctx = Reference();
        int seed = TestSupport.SeedFor(nameof(KeptCacheGivesTheTokensOfAFullPrefill));
        using var chat = Client(ctx, seed);
        var greedy = new ChatOptions { MaxOutputTokens = 8, Temperature = 0 };
        var history = Ask("What is the capital of France?");
        var first = await chat.GetResponseAsync(history, greedy);
        Assert.That(first.Usage!.CachedInputTokenCount, Is.EqualTo(0), "nothing is cached before the first request");
        history.AddRange(first.Messages);
        history.Add(new ChatMessage(ChatRole.User, "And of Italy?"));

        var second = await chat.GetResponseAsync(history, greedy);
        using var fresh = Client(ctx, seed);
        var expected = await fresh.GetResponseAsync(history, greedy);

        Assert.That(second.Text, Is.EqualTo(expected.Text));
        Assert.That(second.Usage!.InputTokenCount, Is.EqualTo(expected.Usage!.InputTokenCount));
        Assert.That(expected.Usage.CachedInputTokenCount, Is.EqualTo(0));
        int firstPrompt = (int)first.Usage.InputTokenCount!.Value;
        Assert.That(second.Usage.CachedInputTokenCount, Is.GreaterThanOrEqualTo(firstPrompt - 1),
                    "the first turn's prompt is not prefilled again");
        Assert.That(chat.Session.ReusedTokens, Is.EqualTo(second.Usage.CachedInputTokenCount));
    }

    [Test]
    public async Task StopSequenceCutsTheAnswer()
    {
        using var ctx = Reference();
        using var client = Client(ctx, TestSupport.SeedFor(nameof(StopSequenceCutsTheAnswer)));
        var greedy = new ChatOptions { MaxOutputTokens = 24, Temperature = 0 };
        // Find a prompt whose greedy answer is long enough to cut in the middle.
        string text = "", prompt = "";
        foreach (string p in new[] { "Hi", "Once upon a time", "The weather today", "Count to ten", "Why is the sky blue?" })
        {
            text = (await client.GetResponseAsync(Ask(p), greedy)).Text;
            prompt = p;
            if (text.Length >= 8) break;
        }
        if (text.Length < 8) Assert.Inconclusive($"no prompt gave an answer of 8 characters or more (last: '{text}')");
        string stop = text.Substring(text.Length / 2, 3);
        var cut = await client.GetResponseAsync(Ask(prompt), new ChatOptions { MaxOutputTokens = 24, Temperature = 0, StopSequences = [stop] });
        Assert.That(cut.Text, Is.EqualTo(text[..text.IndexOf(stop, StringComparison.Ordinal)]));
        Assert.That(cut.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
        Assert.That(cut.Usage!.OutputTokenCount, Is.LessThan(24));
    }

    [Test]
    public async Task CancellationStopsBetweenTokens()
    {
        using var ctx = Context.CreateCpu();
        // Past the end-of-turn tokens: a random model may otherwise end its answer before the second update.
        using var client = TinyModels.CreateChatClient(ctx, "tiny-llama", TestSupport.SeedFor(nameof(CancellationStopsBetweenTokens)),
                                                       new LlmkChatClientOptions { ModelId = "tiny-llama", IgnoreEos = true });
        using var cts = new CancellationTokenSource();
        int updates = 0;
        var options = new ChatOptions { MaxOutputTokens = 400, Temperature = 1, Seed = 7 };
        Assert.That(async () =>
        {
            await foreach (var u in client.GetStreamingResponseAsync(Ask("Go on and on"), options, cts.Token))
                if (++updates == 2) cts.Cancel();
        }, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(updates, Is.EqualTo(2), "no update after the cancellation");

        // Already cancelled: nothing is generated; the client still serves the next request.
        Assert.That(async () => await client.GetResponseAsync(Ask("x"), options, cts.Token), Throws.InstanceOf<OperationCanceledException>());
        var after = await client.GetResponseAsync(Ask("x"), new ChatOptions { MaxOutputTokens = 2 });
        Assert.That(after.Usage!.OutputTokenCount, Is.InRange(1, 2));
    }

    [Test]
    public void GetServiceReturnsTheMetadataAndTheModel()
    {
        using var ctx = Context.CreateCpu();
        using var client = Client(ctx, 1, "tiny-mixtral");
        var metadata = client.GetService<ChatClientMetadata>();
        Assert.That(metadata, Is.Not.Null);
        Assert.That(metadata!.ProviderName, Is.EqualTo("llmk"));
        Assert.That(metadata.DefaultModelId, Is.EqualTo("tiny-mixtral"));
        Assert.That(client.GetService<LlamaModel>(), Is.SameAs(client.Model));
        Assert.That(client.GetService<ModelConfig>()!.NumLocalExperts, Is.EqualTo(4));
        Assert.That(client.GetService<ChatTemplate>()!.Source, Is.EqualTo(TinyModels.ChatTemplateSource));
        Assert.That(client.GetService<IChatClient>(), Is.SameAs(client));
        Assert.That(client.GetService(typeof(ChatClientMetadata), serviceKey: "other"), Is.Null);
        Assert.That(client.GetService<string>(), Is.Null);
    }

    /// <summary>The tiny preset saved as a Hugging Face folder with tokenizer_config.json and generation_config.json.</summary>
    private static void SaveTinyFolder(string dir)
    {
        var config = TinyModels.Config("tiny-llama");
        TinyModels.Save(dir, config, TinyModels.CreateWeights(config, 5), TinyModels.TokenizerJson());
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["chat_template"] = TinyModels.ChatTemplateSource,
            ["bos_token"] = TinyModels.BosToken,
            ["eos_token"] = new Dictionary<string, object> { ["content"] = TinyModels.EosToken, ["special"] = true },
        }));
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"eos_token_id": [282, 283], "max_new_tokens": 3}""");
    }

    [Test]
    public async Task RegisteredClientLoadsAModelFolder()
    {
        using var temp = new TempDirectory("llmk-chat");
        string dir = temp.Path;
        SaveTinyFolder(dir);
        var services = new ServiceCollection().AddLlmkChatClient(dir);
        IChatClient client;
        using (var provider = services.BuildServiceProvider())
        {
            client = provider.GetRequiredService<IChatClient>();
            Assert.That(client, Is.InstanceOf<LlmkChatClient>());
            Assert.That(provider.GetRequiredService<LlmkChatClient>(), Is.SameAs(client));
            Assert.That(client.GetService<ChatClientMetadata>()!.DefaultModelId, Is.EqualTo(Path.GetFileName(dir)));
            var response = await client.GetResponseAsync(Ask("Hello"));
            Assert.That(response.Usage!.OutputTokenCount, Is.InRange(1, 3), "generation_config.json's max_new_tokens");
        }
        Assert.That(() => ((LlmkChatClient)client).Model.Forward([1], ((LlmkChatClient)client).Model.CreateCache(2)),
                    Throws.InstanceOf<ObjectDisposedException>(), "the provider disposed the client and its model");
    }

    [Test]
    public async Task TheReadmeChatExampleRuns()
    {
        using var temp = new TempDirectory("llmk-chat");
        string dir = temp.Path;
        SaveTinyFolder(dir);
        var output = new StringWriter();
        // README.md, section Chat, with the folder and a writer in place of the console.
        using IChatClient client = LlmkChatClient.Load(dir);
        var options = new ChatOptions { Temperature = 0.7f, MaxOutputTokens = 200, Seed = 1 };
        ChatResponse answer = await client.GetResponseAsync("Why is the sky blue?", options);
        output.WriteLine($"{answer.Text} ({answer.Usage?.OutputTokenCount} tokens, {answer.FinishReason})");
        await foreach (var update in client.GetStreamingResponseAsync("And at sunset?", options)) output.Write(update.Text);
        Assert.That(output.ToString(), Does.Contain(" tokens, "));
        Assert.That(answer.Usage!.OutputTokenCount, Is.InRange(1, 200));
    }

    [Test]
    public void AFolderWithoutAChatTemplateIsAClearError()
    {
        using var temp = new TempDirectory("llmk-chat");
        string dir = temp.Path;
        Assert.That(() => LlmkChatClient.LoadChatFiles(dir), Throws.TypeOf<ModelFormatException>().With.Message.Contains("no chat template"));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"chat_template": "{% for m in messages %}"}""");
        Assert.That(() => LlmkChatClient.LoadChatFiles(dir),
                    Throws.TypeOf<ModelFormatException>().With.Message.Contains("tokenizer_config.json: chat_template: chat template syntax error"));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"chat_template": 42}""");
        Assert.That(() => LlmkChatClient.LoadChatFiles(dir),
                    Throws.TypeOf<ModelFormatException>().With.Message.Contains("'chat_template' is neither a string"));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{ not json");
        Assert.That(() => LlmkChatClient.LoadChatFiles(dir), Throws.TypeOf<ModelFormatException>().With.Message.Contains("not valid JSON"));
    }

    [Test]
    public async Task TemplateErrorsReachTheCallerAsTemplateExceptions()
    {
        using var ctx = Context.CreateCpu();
        var model = TinyModels.Load(ctx, "tiny-llama");
        var template = new ChatTemplate("{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}x");
        using var client = new LlmkChatClient(model, TinyModels.CreateTokenizer(), template, owned: model);
        var e = Assert.ThrowsAsync<TemplateException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.System, "be brief"), new(ChatRole.User, "hi")]))!;
        Assert.That(e.Message, Is.EqualTo("System role not supported"));
        Assert.That(e.Raised, Is.True);
        var ok = await client.GetResponseAsync(Ask("hi"), new ChatOptions { MaxOutputTokens = 1 });
        Assert.That(ok.Usage!.InputTokenCount, Is.EqualTo(1), "the template renders 'x', one token");
    }

    [Test]
    public void ConversationLongerThanTheContextIsRefused()
    {
        using var ctx = Context.CreateCpu();
        using var client = TinyModels.CreateChatClient(ctx, options: new LlmkChatClientOptions { ContextLength = 16 });
        Assert.That(() => client.GetResponseAsync(Ask(new string('a', 200))),
                    Throws.ArgumentException.With.Message.Contains("the context holds 16"));
    }
}
