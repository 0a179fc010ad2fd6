using System.Text.Json;
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
