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
}
