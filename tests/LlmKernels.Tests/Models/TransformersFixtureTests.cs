using NUnit.Framework;
using System.Text.Json;
using LlmKernels.Models;

namespace LlmKernels.Tests.Models;

/// <summary>
/// The runner against an oracle no one here wrote: tests/fixtures/transformers/&lt;name&gt;/ holds tiny random
/// checkpoints saved by Hugging Face transformers (save_pretrained) and transformers' own f32 logits for a fixed
/// list of token ids (make_fixtures.py). Until that script has been run on a host with PyTorch, each case is
/// ignored (skipped), never passed.
/// </summary>
public class TransformersFixtureTests
{
    /// <summary>The issue's bound: f32 against f32, both far below it when the semantics agree.</summary>
    private const double LogitTolerance = 1e-4;

    private static readonly string[] Files = ["config.json", "model.safetensors", "logits.json"];

    /// <summary>tests/fixtures/transformers: the fixtures root is the tokenizer fixtures' parent.</summary>
    private static string FixtureDirectory(string name) =>
        Path.Combine(Path.GetDirectoryName(TokenizerTests.FixtureDirectory())!, "transformers", name);

    private sealed record Fixture(string ModelType, int[] TokenIds, double[][] Logits, string Versions);

    private static Fixture Read(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        string Text(string field) => root.TryGetProperty(field, out var v) ? v.ToString() : "?";
        return new Fixture(
            root.GetProperty("model_type").GetString()!,
            root.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            root.GetProperty("logits").EnumerateArray().Select(row => row.EnumerateArray().Select(e => e.GetDouble()).ToArray()).ToArray(),
            $"transformers {Text("transformers_version")}, torch {Text("torch_version")}");
    }

    [TestCase("llama")]
    [TestCase("qwen2")]
    [TestCase("mistral")]
    [TestCase("mixtral")]
    public void LogitsMatchTransformers(string name)
    {
        string dir = FixtureDirectory(name);
        var missing = Files.Where(f => !File.Exists(Path.Combine(dir, f))).ToArray();
        if (missing.Length == Files.Length)
            Assert.Ignore($"transformers fixture {name} not generated yet: run tests/fixtures/transformers/make_fixtures.py on a host with PyTorch");
        Assert.That(missing, Is.Empty, $"{dir} is an incomplete fixture: regenerate it with make_fixtures.py");

        var fixture = Read(Path.Combine(dir, "logits.json"));
        TestContext.Out.WriteLine($"{dir}: {fixture.TokenIds.Length} tokens, made with {fixture.Versions}");
        using var ctx = Context.CreateCpu();
        using var model = LlamaModel.Load(ctx, dir);
        int vocab = model.Config.VocabSize, n = fixture.TokenIds.Length;
        Assert.Multiple(() =>
        {
            Assert.That(model.Config.ModelType, Is.EqualTo(name).And.EqualTo(fixture.ModelType), "config.json's model_type");
            Assert.That(model.ActivationDtype, Is.EqualTo(LlmkDtype.F32));
            Assert.That(fixture.Logits, Has.Length.EqualTo(n), "logits.json: one row per token");
            Assert.That(fixture.Logits.Select(r => r.Length), Is.All.EqualTo(vocab), "logits.json: rows of vocab_size");
        });

        // Prefill of the whole list, every position's logits.
        using var cache = model.CreateCache(n);
        AssertRowsMatch(fixture, 0, model.Forward(fixture.TokenIds, cache, allLogits: true), vocab, "prefill");

        // Half as prefill, the rest decoded one token at a time through the KV cache.
        cache.Reset();
        int half = n / 2;
        var stepwise = new List<float>(model.Forward(fixture.TokenIds.AsSpan(0, half), cache));
        for (int t = half; t < n; t++) stepwise.AddRange(model.Forward(fixture.TokenIds.AsSpan(t, 1), cache));
        AssertRowsMatch(fixture, half - 1, stepwise.ToArray(), vocab, "decode");
    }

    /// <summary>Each row of <paramref name="actual"/> (positions first.. on) against transformers': relative L2 and top-1.</summary>
    private static void AssertRowsMatch(Fixture fixture, int first, float[] actual, int vocab, string what)
    {
        int rows = actual.Length / vocab;
        Assert.That(actual, Has.Length.EqualTo((fixture.TokenIds.Length - first) * vocab), $"{what}: logits returned");
        double worst = 0;
        Assert.Multiple(() =>
        {
            for (int r = 0; r < rows; r++)
            {
                int t = first + r;
                var expected = fixture.Logits[t];
                ReadOnlySpan<float> row = actual.AsSpan(r * vocab, vocab);
                var e = Errors.Compare(expected, row);
                worst = Math.Max(worst, e.RelL2);
                Assert.That(e.Within(LogitTolerance), Is.True,
                    $"{what}, position {t}: rel L2 {e.RelL2:E3} (bound {LogitTolerance:E0}), max abs {e.MaxAbs:E3}, {e.NonFinite} non-finite");
                Assert.That(ArgMax(row), Is.EqualTo(ArgMax<double>(expected)), $"{what}, position {t}: top-1 token");
            }
        });
        TestContext.Out.WriteLine($"{what}: {rows} positions, worst rel L2 {worst:E2}");
    }

    private static int ArgMax<T>(ReadOnlySpan<T> values) where T : IComparable<T>
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i].CompareTo(values[best]) > 0) best = i;
        return best;
    }
}
