using System.Text.Json;
using LlmKernels.Models.Templates;
using LlmKernels.Tests.Models;

namespace LlmKernels.Tests.Templates;

/// <summary>
/// Our Jinja renderer against @huggingface/jinja on the chat templates of 17 published models:
/// tests/fixtures/chat-templates/expected.json holds what that renderer gave (make_expected.mjs) for every
/// conversation of conversations.json, with add_generation_prompt false and true. Each output must match byte for
/// byte; where the reference failed (the template raised, or the input is one it cannot take) ours must fail too,
/// with the template's own message when it called raise_exception.
/// </summary>
public class ChatTemplateFixtureTests
{
    internal static string Directory() => Path.Combine(Path.GetDirectoryName(TokenizerTests.FixtureDirectory())!, "chat-templates");

    private static JsonElement Load(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Directory(), file)));
        return doc.RootElement.Clone();
    }

    public static IEnumerable<TestCaseData> Cases()
    {
        var expected = Load("expected.json");
        foreach (var template in expected.EnumerateObject())
            foreach (var c in template.Value.EnumerateObject())
                yield return new TestCaseData(template.Name, c.Name).SetName($"{template.Name}__{c.Name.Replace('/', '_')}");
    }

    public static IEnumerable<TestCaseData> Snippets() =>
        Load("snippets.expected.json").EnumerateObject().Select(p => new TestCaseData(p.Name).SetName($"snippet_{p.Name}"));

    /// <summary>One feature per template (snippets.json), against the same reference.</summary>
    [TestCaseSource(nameof(Snippets))]
    public void SnippetMatchesHuggingFaceJinja(string name)
    {
        var spec = Load("snippets.json");
        var result = Load("snippets.expected.json").GetProperty(name);
        var variables = spec.GetProperty("variables").EnumerateObject().ToDictionary(v => v.Name, v => (object?)v.Value);
        string source = spec.GetProperty("snippets").GetProperty(name).GetString()!;
        if (result.TryGetProperty("output", out var output))
        {
            Assert.That(new JinjaTemplate(source).Render(variables), Is.EqualTo(output.GetString()));
            return;
        }
        var e = Assert.Throws<TemplateException>(() => new JinjaTemplate(source).Render(variables))!;
        Assert.That(e.Message, Is.Not.Empty);
        if (e.Raised) Assert.That(e.Message, Is.EqualTo(result.GetProperty("error").GetString()));
    }

    [Test]
    public void EveryTemplateHasExpectedOutputs()
    {
        var names = System.IO.Directory.GetFiles(Directory(), "*.jinja").Select(Path.GetFileNameWithoutExtension).Order().ToArray();
        var expected = Load("expected.json").EnumerateObject().Select(p => p.Name).Order().ToArray();
        Assert.That(names, Has.Length.EqualTo(17));
        Assert.That(expected, Is.EqualTo(names));
        int outputs = Load("expected.json").EnumerateObject().Sum(t => t.Value.EnumerateObject().Count(c => c.Value.TryGetProperty("output", out _)));
        Assert.That(outputs, Is.GreaterThan(150), "most cases must render, not fail");
    }

    [TestCaseSource(nameof(Cases))]
    public void MatchesHuggingFaceJinja(string template, string caseKey)
    {
        var spec = Load("conversations.json");
        var result = Load("expected.json").GetProperty(template).GetProperty(caseKey);
        string caseName = caseKey[..caseKey.LastIndexOf('/')];
        bool addGenerationPrompt = caseKey.EndsWith("/true", StringComparison.Ordinal);
        var c = spec.GetProperty("cases").GetProperty(caseName);

        var variables = new Dictionary<string, object?>();
        foreach (var v in spec.GetProperty("variables").EnumerateObject()) variables[v.Name] = v.Value;
        if (spec.GetProperty("template_variables").TryGetProperty(template, out var extra))
            foreach (var v in extra.EnumerateObject()) variables[v.Name] = v.Value;
        variables["messages"] = c.GetProperty("messages");
        variables["add_generation_prompt"] = addGenerationPrompt;
        if (c.TryGetProperty("tools", out var tools) && tools.GetBoolean()) variables["tools"] = spec.GetProperty("tools");

        var jinja = new JinjaTemplate(File.ReadAllText(Path.Combine(Directory(), template + ".jinja")));
        if (result.TryGetProperty("output", out var output))
        {
            Assert.That(jinja.Render(variables), Is.EqualTo(output.GetString()));
            return;
        }
        string error = result.GetProperty("error").GetString()!;
        var e = Assert.Throws<TemplateException>(() => jinja.Render(variables))!;
        if (e.Raised) Assert.That(e.Message, Is.EqualTo(error), "raise_exception's message is the template's own");
        else Assert.That(e.Message, Is.Not.Empty);
    }
}
