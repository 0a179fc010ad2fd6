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

    /// <summary>The logits of a quantized file at every position of a 64-token prompt against the f32 folder of the
    /// same weights (X-q8_0.gguf against X-f32/), beside those of the bf16 folder (X-bf16/, the same weights
    /// rounded to bf16): relative L2 and top-1 agreement of each, printed. Q8_0 must stay within 4x the error
    /// bf16 makes: on these uniform weights Q8_0 rounds each weight with 0.39 % rms relative error (a step of
    /// max/127 per 32), bf16 with 0.11 % (8 significant bits), a ratio of 3.5.</summary>
    [TestCaseSource(nameof(QuantizedFiles))]
    public void QuantizedLogitsStayWithinBf16Error(string gguf)
    {
        string name = Path.GetFileNameWithoutExtension(gguf), shape = name[..name.LastIndexOf('-')];
        string f32 = Path.Combine(Path.GetDirectoryName(gguf)!, shape + "-f32"), bf16 = Path.Combine(Path.GetDirectoryName(gguf)!, shape + "-bf16");
        if (!Directory.Exists(f32) || !Directory.Exists(bf16)) Assert.Ignore($"needs {f32} and {bf16}");
        using var ctx = Context.CreateCpu();
        var rng = new Random(5);
        int[] prompt = [1, .. Enumerable.Range(0, 63).Select(_ => rng.Next(3, 32000))];
        float[] Logits(string path)
        {
            using var model = LlamaModel.Load(ctx, path);
            using var cache = model.CreateCache(prompt.Length);
            return model.Forward(prompt, cache, allLogits: true);
        }
        var reference = Logits(f32);
        int vocab = reference.Length / prompt.Length;
        (Verification.ErrorStats Errors, int Top1) Against(float[] other)
        {
            int top1 = 0;
            for (int t = 0; t < prompt.Length; t++)
            {
                var r = reference.AsSpan(t * vocab, vocab).ToArray();
                var o = other.AsSpan(t * vocab, vocab).ToArray();
                if (Array.IndexOf(r, r.Max()) == Array.IndexOf(o, o.Max())) top1++;
            }
            return (Verification.Errors.Compare(Verification.RandomData.ToDoubles(reference), other), top1);
        }
        var quantized = Against(Logits(gguf));
        var half = Against(Logits(bf16));
        TestContext.Out.WriteLine($"{name} against {shape}-f32/: logits rel L2 {quantized.Errors.RelL2:E2}, top-1 {quantized.Top1} of {prompt.Length}; " +
                                  $"{shape}-bf16/ against it: rel L2 {half.Errors.RelL2:E2}, top-1 {half.Top1} of {prompt.Length}");
        if (name.Contains("-q8_0")) Assert.That(quantized.Errors.RelL2, Is.LessThanOrEqualTo(4 * half.Errors.RelL2));
    }
}
