using LlmKernels.Models.Templates;

namespace LlmKernels.Tests.Templates;

/// <summary>Bad templates and hostile input fail with a TemplateException, never a crash.</summary>
public class JinjaTemplateTests
{
    private static readonly Dictionary<string, object?> NoVariables = new();

    [TestCase("{% if x %}", "missing {% endif %}")]
    [TestCase("{{ 'unclosed", "unexpected end of input")]
    [TestCase("{% for %}{% endfor %}", "syntax error")]
    [TestCase("{{ a | 1 }}", "expected a filter name")]
    [TestCase("{% frob %}", "unknown or unsupported statement")]
    [TestCase("{{ 'a' ? }}", "unexpected character '?'")]
    public void SyntaxErrorsNameWhatIsWrong(string source, string expected)
    {
        var e = Assert.Throws<TemplateException>(() => new JinjaTemplate(source).Render(NoVariables))!;
        Assert.That(e.Message, Does.Contain(expected));
        Assert.That(e.Raised, Is.False);
    }

    [Test]
    public void EndlessMacroRecursionIsAnErrorNotAStackOverflow()
    {
        var template = new JinjaTemplate("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
        var e = Assert.Throws<TemplateException>(() => template.Render(NoVariables))!;
        Assert.That(e.Message, Does.Contain("nest deeper"));
    }

    [Test]
    public void DeeplyNestedExpressionsAreAnErrorNotAStackOverflow()
    {
        string source = "{{ " + new string('(', 5000) + "1" + new string(')', 5000) + " }}";
        Assert.That(() => new JinjaTemplate(source), Throws.TypeOf<TemplateException>().With.Message.Contains("nest deeper"));
    }

    [Test]
    public void RaiseExceptionCarriesTheTemplatesMessage()
    {
        var e = Assert.Throws<TemplateException>(() => new JinjaTemplate("{{ raise_exception('no system role') }}").Render(NoVariables))!;
        Assert.That(e.Raised, Is.True);
        Assert.That(e.Message, Is.EqualTo("no system role"));
    }

    [Test]
    public void VariablesFromDotNetObjects()
    {
        var template = new JinjaTemplate("{{ m.role }}:{{ m['n'] + 1 }}:{{ list | length }}:{{ f }}:{{ flag }}:{{ none_ is none }}");
        var variables = new Dictionary<string, object?>
        {
            ["m"] = new Dictionary<string, object?> { ["role"] = "user", ["n"] = 41 },
            ["list"] = new List<string> { "a", "b" },
            ["f"] = 0.5,
            ["flag"] = true,
            ["none_"] = null,
        };
        Assert.That(template.Render(variables), Is.EqualTo("user:42:2:0.5:true:true"));
    }

    [Test]
    public void UnsupportedVariableTypeIsAClearError()
    {
        var variables = new Dictionary<string, object?> { ["x"] = new object() };
        Assert.That(() => new JinjaTemplate("{{ x }}").Render(variables),
                    Throws.TypeOf<TemplateException>().With.Message.Contains("type Object is not supported"));
    }

    [Test]
    public void StrftimeNowUsesTheGivenClock()
    {
        var template = new JinjaTemplate("{{ strftime_now('%d %b %Y, %H:%M %%') }}");
        Assert.That(template.Render(NoVariables, () => new DateTime(2024, 7, 6, 9, 5, 0)), Is.EqualTo("06 Jul 2024, 09:05 %"));
    }
}
