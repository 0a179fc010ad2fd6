namespace LlmKernels.Models.Templates;

/// <summary>
/// A chat template that cannot be parsed or rendered: a syntax error, an operation on the wrong types, or the
/// template's own <c>raise_exception(...)</c> (then <see cref="Raised"/> is true and the message is the template's).
/// </summary>
public sealed class TemplateException : Exception
{
    public TemplateException(string message, bool raised = false, Exception? inner = null) : base(message, inner) => Raised = raised;

    /// <summary>The template called raise_exception: the input (usually the conversation) is what it rejects.</summary>
    public bool Raised { get; }
}
