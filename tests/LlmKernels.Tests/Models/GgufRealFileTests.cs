using NUnit.Framework;
using LlmKernels.Models;
using LlmKernels.Models.Gguf;
using LlmKernels.Models.Tokenization;

namespace LlmKernels.Tests.Models;

/// <summary>
/// Manual check against real files (not CI): LLMK_GGUF_MODELS names a folder with X.gguf beside X/ (the same
/// weights as a Hugging Face folder), as bench/cpu/make_models.py writes them, and optionally more .gguf files
/// (llama-quantize's). Greedy tokens of each GGUF must equal those of its folder; every GGUF's continuation of
/// "abc def" is printed, to hold against llama.cpp's llama-simple on the same file.
/// </summary>
[Explicit("needs LLMK_GGUF_MODELS: a folder of X.gguf files and X/ safetensors folders")]
public class GgufRealFileTests
{
    private const int Steps = 16;

    private static string Folder => Environment.GetEnvironmentVariable("LLMK_GGUF_MODELS") ?? Path.Combine(Path.GetTempPath(), "llmk-bench-models");

    public static IEnumerable<TestCaseData> Files() =>
        Directory.Exists(Folder)
            ? Directory.EnumerateFiles(Folder, "*.gguf").Order().Select(f => new TestCaseData(f).SetName(Path.GetFileNameWithoutExtension(f)))
            : [];

    private static List<int> Greedy(LlamaModel model, int[] prompt)
    {
        using var cache = model.CreateCache(prompt.Length + Steps);
        var tokens = new List<int>();
        var logits = model.Forward(prompt, cache);
        for (int i = 0; i < Steps; i++)
        {
            int next = Array.IndexOf(logits, logits.Max());
            tokens.Add(next);
            logits = model.Forward([next], cache);
        }
        return tokens;
    }

    [TestCaseSource(nameof(Files))]
    public void GreedyTokensMatchTheSafetensorsFolder(string gguf)
    {
        using var ctx = Context.CreateCpu();
        Tokenizer tokenizer;
        using (var file = GgufFile.Open(gguf)) tokenizer = Tokenizer.FromGguf(file);
        // llama.cpp encodes "abc def" as <s> ▁abc ▁def in these synthetic vocabularies.
        int[] prompt = [1, tokenizer.TokenToId("\u2581abc")!.Value, tokenizer.TokenToId("\u2581def")!.Value];
        List<int> fromGguf;
        using (var model = LlamaModel.Load(ctx, gguf)) fromGguf = Greedy(model, prompt);
        TestContext.Out.WriteLine($"{Path.GetFileName(gguf)}: \"abc def\" -> \"{tokenizer.Decode(fromGguf)}\" [{string.Join(", ", fromGguf)}]");

        string folder = Path.Combine(Path.GetDirectoryName(gguf)!, Path.GetFileNameWithoutExtension(gguf));
        if (!Directory.Exists(folder)) Assert.Pass($"no safetensors folder {folder}; printed the continuation only");
        List<int> fromFolder;
        using (var model = LlamaModel.Load(ctx, folder)) fromFolder = Greedy(model, prompt);
        int agree = fromGguf.Zip(fromFolder).TakeWhile(p => p.First == p.Second).Count();
        TestContext.Out.WriteLine($"{Path.GetFileName(folder)}/: [{string.Join(", ", fromFolder)}]; {agree} of {Steps} greedy tokens agree before the first difference");
        Assert.That(fromGguf, Is.EqualTo(fromFolder));
    }

    public static IEnumerable<TestCaseData> QuantizedFiles() =>
        Files().Where(c => Path.GetFileName((string)c.Arguments[0]!) is var n && (n.Contains("-q8_0") || n.Contains("-q4_0") || n.Contains("-q4_k")));

    /// <summary>The logits of a quantized file at every position of a 64-token prompt, against the bf16 folder of
    /// the same weights (X-q8_0.gguf against X-bf16/): relative L2 and top-1 agreement, printed; Q8_0 within 5 %.</summary>
    [TestCaseSource(nameof(QuantizedFiles))]
    public void QuantizedLogitsStayNearBf16(string gguf)
    {
        string name = Path.GetFileNameWithoutExtension(gguf);
        string folder = Path.Combine(Path.GetDirectoryName(gguf)!, name[..name.LastIndexOf('-')] + "-bf16");
        if (!Directory.Exists(folder)) Assert.Ignore($"no bf16 folder {folder}");
        using var ctx = Context.CreateCpu();
        var rng = new Random(5);
        int[] prompt = [1, .. Enumerable.Range(0, 63).Select(_ => rng.Next(3, 32000))];
        float[] Logits(string path)
        {
            using var model = LlamaModel.Load(ctx, path);
            using var cache = model.CreateCache(prompt.Length);
            return model.Forward(prompt, cache, allLogits: true);
        }
        var quantized = Logits(gguf);
        var reference = Logits(folder);
        var errors = Verification.Errors.Compare(Verification.RandomData.ToDoubles(reference), quantized);
        int vocab = reference.Length / prompt.Length, top1 = 0;
        for (int t = 0; t < prompt.Length; t++)
        {
            var r = reference.AsSpan(t * vocab, vocab);
            var q = quantized.AsSpan(t * vocab, vocab);
            if (r.IndexOf(System.Linq.Enumerable.Max(r.ToArray())) == q.IndexOf(System.Linq.Enumerable.Max(q.ToArray()))) top1++;
        }
        TestContext.Out.WriteLine($"{name} against {Path.GetFileName(folder)}/: logits rel L2 {errors.RelL2:E2}, max abs {errors.MaxAbs:E2}, " +
                                  $"top-1 agrees at {top1} of {prompt.Length} positions");
        if (name.Contains("-q8_0")) Assert.That(errors.Within(0.05), $"{errors}");
    }
}
