using LlmKernels.Models.Tokenization;

namespace LlmKernels.Models;

/// <summary>Why generation stopped.</summary>
public enum StopReason { None, EndOfSequence, MaxTokens, CacheFull }

/// <summary>One generated token: its id, the text it completes (may be empty while a character's bytes are
/// still arriving) and, on the last step, why generation stopped.</summary>
public sealed record GeneratedToken(int Id, string Text, StopReason Stop);

/// <summary>Prefill then decode, one token at a time, streaming the text.</summary>
public sealed class Generator(LlamaModel model, Tokenizer? tokenizer = null)
{
    /// <summary>Ids that end generation: config.json's eos_token_id (one or several).</summary>
    public IReadOnlyCollection<int> StopTokens { get; init; } = model.Config.EosTokenIds.ToHashSet();

    public IEnumerable<GeneratedToken> Generate(string prompt, int maxNewTokens, Sampler? sampler = null)
    {
        if (tokenizer is null) throw new InvalidOperationException("a text prompt needs a tokenizer");
        return Generate(tokenizer.Encode(prompt, addSpecialTokens: true), maxNewTokens, sampler);
    }

    public IEnumerable<GeneratedToken> Generate(IReadOnlyList<int> prompt, int maxNewTokens, Sampler? sampler = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (prompt.Count == 0) throw new ArgumentException("the prompt has no tokens", nameof(prompt));
        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        // Checked here, when Generate is called, not when the first token is asked for: a caller that prints the
        // prompt in between learns of a bad one before printing anything.
        foreach (int id in prompt)
            if ((uint)id >= (uint)model.Config.VocabSize)
                throw new ArgumentException($"the prompt has token id {id}, outside the model's vocabulary [0, {model.Config.VocabSize})");
        if (prompt.Count > model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"the prompt is {prompt.Count} tokens, more than the model's max_position_embeddings ({model.Config.MaxPositionEmbeddings})");
        return Run(prompt.ToArray(), maxNewTokens, sampler ?? Sampler.Greedy);
    }

    private IEnumerable<GeneratedToken> Run(int[] prompt, int maxNewTokens, Sampler sampler)
    {
        if (maxNewTokens == 0) yield break;
        int capacity = Math.Min(prompt.Length + maxNewTokens, model.Config.MaxPositionEmbeddings);
        using var cache = model.CreateCache(capacity);
        // A few prompt tokens decoded before the generated ones, so decoders that strip a leading space
        // (SentencePiece) or join bytes see the context they would in the full text.
        var context = prompt.Skip(Math.Max(0, prompt.Length - 4)).ToList();
        string contextText = tokenizer?.Decode(context) ?? "";
        var generated = new List<int>();
        int emitted = 0;

        var logits = new float[model.Config.VocabSize];   // reused: decode steps allocate nothing in the model
        model.Forward(prompt, cache, logits);
        for (int step = 0; step < maxNewTokens; step++)
        {
            foreach (float value in logits)
                if (!float.IsFinite(value))
                    throw new ModelFormatException(
                        $"{model.Origin}: the model produced a non-finite logit ({value}) at step {step}: its weights overflow " +
                        $"{model.ActivationDtype} activations, or hold NaN or infinity");
            int token = sampler.Sample(logits);
            generated.Add(token);

            var stop = StopTokens.Contains(token) ? StopReason.EndOfSequence
                : step + 1 == maxNewTokens ? StopReason.MaxTokens
                : cache.Length == cache.Capacity ? StopReason.CacheFull
                : StopReason.None;
            string text = "";
            if (tokenizer is not null)
            {
                string full = tokenizer.Decode(context.Concat(generated));
                string fresh = full.StartsWith(contextText, StringComparison.Ordinal) ? full[contextText.Length..] : full;
                // Hold back a trailing U+FFFD: the rest of that character's bytes may come with the next token.
                int ready = stop == StopReason.None && fresh.EndsWith('\uFFFD') ? fresh.TrimEnd('\uFFFD').Length : fresh.Length;
                if (ready > emitted)
                {
                    text = fresh[emitted..ready];
                    emitted = ready;
                }
            }
            yield return new GeneratedToken(token, text, stop);
            if (stop != StopReason.None) yield break;
            model.Forward([token], cache, logits);
        }
    }
}
