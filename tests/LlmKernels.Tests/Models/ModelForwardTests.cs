using NUnit.Framework;
using LlmKernels.Models;

namespace LlmKernels.Tests.Models;

/// <summary>
/// The runner end to end on the CPU: tiny checkpoints written to disk (config.json + model.safetensors),
/// loaded through the memory-mapped reader, and their logits held against <see cref="ReferenceDecoder"/>.
/// </summary>
public class ModelForwardTests
{
    /// <summary>f32 activations, long reductions over a few layers: far below 1e-4.</summary>
    private const double LogitTolerance = 1e-4;

    internal static ModelConfig Base(string type) => new()
    {
        ModelType = type,
        HiddenSize = 64,
        IntermediateSize = 96,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        HeadDim = 16,
        VocabSize = 97,
        MaxPositionEmbeddings = 256,
        RmsNormEps = 1e-5,
        BosTokenIds = [1],
        EosTokenIds = [2],
    };

    public static IEnumerable<TestCaseData> Configs()
    {
        yield return new TestCaseData(Base("llama") with
        {
            // Llama 3.1's wavelength-banded scaling, with a short original context so all three bands occur.
            RopeTheta = 10000,
            RopeScaling = new RopeScalingConfig { Type = RopeScalingType.Llama3, Factor = 4, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 32 },
        }).SetName("Llama_GqaLlama3Rope");
        yield return new TestCaseData(Base("qwen2") with
        {
            // q/k/v biases, one kv head (MQA), head_dim * heads != hidden, tied embeddings.
            HiddenSize = 48,
            NumKeyValueHeads = 1,
            RopeTheta = 1_000_000,
            QkvBias = true,
            TieWordEmbeddings = true,
        }).SetName("Qwen2_BiasMqaTied");
        yield return new TestCaseData(Base("mistral") with
        {
            // A window of 4 tokens, shorter than the 11-token prompt; linear position scaling.
            SlidingWindow = 4,
            RopeScaling = new RopeScalingConfig { Type = RopeScalingType.Linear, Factor = 2 },
        }).SetName("Mistral_SlidingWindowShorterThanPrompt");
        yield return new TestCaseData(Base("mixtral") with
        {
            HiddenSize = 32,
            IntermediateSize = 40,
            NumAttentionHeads = 2,
            NumKeyValueHeads = 1,
            NumLocalExperts = 4,
            NumExpertsPerTok = 2,
        }).SetName("Mixtral_Top2Of4Experts");
    }

    [TestCaseSource(nameof(Configs))]
    public void LogitsMatchReference(ModelConfig config)
    {
        var rng = TestSupport.Rng(config.ModelType);
        var weights = TinyModels.CreateWeights(config, rng.Next());
        using var dir = new TempDirectory("llmk-model");
        TinyModels.Save(dir.Path, config, weights);
        using var ctx = Context.CreateCpu();
        using var model = LlamaModel.Load(ctx, dir.Path);
        Assert.That(model.Config, Is.EqualTo(config).Using<ModelConfig>(SameArchitecture), "config.json round trip");

        var prompt = Enumerable.Range(0, 11).Select(_ => rng.Next(config.VocabSize)).ToArray();
        var expected = new ReferenceDecoder(model.Config, weights).Forward(prompt);

        // Prefill of the whole prompt, every position's logits.
        using var cache = model.CreateCache(prompt.Length);
        var prefill = model.Forward(prompt, cache, allLogits: true);
        AssertClose(expected, prefill, "prefill");

        // Prefill of 5 tokens, then decode the rest one by one through the KV cache.
        cache.Reset();
        var stepwise = new List<float>(model.Forward(prompt.AsSpan(0, 5), cache));
        for (int t = 5; t < prompt.Length; t++) stepwise.AddRange(model.Forward(prompt.AsSpan(t, 1), cache));
        Assert.That(cache.Length, Is.EqualTo(prompt.Length));
        AssertClose(expected.AsSpan(4 * config.VocabSize).ToArray(), stepwise.ToArray(), "prefill 5 + decode");
    }

    internal static bool SameArchitecture(ModelConfig a, ModelConfig b) =>
        a.ModelType == b.ModelType && a.HiddenSize == b.HiddenSize && a.IntermediateSize == b.IntermediateSize
        && a.NumHiddenLayers == b.NumHiddenLayers && a.NumAttentionHeads == b.NumAttentionHeads
        && a.NumKeyValueHeads == b.NumKeyValueHeads && a.HeadDim == b.HeadDim && a.VocabSize == b.VocabSize
        && a.RopeTheta == b.RopeTheta && Equals(a.RopeScaling, b.RopeScaling) && a.RmsNormEps == b.RmsNormEps
        && a.TieWordEmbeddings == b.TieWordEmbeddings && a.QkvBias == b.QkvBias && a.OutputBias == b.OutputBias
        && a.SlidingWindow == b.SlidingWindow && a.NumLocalExperts == b.NumLocalExperts
        && a.NumExpertsPerTok == b.NumExpertsPerTok && a.EosTokenIds.SequenceEqual(b.EosTokenIds);

    private static void AssertClose(double[] expected, float[] actual, string what)
    {
        var e = Errors.Compare(expected, actual);
        TestContext.Out.WriteLine($"{what}: max abs {e.MaxAbs:E2}, rel L2 {e.RelL2:E2}, non-finite {e.NonFinite}");
        Assert.That(e.Within(LogitTolerance), Is.True, $"{what}: rel L2 {e.RelL2:E3} (bound {LogitTolerance:E0}), max abs {e.MaxAbs:E3}, {e.NonFinite} non-finite");
    }

    [Test]
    public void MissingTensorIsNamed()
    {
        var config = Base("llama");
        var weights = TinyModels.CreateWeights(config, 7);
        weights.Remove("model.layers.1.mlp.up_proj.weight");
        using var dir = new TempDirectory("llmk-model");
        TinyModels.Save(dir.Path, config, weights);
        using var ctx = Context.CreateCpu();
        var e = Assert.Throws<ModelFormatException>(() => LlamaModel.Load(ctx, dir.Path).Dispose())!;
        Assert.That(e.Message, Does.Contain("model.layers.1.mlp.up_proj.weight").And.Contain("missing").And.Contain("[96, 64]"));
    }

    [Test]
    public void WrongShapeIsNamed()
    {
        var config = Base("llama");
        var weights = TinyModels.CreateWeights(config, 7);
        weights["model.layers.0.self_attn.k_proj.weight"] = (new float[64 * 64], [64, 64]);
        using var dir = new TempDirectory("llmk-model");
        TinyModels.Save(dir.Path, config, weights);
        using var ctx = Context.CreateCpu();
        var e = Assert.Throws<ModelFormatException>(() => LlamaModel.Load(ctx, dir.Path).Dispose())!;
        Assert.That(e.Message, Does.Contain("model.layers.0.self_attn.k_proj.weight").And.Contain("[64, 64]").And.Contain("[32, 64]"));
    }

    [Test]
    public void CpuWeightsAreViewsOfTheMappedFile()
    {
        using var dir = new TempDirectory("llmk-model");
        var config = Base("llama");
        TinyModels.Save(dir.Path, config, TinyModels.CreateWeights(config, 3));
        using var ctx = Context.CreateCpu();
        var checkpoint = LlmKernels.Models.Safetensors.SafetensorsCheckpoint.Open(dir.Path);
        using var source = WeightSource.FromCheckpoint(checkpoint); // owns the checkpoint
        var (file, info) = checkpoint.Get("model.norm.weight");
        using var weight = source.Get(ctx, "model.norm.weight")!;
        // No copy: the tensor's data is the mapped file's bytes at the tensor's offset.
        Assert.That(weight.DataPointer, Is.EqualTo(file.GetPointer(info)));
        Assert.That(weight.ToArray<byte>(), Is.EqualTo(file.GetBytes(info).ToArray()));
        Assert.That(weight.DType, Is.EqualTo(LlmkDtype.F32));
        Assert.That(source.Get(ctx, "no.such.tensor"), Is.Null);
    }

    [Test]
    public void UnsupportedWeightDtypeIsNamed()
    {
        using var dir = new TempDirectory("llmk-model");
        System.IO.Directory.CreateDirectory(dir.Path);
        string path = Path.Combine(dir.Path, "model.safetensors");
        LlmKernels.Models.Safetensors.SafetensorsWriter.Write(path,
            [new("model.norm.weight", LlmKernels.Models.Safetensors.SafetensorsDtype.F64, [4], new byte[32])]);
        using var ctx = Context.CreateCpu();
        using var source = WeightSource.FromCheckpoint(LlmKernels.Models.Safetensors.SafetensorsCheckpoint.Open(dir.Path));
        var e = Assert.Throws<ModelFormatException>(() => source.Get(ctx, "model.norm.weight"))!;
        Assert.That(e.Message, Does.Contain("'model.norm.weight' is F64").And.Contain("F32, F16 or BF16"));
    }

    [Test]
    public void FullCacheIsRefused()
    {
        using var ctx = Context.CreateCpu();
        using var model = TinyModels.Load(ctx, "tiny-llama");
        using var cache = model.CreateCache(4);
        model.Forward([1, 2, 3], cache);
        var e = Assert.Throws<InvalidOperationException>(() => model.Forward([4, 5], cache))!;
        Assert.That(e.Message, Does.Contain("4 tokens").And.Contain("3 are in it"));
        Assert.That(cache.Length, Is.EqualTo(3), "a refused call leaves the cache as it was");
    }

    /// <summary>A decode step into the caller's logits allocates no device memory, and on a dense model no managed
    /// memory either (a MoE step makes a view per expert it runs); a prefill of another length in between does not
    /// change that.</summary>
    [TestCase("tiny-llama", 0)]
    [TestCase("tiny-mixtral", 2048)]
    public void DecodeStepsAllocateNothing(string preset, int maxManagedBytesPerStep)
    {
        using var ctx = Context.CreateCpu();
        using var model = TinyModels.Load(ctx, preset, TestSupport.SeedFor(preset));
        using var cache = model.CreateCache(256);
        var logits = new float[model.Config.VocabSize];
        model.Forward([1, 2, 3, 4], cache, logits);
        model.Forward([5], cache, logits); // the first decode step makes the views for one row
        model.Forward([6, 7], cache, logits);
        // Warm up past the JIT's tiering (its call counting allocates a little on the calling thread).
        for (int i = 0; i < 100; i++)
            model.Forward([8 + i % 100], cache, logits);
        long buffers = ctx.Allocations, bytes = GC.GetAllocatedBytesForCurrentThread();
        const int steps = 20;
        for (int i = 0; i < steps; i++)
            model.Forward([9 + i], cache, logits);
        long perStep = (GC.GetAllocatedBytesForCurrentThread() - bytes) / steps;
        TestContext.Out.WriteLine($"{preset}: {perStep} managed bytes per decode step (vocab {model.Config.VocabSize})");
        Assert.That(ctx.Allocations - buffers, Is.Zero, "device buffers allocated by decode steps");
        Assert.That(perStep, Is.LessThanOrEqualTo(maxManagedBytesPerStep));
    }

    [TestCase("tiny-llama")]
    [TestCase("tiny-mixtral")]
    public void ResultsDoNotDependOnThreadCount(string preset)
    {
        // The CPU kernels (fast, as here, and reference) promise bit-identical results for any thread count;
        // VerifyRunner sees every layer.
        using var one = Context.CreateCpu(1);
        using var two = Context.CreateCpu(2);
        int seed = TestSupport.SeedFor(preset);
        using var a = TinyModels.Load(one, preset, seed);
        using var b = TinyModels.Load(two, preset, seed);
        var prompt = TinyModels.CreateTokenizer().Encode("the weather in the mountains is", addSpecialTokens: true);
        var report = VerifyRunner.Compare(a, b, prompt);
        Assert.That(report.Layers, Has.Count.EqualTo(a.Config.NumHiddenLayers + 1));
        Assert.That(report.Layers.Append(report.Logits).Select(l => l.MaxAbs), Is.All.EqualTo(0.0));
        Assert.That(report.Top1Agreement, Is.EqualTo(1.0));
    }

    /// <summary>Every fast CPU flavour against the reference kernels with naive attention, layer by layer, as
    /// `llmk verify --model` checks it: f32 throughout, so only summation order may differ.</summary>
    [Test]
    public void FastCpuKernelsMatchTheReference(
        [Values("tiny-llama", "tiny-mixtral")] string preset,
        [Values(LlmkCpuKernels.Portable, LlmkCpuKernels.Avx2, LlmkCpuKernels.Avx512)] LlmkCpuKernels kernels)
    {
        using var fast = TestSupport.CpuOrIgnore(kernels);
        using var cpu = Context.CreateCpu(0, LlmkCpuKernels.Reference);
        int seed = TestSupport.SeedFor(preset);
        using var reference = TinyModels.Load(cpu, preset, seed);
        reference.AttentionAlgorithm = LlmkAttentionAlgorithm.Naive;
        using var candidate = TinyModels.Load(fast, preset, seed);
        // Long enough for several 64-key attention blocks.
        var tokenizer = TinyModels.CreateTokenizer();
        var prompt = Enumerable.Repeat(tokenizer.Encode(" the weather in the mountains is"), 12).SelectMany(t => t).Prepend(1).ToArray();
        var report = VerifyRunner.Compare(reference, candidate, prompt);
        foreach (var layer in report.Layers.Append(report.Logits)) TestContext.Out.WriteLine(layer);
        Assert.That(report.Layers.Append(report.Logits).Select(l => l.RelL2), Is.All.LessThan(1e-4));
        Assert.That(report.Layers.Sum(l => l.NonFinite) + report.Logits.NonFinite, Is.Zero);
        Assert.That(report.Top1Agreement, Is.EqualTo(1.0));
    }

    [Test, Category("Gpu")]
    [TestCase("tiny-llama")]
    [TestCase("tiny-mixtral")]
    public void CudaMatchesCpu(string preset)
    {
        using var gpu = TestSupport.CudaOrIgnore();
        using var cpu = Context.CreateCpu();
        int seed = TestSupport.SeedFor(preset);
        using var reference = TinyModels.Load(cpu, preset, seed);
        using var candidate = TinyModels.Load(gpu, preset, seed, LlmkDtype.Bf16);
        var prompt = TinyModels.CreateTokenizer().Encode("the weather in the mountains is", addSpecialTokens: true);
        var report = VerifyRunner.Compare(reference, candidate, prompt);
        foreach (var layer in report.Layers.Append(report.Logits)) TestContext.Out.WriteLine(layer);
        TestContext.Out.WriteLine($"top-1 agreement {report.Top1Agreement:P0}");
        // bf16 weights and activations against the f32 CPU run: bf16's tolerance per layer.
        Assert.That(report.Layers.Append(report.Logits).Select(l => l.RelL2), Is.All.LessThan(5e-2));
        Assert.That(report.Layers.Sum(l => l.NonFinite) + report.Logits.NonFinite, Is.Zero);
        Assert.That(report.Top1Agreement, Is.GreaterThanOrEqualTo(0.75));
    }
}
