using NUnit.Framework;
using LlmKernels.Models;

namespace LlmKernels.Tests.Models;

public class GenerationTests
{
    [Test]
    public void GreedyGenerationEqualsArgmaxOverTheFullPrefix()
    {
        // The KV-cache decode loop must pick the tokens a cache-free rerun of the whole prefix picks.
        using var ctx = Context.CreateCpu();
        int seed = TestSupport.SeedFor(nameof(GreedyGenerationEqualsArgmaxOverTheFullPrefix));
        using var model = TinyModels.Load(ctx, "tiny-llama", seed);
        var tokenizer = TinyModels.CreateTokenizer();
        var prompt = tokenizer.Encode("once upon a time", addSpecialTokens: true).ToList();
        var generator = new Generator(model, tokenizer) { StopTokens = [] };
        var steps = generator.Generate(prompt, maxNewTokens: 8).ToList();

        Assert.That(steps, Has.Count.EqualTo(8));
        Assert.That(steps.Take(7).Select(s => s.Stop), Is.All.EqualTo(StopReason.None));
        Assert.That(steps[^1].Stop, Is.EqualTo(StopReason.MaxTokens));
        var sequence = new List<int>(prompt);
        foreach (var step in steps)
        {
            using var cache = model.CreateCache(sequence.Count);
            int expected = Sampler.ArgMax(model.Forward(sequence.ToArray(), cache));
            Assert.That(step.Id, Is.EqualTo(expected), $"token {sequence.Count - prompt.Count}");
            sequence.Add(step.Id);
        }
        // The streamed pieces are exactly the decoded text of the generated ids.
        Assert.That(string.Concat(steps.Select(s => s.Text)), Is.EqualTo(tokenizer.Decode(steps.Select(s => s.Id))));
    }

    [Test]
    public void GenerationStopsAtEndOfSequence()
    {
        using var ctx = Context.CreateCpu();
        using var model = TinyModels.Load(ctx, "tiny-mixtral", TestSupport.SeedFor(nameof(GenerationStopsAtEndOfSequence)));
        var prompt = new[] { 5, 17, 33 };
        int first = new Generator(model) { StopTokens = [] }.Generate(prompt, 1).Single().Id;
        var steps = new Generator(model) { StopTokens = [first] }.Generate(prompt, 10).ToList();
        Assert.That(steps, Has.Count.EqualTo(1));
        Assert.That(steps[0].Stop, Is.EqualTo(StopReason.EndOfSequence));
        Assert.That(steps[0].Text, Is.Empty, "without a tokenizer no text is produced");
    }

    [Test]
    public void PromptOutsideTheVocabularyIsRefused()
    {
        using var ctx = Context.CreateCpu();
        using var model = TinyModels.Load(ctx, "tiny-llama");
        // Refused when Generate is called, before any token is asked for.
        var e = Assert.Throws<ArgumentException>(() => new Generator(model).Generate([1, model.Config.VocabSize], 3))!;
        Assert.That(e.Message, Does.Contain($"token id {model.Config.VocabSize}, outside the model's vocabulary"));
    }

    [Test]
    public void PromptLongerThanTheModelsPositionsIsRefused()
    {
        using var ctx = Context.CreateCpu();
        using var model = TinyModels.Load(ctx, "tiny-llama");
        int max = model.Config.MaxPositionEmbeddings;
        var e = Assert.Throws<ArgumentException>(() => new Generator(model).Generate(new int[max + 1], 3))!;
        Assert.That(e.Message, Does.Contain($"the prompt is {max + 1} tokens, more than the model's max_position_embeddings ({max})"));
        // A prompt that fills the context exactly still gives the one token its logits predict.
        var last = new Generator(model) { StopTokens = [] }.Generate(new int[max], 3).ToList();
        Assert.That(last.Select(t => t.Stop), Is.EqualTo(new[] { StopReason.CacheFull }));
    }

    [Test]
    public void GreedyAndDegenerateSamplersPickTheArgmax()
    {
        var rng = TestSupport.Rng();
        var logits = Enumerable.Range(0, 50).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        int best = Array.IndexOf(logits, logits.Max());
        Assert.That(Sampler.Greedy.Sample(logits), Is.EqualTo(best));
        var topOne = new Sampler(temperature: 1.5f, topK: 1, seed: rng.Next());
        var tinyP = new Sampler(temperature: 0.7f, topP: 1e-6f, seed: rng.Next());
        for (int i = 0; i < 20; i++)
        {
            Assert.That(topOne.Sample(logits), Is.EqualTo(best));
            Assert.That(tinyP.Sample(logits), Is.EqualTo(best));
        }
    }

    [Test]
    public void SeededSamplingIsReproducibleAndFollowsTheDistribution()
    {
        int seed = TestSupport.SeedFor(nameof(SeededSamplingIsReproducibleAndFollowsTheDistribution));
        // p = softmax([0, ln 3, -inf-ish]) = [1/4, 3/4, ~0]
        float[] logits = [0f, MathF.Log(3), -60f];
        var a = new Sampler(temperature: 1, seed: seed);
        var b = new Sampler(temperature: 1, seed: seed);
        var draws = Enumerable.Range(0, 4000).Select(_ => a.Sample(logits)).ToArray();
        Assert.That(Enumerable.Range(0, 4000).Select(_ => b.Sample(logits)), Is.EqualTo(draws), "same seed, same draws");
        int ones = draws.Count(d => d == 1);
        // 3000 expected, standard deviation 27: 6 sigma.
        Assert.That(ones, Is.InRange(3000 - 165, 3000 + 165));
        Assert.That(draws.Count(d => d == 2), Is.Zero);
        // top-k = 1 of the same logits keeps only token 1; top-p = 0.5 keeps the smallest set reaching it: {1}.
        Assert.That(Enumerable.Range(0, 50).Select(_ => new Sampler(1, topP: 0.5f, seed: seed).Sample(logits)), Is.All.EqualTo(1));
    }

    [TestCase(-1f, 0, 1f, "temperature")]
    [TestCase(float.NaN, 0, 1f, "temperature")]
    [TestCase(1f, -2, 1f, "topK")]
    [TestCase(1f, 0, 0f, "topP")]
    [TestCase(1f, 0, 1.5f, "topP")]
    public void InvalidSamplerSettingsAreRefused(float temperature, int topK, float topP, string parameter)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => _ = new Sampler(temperature, topK, topP))!;
        Assert.That(e.ParamName, Is.EqualTo(parameter));
    }
}
