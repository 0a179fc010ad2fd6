namespace LlmKernels.Models;

/// <summary>
/// A model file (safetensors, its index, config.json, tokenizer.json) that is malformed or that this runner
/// cannot use. The message names the file, the entry (tensor, field) and what is wrong.
/// </summary>
public sealed class ModelFormatException : Exception
{
    public ModelFormatException(string message) : base(message) { }

    public ModelFormatException(string message, Exception inner) : base(message, inner) { }
}
