using NUnit.Framework;
using LlmKernels.Models;

namespace LlmKernels.Tests.Models;

/// <summary>
/// Models whose matrices are quantized at load (WeightSource.Quantized, as <c>llmk --weights</c> does): fast and
/// reference kernels on the same quantized weights, and either against the unquantized model, stay within the
/// format's error. (The kernel checks hold fast and reference to f32 agreement on one input; through a model,
/// an f32 difference upstream can move an activation across an 8-bit rounding boundary, so the two drift apart by
/// up to quantization noise.)
/// </summary>
public class QuantizedModelTests
{
    private static readonly int[] Prompt = [1, 5, 9, 17, 33, 2, 41, 8, 63];

    /// <summary>tiny-llama and tiny-mixtral (rows of 64 and 160 or 96: whole Q8_0/Q4_0 blocks), and a
    /// llama with rows of 256 and 512 for the K-quants.</summary>
    private static ModelConfig ConfigFor(string model) => model switch
    {
        "wide-llama" => TinyModels.Config("tiny-llama") with { HiddenSize = 256, IntermediateSize = 512, NumHiddenLayers = 2 },
        _ => TinyModels.Config(model),
    };

    /// <summary>Relative L2 of quantized logits against f32 ones that each format stays under here, with room
    /// over what was seen (Q8_0 about 0.02, Q4_0 0.22, Q4_K 0.14 on these random models, whose errors compound
    /// over layers of unstructured weights; tiny-mixtral up to 0.1 with Q8_0, when a token's top-2 experts
    /// change).</summary>
    public static IEnumerable<TestCaseData> Cases()
    {
        yield return new TestCaseData("tiny-llama", LlmkDtype.Q8_0, 0.05);
        yield return new TestCaseData("tiny-mixtral", LlmkDtype.Q8_0, 0.3);
        yield return new TestCaseData("tiny-llama", LlmkDtype.Q4_0, 0.4);
        yield return new TestCaseData("wide-llama", LlmkDtype.Q8_0, 0.05);
        yield return new TestCaseData("wide-llama", LlmkDtype.Q4_K, 0.3);
    }

    private static float[] Logits(Context ctx, ModelConfig config, int seed, LlmkDtype? quantize)
    {
        var source = WeightSource.FromArrays("test weights", TinyModels.CreateWeights(config, seed));
        if (quantize is LlmkDtype q) source = WeightSource.Quantized(source, q, config.TieWordEmbeddings);
        using var model = new LlamaModel(ctx, config, source);
        using var cache = model.CreateCache(Prompt.Length);
        return model.Forward(Prompt, cache, allLogits: true);
    }

    [TestCaseSource(nameof(Cases))]
    public void FastMatchesReferenceAndStaysNearF32(string name, LlmkDtype dtype, double formatBound)
    {
        var config = ConfigFor(name);
        int seed = TestSupport.SeedFor($"{name} {dtype}");
        using var reference = Context.CreateCpu(2, LlmkCpuKernels.Reference);
        using var fast = Context.CreateCpu(2, LlmkCpuKernels.Fast);
        var exact = Logits(reference, config, seed, null);
        var referenceQ = Logits(reference, config, seed, dtype);
        var fastQ = Logits(fast, config, seed, dtype);

        var fastVsReference = Errors.Compare(RandomData.ToDoubles(referenceQ), fastQ);
        var quantError = Errors.Compare(RandomData.ToDoubles(exact), referenceQ);
        TestContext.Out.WriteLine($"{name} {dtype} (seed {seed}): fast vs reference rel L2 {fastVsReference.RelL2:E2}; " +
                                  $"quantized vs f32 rel L2 {quantError.RelL2:E2}");
        Assert.That(fastVsReference.Within(formatBound), $"fast vs reference: {fastVsReference}");
        Assert.That(quantError.Within(formatBound), $"quantized vs f32: {quantError}");
        // The weights really were quantized: the error of 8 or 4 bits, not of f32 rounding.
        Assert.That(quantError.RelL2, Is.GreaterThan(1e-4));
    }

    [Test]
    public void WeightsThatAreNotWholeBlocksStayAsStored()
    {
        // tiny-llama's rows of 64 and 160 are no whole Q4_K super-blocks of 256: nothing is quantized.
        var config = TinyModels.Config("tiny-llama");
        var source = WeightSource.Quantized(WeightSource.FromArrays("test weights", TinyModels.CreateWeights(config, 7)), LlmkDtype.Q4_K, config.TieWordEmbeddings);
        using var ctx = Context.CreateCpu(1);
        using var wq = source.Get(ctx, "model.layers.0.self_attn.q_proj.weight")!;
        Assert.That(wq.DType, Is.EqualTo(LlmkDtype.F32));
    }
}
