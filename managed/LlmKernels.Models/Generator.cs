using System.Runtime.CompilerServices;
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
    public LlamaModel Model => model;
    public Tokenizer? Tokenizer => tokenizer;

    /// <summary>Ids that end generation: config.json's eos_token_id (one or several).</summary>
    public IReadOnlyCollection<int> StopTokens { get; init; } = model.Config.EosTokenIds.ToHashSet();

    public IEnumerable<GeneratedToken> Generate(string prompt, int maxNewTokens, Sampler? sampler = null)
    {
        if (tokenizer is null) throw new InvalidOperationException("a text prompt needs a tokenizer");
        return Generate(tokenizer.Encode(prompt, addSpecialTokens: true), maxNewTokens, sampler);
    }

    public IEnumerable<GeneratedToken> Generate(IReadOnlyList<int> prompt, int maxNewTokens, Sampler? sampler = null)
    {
        var ids = Check(prompt, maxNewTokens);
        return Fresh(ids, maxNewTokens, sampler ?? Sampler.Greedy, CancellationToken.None);
    }

    /// <summary>
    /// The tokens of <see cref="Generate(IReadOnlyList{int}, int, Sampler?)"/>, each step run on the thread pool;
    /// <paramref name="cancellationToken"/> is checked between tokens (an OperationCanceledException ends the stream).
    /// </summary>
    public IAsyncEnumerable<GeneratedToken> GenerateAsync(IReadOnlyList<int> prompt, int maxNewTokens, Sampler? sampler = null,
                                                          CancellationToken cancellationToken = default)
    {
        var ids = Check(prompt, maxNewTokens);
        return Async(Fresh(ids, maxNewTokens, sampler ?? Sampler.Greedy, cancellationToken), cancellationToken);
    }

    /// <summary>Runs each step of a synchronous token stream on the thread pool.</summary>
    internal static async IAsyncEnumerable<GeneratedToken> Async(IEnumerable<GeneratedToken> steps,
                                                                 [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var e = steps.GetEnumerator();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (!await Task.Run(e.MoveNext, CancellationToken.None).ConfigureAwait(false)) yield break;
            yield return e.Current;
        }
    }

    internal int[] Check(IReadOnlyList<int> prompt, int maxNewTokens)
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
        return prompt.ToArray();
    }

    private IEnumerable<GeneratedToken> Fresh(int[] prompt, int maxNewTokens, Sampler sampler, CancellationToken cancellationToken)
    {
        if (maxNewTokens == 0) yield break;
        int capacity = Math.Min(prompt.Length + maxNewTokens, model.Config.MaxPositionEmbeddings);
        using var cache = model.CreateCache(capacity);
        foreach (var token in Run(prompt, 0, maxNewTokens, sampler, cache, null, cancellationToken)) yield return token;
    }

    /// <summary>
    /// The decode loop over <paramref name="cache"/>, whose first <paramref name="reused"/> positions already hold
    /// prompt[..reused]. <paramref name="cached"/>, when given, is kept equal to the tokens the cache holds.
    /// </summary>
    internal IEnumerable<GeneratedToken> Run(int[] prompt, int reused, int maxNewTokens, Sampler sampler, KvCache cache,
                                             List<int>? cached, CancellationToken cancellationToken)
    {
        if (maxNewTokens == 0) yield break;
        // A few prompt tokens decoded before the generated ones, so decoders that strip a leading space
        // (SentencePiece) or join bytes see the context they would in the full text.
        var context = prompt.Skip(Math.Max(0, prompt.Length - 4)).ToList();
        string contextText = tokenizer?.Decode(context) ?? "";
        var generated = new List<int>();
        int emitted = 0;

        var logits = new float[model.Config.VocabSize];   // reused: decode steps allocate nothing in the model
        cancellationToken.ThrowIfCancellationRequested();
        Forward(prompt.AsSpan(reused), reused);
        cached?.Clear();
        cached?.AddRange(prompt);
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
            cancellationToken.ThrowIfCancellationRequested();
            Forward([token], cache.Length);
            cached?.Add(token);
        }

        void Forward(ReadOnlySpan<int> tokens, int at)
        {
            cache.Length = at;
            try
            {
                model.Forward(tokens, cache, logits);
            }
            catch
            {
                cached?.Clear();   // what the cache holds is unknown now
                cache.Reset();
                throw;
            }
        }
    }
}

/// <summary>
/// One sequence kept in a KV cache across calls, as a chat keeps its history: each prompt reuses the longest
/// prefix the cache already holds, so only the new tokens are prefilled. Not thread-safe; one call at a time.
/// </summary>
public sealed class GenerationSession : IDisposable
{
    private readonly Generator _generator;
    private readonly KvCache _cache;
    private readonly List<int> _cached = [];

    /// <summary>A session over <paramref name="generator"/>'s model whose cache holds <paramref name="capacity"/> tokens
    /// (default: the model's max_position_embeddings).</summary>
    public GenerationSession(Generator generator, int? capacity = null)
    {
        _generator = generator;
        int size = capacity ?? generator.Model.Config.MaxPositionEmbeddings;
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 2, nameof(capacity));
        _cache = generator.Model.CreateCache(size);
    }

    public Generator Generator => _generator;

    /// <summary>Tokens the cache can hold: prompt and answer together.</summary>
    public int Capacity => _cache.Capacity;

    /// <summary>The tokens the cache holds now.</summary>
    public IReadOnlyList<int> CachedTokens => _cached;

    /// <summary>Prompt tokens the last call found in the cache and did not prefill again.</summary>
    public int ReusedTokens { get; private set; }

    /// <summary>Forgets the sequence (the memory stays).</summary>
    public void Reset()
    {
        _cached.Clear();
        _cache.Reset();
        ReusedTokens = 0;
    }

    public IEnumerable<GeneratedToken> Generate(IReadOnlyList<int> prompt, int maxNewTokens, Sampler? sampler = null,
                                                CancellationToken cancellationToken = default)
    {
        var ids = _generator.Check(prompt, maxNewTokens);
        if (ids.Length >= _cache.Capacity)
            throw new ArgumentException($"the prompt has {ids.Length} tokens; the context holds {_cache.Capacity}, answer included", nameof(prompt));
        int common = 0;
        while (common < _cached.Count && common < ids.Length && _cached[common] == ids[common]) common++;
        common = Math.Min(common, ids.Length - 1);   // the last prompt token is run again for its logits
        ReusedTokens = common;
        int room = _cache.Capacity - ids.Length;
        return _generator.Run(ids, common, Math.Min(maxNewTokens, room), sampler ?? Sampler.Greedy, _cache, _cached, cancellationToken);
    }

    public IAsyncEnumerable<GeneratedToken> GenerateAsync(IReadOnlyList<int> prompt, int maxNewTokens, Sampler? sampler = null,
                                                          CancellationToken cancellationToken = default) =>
        Generator.Async(Generate(prompt, maxNewTokens, sampler, cancellationToken), cancellationToken);

    public void Dispose() => _cache.Dispose();
}
