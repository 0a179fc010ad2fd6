namespace LlmKernels.Models.Templates;

/// <summary>
/// A Jinja template as Hugging Face chat templates are written, parsed once and rendered many times. The dialect
/// is that of @huggingface/jinja, the JavaScript renderer of the Hugging Face Hub, which the tests match byte for
/// byte on the chat templates of published models: for/if/elif/else/set (also {% set x %}...{% endset %}),
/// macros, {% filter %}, loop variables, namespace(), slices, string and dict methods, the filters and tests those
/// templates use, and trim_blocks/lstrip_blocks on. Parse and render errors are <see cref="TemplateException"/>s.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly List<Node> _program;

    /// <summary>Parses <paramref name="source"/>; a syntax error is a TemplateException naming what is wrong.</summary>
    public JinjaTemplate(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        Source = source;
        _program = Guard(() => Parser.Parse(source));
    }

    public string Source { get; }

    /// <summary>
    /// Renders with <paramref name="variables"/>: strings, numbers, booleans, null, dictionaries (string keys),
    /// lists and System.Text.Json values. <paramref name="now"/> is the clock of strftime_now (default: local time).
    /// </summary>
    public string Render(IReadOnlyDictionary<string, object?> variables, Func<DateTime>? now = null)
    {
        ArgumentNullException.ThrowIfNull(variables);
        return Guard(() =>
        {
            var scope = new Scope();
            Builtins.AddGlobals(scope, now ?? (() => DateTime.Now));
            foreach (var (name, value) in variables) scope.Set(name, Values.From(value));
            return new Interpreter().Render(_program, scope);
        });
    }

    /// <summary>A template that trips over something not foreseen still gives a TemplateException, not a crash.</summary>
    private static T Guard<T>(Func<T> body)
    {
        try
        {
            return body();
        }
        catch (TemplateException)
        {
            throw;
        }
        catch (Exception e) when (e is InvalidCastException or IndexOutOfRangeException or ArgumentException or OverflowException
                                       or FormatException or NullReferenceException or InvalidOperationException or InsufficientExecutionStackException)
        {
            throw new TemplateException($"chat template failed: {e.Message}", inner: e);
        }
    }
}
