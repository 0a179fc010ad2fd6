using LlmKernels.Models;

namespace LlmKernels.Tests.Cli;

/// <summary>
/// The `llmk` commands run in-process through Program.Run on plain writers (no colors, no live display), as a
/// user would call them, checked against the library calls they stand for.
/// </summary>
public class CliTests
{
    private static CliResult Llmk(params string[] args) => CliRunner.Llmk(args);

    [Test]
    public void GenerateWithATinyPresetIsDeterministicForASeed()
    {
        int seed = TestSupport.SeedFor(nameof(GenerateWithATinyPresetIsDeterministicForASeed));
        string[] args = ["generate", "--preset", "tiny-llama", "--backend", "cpu", "--prompt", "the cat", "--max-tokens", "12",
                         "--temperature", "1", "--top-k", "0", "--top-p", "1", "--seed", $"{seed}", "--ignore-eos"];
        var first = Llmk(args);
        var second = Llmk(args);
        Assert.That(first.ExitCode, Is.EqualTo(0), first.Err);
        Assert.That(first.Err, Does.Contain("generated 12 tokens"));
        Assert.That(second.Out, Is.EqualTo(first.Out), "same seed, same text");

        // The text is what the library's Generator samples with the same model, sampler and seed.
        using var ctx = Context.CreateCpu();
        using var model = TinyModels.Load(ctx, "tiny-llama");
        var tokenizer = TinyModels.CreateTokenizer();
        var steps = new Generator(model, tokenizer) { StopTokens = [] }
            .Generate("the cat", 12, new Sampler(temperature: 1, topK: 0, topP: 1, seed: seed)).ToList();
        Assert.That(steps, Has.Count.EqualTo(12));
        Assert.That(first.Out, Is.EqualTo("the cat" + string.Concat(steps.Select(s => s.Text)) + Environment.NewLine));
    }

    [Test]
    public void GenerateFromAModelFolderMatchesThePreset()
    {
        // The preset saved as a Hugging Face folder (config.json, model.safetensors, tokenizer.json) and loaded
        // back through --model must generate the preset's greedy text.
        using var temp = new TempDirectory("llmk-cli");
        var directory = temp.Path;
        var config = TinyModels.Config("tiny-mixtral");
        TinyModels.Save(directory, config, TinyModels.CreateWeights(config, 1234), TinyModels.TokenizerJson());
        string[] common = ["--backend", "cpu", "--prompt", "hello world", "--max-tokens", "6", "--temperature", "0", "--ignore-eos"];
        var fromFolder = Llmk(["generate", "--model", directory, .. common]);
        var fromPreset = Llmk(["generate", "--preset", "tiny-mixtral", .. common]);
        Assert.That(fromFolder.ExitCode, Is.EqualTo(0), fromFolder.Err);
        Assert.That(fromFolder.Out, Is.EqualTo(fromPreset.Out));
        Assert.That(fromFolder.Err, Does.Contain("generated 6 tokens"));
    }

    [Test]
    public void GenerateFromAGgufFileMatchesThePreset()
    {
        // The preset converted to GGUF as llama.cpp would (q/k rows permuted, its tokenizer as tokenizer.ggml.*),
        // in f32 and in Q8_0, loaded through --model file.gguf: f32 must generate the preset's greedy text.
        using var temp = new TempDirectory("llmk-cli");
        var directory = temp.Path;
        var config = TinyModels.Config("tiny-llama");
        var tokenizer = Models.GgufTokenizerTests.Metadata(System.Text.Encoding.UTF8.GetBytes(TinyModels.TokenizerJson()), "gpt2", "default");
        using var ctx = Context.CreateCpu();
        string f32 = Path.Combine(directory, "tiny-f32.gguf"), q8 = Path.Combine(directory, "tiny-q8_0.gguf");
        Models.GgufFixtures.Write(f32, ctx, config, TinyModels.CreateWeights(config, 1234), extra: tokenizer);
        Models.GgufFixtures.Write(q8, ctx, config, TinyModels.CreateWeights(config, 1234), Interop.LlmkDtype.Q8_0, tokenizer);
        string[] common = ["--backend", "cpu", "--prompt", "hello world", "--max-tokens", "6", "--temperature", "0", "--ignore-eos"];
        var fromGguf = Llmk(["generate", "--model", f32, .. common]);
        var fromPreset = Llmk(["generate", "--preset", "tiny-llama", .. common]);
        Assert.That(fromGguf.ExitCode, Is.EqualTo(0), fromGguf.Err);
        Assert.That(fromGguf.Out, Is.EqualTo(fromPreset.Out));
        Assert.That(fromGguf.Err, Does.Contain("generated 6 tokens").And.Contain("weights F32"));

        var quantized = Llmk(["generate", "--model", q8, .. common]);
        Assert.That(quantized.ExitCode, Is.EqualTo(0), quantized.Err);
        Assert.That(quantized.Err, Does.Contain("generated 6 tokens").And.Contain("weights Q8_0"));

        // verify compares the fast CPU path with the reference on the quantized file; bench runs it.
        var verify = Llmk("verify", "--model", q8, "--model-only");
        Assert.That(verify.ExitCode, Is.EqualTo(0), verify.Out + verify.Err);
        Assert.That(verify.Out, Does.Contain("all passed"));
        var bench = Llmk("bench", "--model", q8, "--backend", "cpu", "--prompt-tokens", "4", "--decode-tokens", "2", "--repeats", "1", "--warmup", "0");
        Assert.That(bench.ExitCode, Is.EqualTo(0), bench.Err);
        Assert.That(bench.Out, Does.Contain("decode"));

        // inspect: tensors and bytes per dtype (matrices Q8_0, norms f32).
        var inspect = Llmk("inspect", "--model", q8);
        Assert.That(inspect.ExitCode, Is.EqualTo(0), inspect.Err);
        int layers = config.NumHiddenLayers;
        Assert.That(inspect.Out, Does.Contain("matches the GGUF metadata"));
        Assert.That(inspect.Out, Does.Contain($"Q8_0").And.Contain($"{2 + 7 * layers} tensors"));
        Assert.That(inspect.Out, Does.Contain($"F32").And.Contain($"{1 + 2 * layers} tensors"));
    }

    [Test]
    public void MalformedGgufIsOneLine()
    {
        using var temp = new TempDirectory("llmk-cli");
        var directory = temp.Path;
        string path = Path.Combine(directory, "bad.gguf");
        File.WriteAllBytes(path, [.. "GGUF"u8, 99, 0, 0, 0, .. new byte[16]]);
        foreach (var args in new[] { new[] { "inspect" }, ["generate", "--backend", "cpu"], ["bench", "--backend", "cpu"] })
        {
            var result = Llmk([.. args, "--model", path]);
            Assert.That(result.ExitCode, Is.Not.Zero);
            Assert.That(result.Err.Trim(), Does.Contain($"{path}: GGUF version 99 is not supported").And.Not.Contain("\n"));
            Assert.That(result.Err.Trim().Split('\n'), Has.Length.EqualTo(1), result.Err);
        }
        var missing = Llmk("inspect", "--model", Path.Combine(directory, "none.gguf"));
        Assert.That(missing.Err, Does.Contain("none.gguf: no such file"));
    }

    [Test]
    public void InspectTinyLlama()
    {
        var result = Llmk("inspect", "--preset", "tiny-llama");
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Err);
        // 2 x 282 x 64 (embedding, LM head) + 2 layers x (64 x (64 + 2 x 32) + 64 x 64 + 3 x 64 x 160 + 2 x 64) + 64.
        Assert.That(result.Out, Does.Contain("122,432"));
        // f32 KV: 2 x 2 layers x 2 kv heads x 16 x 4 bytes per token; 512 tokens (max_position_embeddings) of it.
        Assert.That(result.Out, Does.Contain("KV cache per token (F32)").And.Contain("512 B"));
        Assert.That(result.Out, Does.Contain("262,144 B (256.00 KiB)"));
        Assert.That(result.Out, Does.Contain("4 / 2 / 16"), "heads / kv heads / head dim");
    }

    [Test]
    public void InspectCrossChecksAFolderAgainstItsSafetensors()
    {
        using var temp = new TempDirectory("llmk-cli");
        var directory = temp.Path;
        var config = TinyModels.Config("tiny-llama");
        TinyModels.Save(directory, config, TinyModels.CreateWeights(config, 1));
        var result = Llmk("inspect", "--model", directory, "--context", "100", "--kv-dtype", "bf16");
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Err);
        Assert.That(result.Out, Does.Contain("matches config.json"));
        // bf16 KV: 2 x 2 x 2 x 16 x 2 bytes = 256 per token, 25,600 at 100.
        Assert.That(result.Out, Does.Contain("KV cache per token (Bf16)").And.Contain("256 B").And.Contain("25,600 B"));

        // A tensor the config does not account for shows up as a difference.
        var weights = TinyModels.CreateWeights(config, 1);
        weights["extra.weight"] = (new float[10], [10]);
        TinyModels.Save(directory, config, weights);
        Assert.That(Llmk("inspect", "--model", directory).Out, Does.Contain("differs from config.json by 10 parameters"));
    }

    [Test]
    public void VerifyModelOnlyPassesOnTheTinyModels()
    {
        var result = Llmk("verify", "--model-only", "--seed", $"{TestSupport.SeedFor(nameof(VerifyModelOnlyPassesOnTheTinyModels))}");
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Out + result.Err);
        Assert.That(result.Out, Does.Contain("tiny-llama").And.Contain("tiny-mixtral"));
        Assert.That(result.Out, Does.Contain("layer 1").And.Contain("logits").And.Contain("top-1 tokens"));
        Assert.That(result.Out, Does.Not.Contain("FAIL"));
    }

    [Test]
    public void VerifyFailsBeyondTolerance()
    {
        // A bound no two implementations meet: the comparison must fail and say so in the exit code. (The CPU's
        // two attention algorithms round differently, so their hidden states are never bit-identical.)
        var result = Llmk("verify", "--model-only", "--preset", "tiny-llama", "--backend", "cpu", "--tolerance", "1e-30", "--seed", "5");
        Assert.That(result.ExitCode, Is.EqualTo(1));
        Assert.That(result.Out, Does.Contain("FAIL"));
    }

    [Test]
    public void InfoNamesTheLoadedLibrary()
    {
        var result = Llmk("info");
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Err);
        Assert.That(result.Out, Does.Contain(NativeLibraryLoader.Loaded.Path));
        Assert.That(result.Out, Does.Contain(NativeLibraryLoader.Loaded.Version));
        Assert.That(result.Out, Does.Contain("CUDA"), "devices or the reason there are none");
    }

    [Test]
    public void BenchReportsPrefillAndDecode()
    {
        var result = Llmk("bench", "--preset", "tiny-llama", "--backend", "cpu", "--prompt-tokens", "8", "--decode-tokens", "4",
                          "--repeats", "1", "--warmup", "0");
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Err);
        Assert.That(result.Out, Does.Contain("prefill").And.Contain("decode"));
    }

    [TestCase("generate")]
    [TestCase("bench")]
    [TestCase("inspect")]
    [TestCase("verify", "--model-only")]
    public void AMissingModelFolderIsOneRedLineAndExitCode1(params string[] command)
    {
        var missing = Path.Combine(Path.GetTempPath(), $"llmk-no-such-model-{Guid.NewGuid():N}");
        var result = Llmk([.. command, "--model", missing]);
        Assert.That(result.ExitCode, Is.EqualTo(1));
        var lines = result.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), "one line, no stack trace");
        Assert.That(lines[0], Does.StartWith("llmk: error: --model " + missing).And.Contain("no such directory"));
    }

    [Test]
    public void MalformedModelFilesAreOneLineNamingTheFile()
    {
        using var temp = new TempDirectory("llmk-cli");
        var directory = temp.Path;
        // config.json present but no weights: the checkpoint's message, on one line.
        var config = TinyModels.Config("tiny-llama");
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJson());
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), TinyModels.TokenizerJson());
        var noWeights = Llmk("generate", "--model", directory, "--backend", "cpu");
        Assert.That(noWeights.ExitCode, Is.EqualTo(1));
        Assert.That(noWeights.Err.Trim(), Does.Not.Contain('\n').And.StartWith("llmk: error: ").And.Contain("model.safetensors"));

        // generate needs the tokenizer, and says so before loading any weight.
        File.Delete(Path.Combine(directory, "tokenizer.json"));
        var noTokenizer = Llmk("generate", "--model", directory, "--backend", "cpu");
        Assert.That(noTokenizer.ExitCode, Is.EqualTo(1));
        Assert.That(noTokenizer.Err.Trim(), Does.Not.Contain('\n').And.Contain("no tokenizer.json"));

        // A broken config.json: ModelFormatException's message names the file.
        File.WriteAllText(Path.Combine(directory, "config.json"), "{ \"model_type\": ");
        var badConfig = Llmk("inspect", "--model", directory);
        Assert.That(badConfig.ExitCode, Is.EqualTo(1));
        Assert.That(badConfig.Err.Trim(), Does.Not.Contain('\n').And.Contain("config.json"));
    }

    [Test]
    public void ConflictingOrOutOfRangeOptionsAreRefused()
    {
        var both = Llmk("generate", "--model", "x", "--preset", "tiny-llama");
        Assert.That(both.ExitCode, Is.EqualTo(1));
        Assert.That(both.Err, Does.Contain("--model and --preset"));

        var sampler = Llmk("generate", "--backend", "cpu", "--temperature", "-1");
        Assert.That(sampler.ExitCode, Is.EqualTo(1));
        Assert.That(sampler.Err.Trim(), Does.Not.Contain('\n').And.Contain("temperature"));

        // Parse-time validation: one line naming the option and its range, exit code 1.
        var tokens = Llmk("generate", "--max-tokens", "0");
        Assert.That(tokens.ExitCode, Is.EqualTo(1));
        Assert.That(tokens.Err.Trim(), Is.EqualTo("llmk: error: --max-tokens is 0; expected at least 1"));
        Assert.That(Llmk("inspect", "--preset", "no-such-preset").ExitCode, Is.Not.EqualTo(0));
    }
}
