using System.Text.Json;
using System.Text.Json.Nodes;
using LlmKernels.Models;
using LlmKernels.Models.Chat;
using LlmKernels.Models.Templates;
using LlmKernels.Tests.Templates;
using Microsoft.Extensions.AI;

namespace LlmKernels.Tests.Chat;

/// <summary>Tool calls: the formats models answer in, parsed into FunctionCallContent, and a conversation with
/// calls and results rendered by real chat templates.</summary>
public class ToolCallTests
{
    private static readonly string[] Tools = ["get_weather", "search"];

    private static string Args(FunctionCallContent c) => JsonSerializer.Serialize(c.Arguments);

    [Test]
    public void HermesAndQwenToolCallTags()
    {
        var (text, calls) = ToolCallParser.Parse(
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>\n" +
            "<tool_call>\n{\"name\": \"search\", \"arguments\": \"{\\\"query\\\": \\\"rain\\\"}\"}\n</tool_call>", Tools);
        Assert.That(text, Is.EqualTo("Let me check."));
        Assert.That(calls.Select(c => c.Name), Is.EqualTo(new[] { "get_weather", "search" }));
        Assert.That(Args(calls[0]), Is.EqualTo("""{"city":"Paris","days":2}"""));
        Assert.That(Args(calls[1]), Is.EqualTo("""{"query":"rain"}"""), "arguments given as a JSON string");
        Assert.That(calls.Select(c => c.CallId).Distinct().Count(), Is.EqualTo(2));
    }

    [Test]
    public void UnclosedToolCallAtTheEndStillCounts()
    {
        var (_, calls) = ToolCallParser.Parse("<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"x\"}}", Tools);
        Assert.That(calls.Single().Name, Is.EqualTo("search"));
    }

    [Test]
    public void MistralToolCalls()
    {
        var (text, calls) = ToolCallParser.Parse(
            "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}, \"id\": \"abc123XYZ\"}, {\"name\": \"search\", \"arguments\": {}}]", Tools);
        Assert.That(text, Is.Empty);
        Assert.That(calls, Has.Count.EqualTo(2));
        Assert.That(calls[0].CallId, Is.EqualTo("abc123XYZ"));
        Assert.That(calls[1].CallId, Has.Length.EqualTo(9).And.Match("^[A-Za-z0-9]{9}$"), "Mistral's templates want 9 letters and digits");
        Assert.That(Args(calls[0]), Is.EqualTo("""{"city":"Oslo"}"""));
    }

    [Test]
    public void Llama3JsonCalls()
    {
        var (text, calls) = ToolCallParser.Parse("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}", Tools);
        Assert.That(text, Is.Empty);
        Assert.That(calls.Single().Name, Is.EqualTo("get_weather"));
        Assert.That(Args(calls[0]), Is.EqualTo("""{"city":"Rome"}"""));

        (_, calls) = ToolCallParser.Parse("<|python_tag|>{\"name\": \"search\", \"parameters\": {\"query\": \"a\"}}; {\"name\": \"search\", \"parameters\": {\"query\": \"b\"}}", Tools);
        Assert.That(calls.Select(Args), Is.EqualTo(new[] { """{"query":"a"}""", """{"query":"b"}""" }));
    }

    [Test]
    public void FunctionaryCalls()
    {
        var (text, calls) = ToolCallParser.Parse("<function=get_weather>{\"city\": \"Lima\"}</function>", Tools);
        Assert.That(text, Is.Empty);
        Assert.That(calls.Single().Name, Is.EqualTo("get_weather"));
        Assert.That(Args(calls[0]), Is.EqualTo("""{"city":"Lima"}"""));
    }

    [TestCase("Just an answer.")]
    [TestCase("{\"name\": \"unknown_tool\", \"parameters\": {}}")]       // JSON naming no offered tool is text
    [TestCase("{\"answer\": 42}")]
    [TestCase("<tool_call>not json</tool_call>")]
    [TestCase("[TOOL_CALLS] garbage")]
    public void TextWithoutToolCallsStaysText(string answer)
    {
        var (text, calls) = ToolCallParser.Parse(answer, Tools);
        Assert.That(calls, Is.Empty);
        Assert.That(text, Is.EqualTo(answer));
    }

    /// <summary>Pushes the answer a few characters at a time, as tokens come.</summary>
    private static (string Streamed, string FinalText, IReadOnlyList<FunctionCallContent> Calls) Stream(string answer)
    {
        var stream = new ToolCallStream(Tools);
        var streamed = new System.Text.StringBuilder();
        for (int i = 0; i < answer.Length; i += 3) streamed.Append(stream.Push(answer.Substring(i, Math.Min(3, answer.Length - i))));
        var (text, calls) = stream.Finish();
        return (streamed.ToString(), text, calls);
    }

    [Test]
    public void TextStreamsUntilAToolCallMayBegin()
    {
        var (streamed, text, calls) = Stream("Let me check <the> weather.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>");
        Assert.That(streamed, Is.EqualTo("Let me check <the> weather.\n"), "streamed up to the marker, '<the>' included");
        Assert.That(text, Is.Empty);
        Assert.That(calls.Single().Name, Is.EqualTo("get_weather"));

        (streamed, text, calls) = Stream("  {\"name\": \"search\", \"parameters\": {\"query\": \"x\"}}");
        Assert.That(streamed, Is.Empty, "an answer that starts with '{' may be Llama's JSON call: held");
        Assert.That(calls.Single().Name, Is.EqualTo("search"));

        (streamed, text, calls) = Stream("{\"answer\": 42}");
        Assert.That((streamed + text, calls.Count), Is.EqualTo(("{\"answer\": 42}", 0)), "JSON that is no call comes out whole at the end");

        (streamed, text, calls) = Stream("Plain text that ends with <tool_ca");
        Assert.That(streamed + text, Is.EqualTo("Plain text that ends with <tool_ca"));
        Assert.That(calls, Is.Empty);
    }

    private static ChatTemplate Fixture(string name) =>
        new(File.ReadAllText(Path.Combine(ChatTemplateFixtureTests.Directory(), name + ".jinja")), "<s>", "</s>");

    private static List<ChatMessage> ConversationWithToolCall() =>
    [
        new(ChatRole.User, "Weather in Paris?"),
        new(ChatRole.Assistant, [new FunctionCallContent("call12345", "get_weather", new Dictionary<string, object?> { ["city"] = "Paris" })]),
        new(ChatRole.Tool, [new FunctionResultContent("call12345", "22 degrees")]),
    ];

    private static ChatOptions WeatherTool() => new()
    {
        Tools = [AIFunctionFactory.Create(([System.ComponentModel.Description("The city")] string city) => $"sunny in {city}", "get_weather", "Get the weather in a city")],
    };

    [TestCase("Qwen-Qwen2.5-7B-Instruct", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", "<tool_response>\n22 degrees\n</tool_response>")]
    [TestCase("NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}", "<tool_response>\n22 degrees\n</tool_response>")]
    [TestCase("meta-llama-Llama-3.1-8B-Instruct", "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "<|start_header_id|>ipython<|end_header_id|>\n\n\"22 degrees\"<|eot_id|>")]   // a string `is iterable`: tojson
    [TestCase("mistralai-Mistral-Nemo-Instruct-2407", "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"call12345\"}]", "[TOOL_RESULTS]{\"content\": 22 degrees, \"call_id\": \"call12345\"}[/TOOL_RESULTS]")]
    public void ToolsCallsAndResultsReachTheTemplate(string template, string renderedCall, string renderedResult)
    {
        using var ctx = Context.CreateCpu();
        var model = TinyModels.Load(ctx, "tiny-llama");
        using var client = new LlmkChatClient(model, TinyModels.CreateTokenizer(), Fixture(template), owned: model);
        string prompt = client.RenderPrompt(ConversationWithToolCall(), WeatherTool());
        Assert.That(prompt, Does.Contain(renderedCall));
        Assert.That(prompt, Does.Contain(renderedResult));
        Assert.That(prompt, Does.Contain("\"name\": \"get_weather\"").And.Contain("Get the weather in a city"), "the tool's schema");
        Assert.That(prompt, Does.Contain("The city"), "its parameters' JSON schema");
    }

    /// <summary>
    /// A model built to call a tool: the tiny tokenizer plus four special tokens (two turn markers, one whose text is
    /// a whole Hermes tool call, one whose text is an answer) and weights that make greedy decoding a lookup: every
    /// layer's output projection is zero, so the residual stream is the embedding, and lm_head maps the embedding
    /// of each marker to the token that must follow. The template ends a turn with &lt;|call|&gt; unless the last
    /// message is a tool result, then with &lt;|answer|&gt;. Real kernels, tokenizer, template, parser and client.
    /// </summary>
    private static LlmkChatClient ToolCallingModel(Context ctx)
    {
        const string call = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
        const string answer = "It is sunny in Paris.";
        var json = JsonNode.Parse(TinyModels.TokenizerJson())!;
        var added = json["added_tokens"]!.AsArray();
        var baseConfig = TinyModels.Config("tiny-llama");
        int first = baseConfig.VocabSize, callMarker = first, answerMarker = first + 1, callToken = first + 2, answerToken = first + 3;
        foreach (var (id, content) in new[] { (callMarker, "<|call|>"), (answerMarker, "<|answer|>"), (callToken, call), (answerToken, answer) })
            added.Add(new JsonObject { ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                                       ["normalized"] = false, ["special"] = true });
        var tokenizer = LlmKernels.Models.Tokenization.Tokenizer.FromJson(json.ToJsonString());
        var config = baseConfig with { VocabSize = first + 4 };
        int eos = config.EosTokenIds[0];

        var weights = TinyModels.CreateWeights(config, 7);
        foreach (var (name, (values, _)) in weights)
            if (name.EndsWith("o_proj.weight", StringComparison.Ordinal) || name.EndsWith("down_proj.weight", StringComparison.Ordinal))
                Array.Clear(values);
        var (embed, lmHead, norm) = (weights["model.embed_tokens.weight"].Values, weights["lm_head.weight"].Values, weights["model.norm.weight"].Values);
        int hidden = config.HiddenSize;
        Array.Clear(lmHead);
        Array.Fill(norm, 1f);
        void Axis(int token, int axis) { Array.Clear(embed, token * hidden, hidden); embed[token * hidden + axis] = 1; }
        Axis(callMarker, 0);
        Axis(answerMarker, 1);
        Axis(callToken, 2);
        Axis(answerToken, 3);
        void Follows(int token, int axis) => lmHead[token * hidden + axis] = 1;   // logit(token) = 8 where the stream is that axis
        Follows(callToken, 0);
        Follows(answerToken, 1);
        Follows(eos, 2);
        Follows(eos, 3);
        var model = new LlamaModel(ctx, config, WeightSource.FromArrays("tool-calling test model", weights, LlmkDtype.F32));
        var template = new ChatTemplate(
            "{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}{% endfor %}" +
            "{% if messages[-1].role == 'tool' %}<|answer|>{% else %}<|call|>{% endif %}", TinyModels.BosToken, TinyModels.EosToken);
        return new LlmkChatClient(model, tokenizer, template, owned: model);
    }

    [Test]
    public async Task FunctionInvokingClientRunsTheModelsToolCall()
    {
        using var ctx = Context.CreateCpu();
        using var inner = ToolCallingModel(ctx);
        var cities = new List<string>();
        var options = new ChatOptions
        {
            Temperature = 0,
            Tools = [AIFunctionFactory.Create((string city) => { cities.Add(city); return $"sunny, 24 degrees in {city}"; }, "get_weather", "Get the weather")],
        };

        // The model alone: its answer is a tool call, with the finish reason that says so.
        var direct = await inner.GetResponseAsync([new ChatMessage(ChatRole.User, "Weather in Paris?")], options);
        Assert.That(direct.FinishReason, Is.EqualTo(ChatFinishReason.ToolCalls));
        var call = direct.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single();
        Assert.That((call.Name, Args(call)), Is.EqualTo(("get_weather", """{"city":"Paris"}""")));
        Assert.That(direct.Text, Is.Empty);

        // Under FunctionInvokingChatClient: the call is run, its result goes back in a second request, the model answers.
        using var client = new ChatClientBuilder(inner).UseFunctionInvocation().Build();
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Weather in Paris?")], options);
        Assert.That(cities, Is.EqualTo(new[] { "Paris" }));
        Assert.That(response.Text, Is.EqualTo("It is sunny in Paris."));
        Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
        var result = response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>().Single();
        Assert.That(result.Result?.ToString(), Does.Contain("sunny, 24 degrees in Paris"));
        Assert.That(inner.Session.ReusedTokens, Is.GreaterThan(0), "the second request reuses the first one's cache");
    }

    [Test]
    public async Task FunctionInvokingClientComposesOverLlmkChatClient()
    {
        // Random weights do not call tools, so this checks that the pipeline composes (tools in the prompt, the
        // answer back as a response) rather than that a call is made; the parsing is tested above.
        using var ctx = Context.CreateCpu();
        using var inner = TinyModels.CreateChatClient(ctx, seed: TestSupport.SeedFor(nameof(FunctionInvokingClientComposesOverLlmkChatClient)));
        using var client = new ChatClientBuilder(inner).UseFunctionInvocation().Build();
        var options = WeatherTool();
        options.MaxOutputTokens = 6;
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Weather in Paris?")], options);
        Assert.That(response.Messages, Is.Not.Empty);
        Assert.That(response.Usage!.InputTokenCount, Is.GreaterThan(inner.RenderPrompt([new ChatMessage(ChatRole.User, "Weather in Paris?")]).Length / 8),
                    "the prompt carries the tool schema");
        Assert.That(inner.RenderPrompt([new ChatMessage(ChatRole.User, "x")], options), Does.Contain("get_weather"));
        options.ToolMode = ChatToolMode.None;
        Assert.That(inner.RenderPrompt([new ChatMessage(ChatRole.User, "x")], options), Does.Not.Contain("get_weather"), "ToolMode None: no tools");
    }
}
