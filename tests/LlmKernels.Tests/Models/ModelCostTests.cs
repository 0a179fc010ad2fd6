using LlmKernels.Models;

namespace LlmKernels.Tests.Models;

/// <summary>
/// ModelCost against numbers worked out by hand from published configs (and, for parameters, the counts
/// transformers reports for the real checkpoints), and against the tensors the tiny presets really have.
/// </summary>
public class ModelCostTests
{
    // meta-llama/Llama-2-7b-hf config.json.
    private static readonly ModelConfig Llama2_7B = new()
    {
        ModelType = "llama", HiddenSize = 4096, IntermediateSize = 11008, NumHiddenLayers = 32, NumAttentionHeads = 32,
        NumKeyValueHeads = 32, HeadDim = 128, VocabSize = 32000, MaxPositionEmbeddings = 4096, TorchDtype = "float16",
    };

    // mistralai/Mixtral-8x7B-v0.1: GQA 32/8, 8 experts, top 2.
    private static readonly ModelConfig Mixtral8x7B = Llama2_7B with
    {
        ModelType = "mixtral", IntermediateSize = 14336, NumKeyValueHeads = 8, NumLocalExperts = 8, NumExpertsPerTok = 2,
        MaxPositionEmbeddings = 32768,
    };

    // mistralai/Mistral-7B-v0.1: as Mixtral's attention, one dense MLP, a 4096-token sliding window.
    private static readonly ModelConfig Mistral7B = Mixtral8x7B with { ModelType = "mistral", NumLocalExperts = 0, NumExpertsPerTok = 0, SlidingWindow = 4096 };

    // Qwen/Qwen2-0.5B: q/k/v biases, tied embeddings, GQA 14/2.
    private static readonly ModelConfig Qwen2_05B = new()
    {
        ModelType = "qwen2", HiddenSize = 896, IntermediateSize = 4864, NumHiddenLayers = 24, NumAttentionHeads = 14,
        NumKeyValueHeads = 2, HeadDim = 64, VocabSize = 151936, TieWordEmbeddings = true, QkvBias = true,
    };

    [Test]
    public void Llama2_7BParametersAndKvCache()
    {
        var cost = new ModelCost(Llama2_7B);
        Assert.Multiple(() =>
        {
            // 2 x 32000 x 4096 (embedding, LM head) + 32 x (4 x 4096^2 + 3 x 4096 x 11008 + 2 x 4096) + 4096.
            Assert.That(cost.Parameters, Is.EqualTo(6_738_415_616L));
            Assert.That(cost.ActiveParameters, Is.EqualTo(cost.Parameters), "dense: every parameter is active");
            // 2 (k, v) x 32 layers x 32 kv heads x 128 x 2 bytes = 512 KiB; 2 GiB at 4096 tokens.
            Assert.That(cost.KvCacheBytesPerToken(2), Is.EqualTo(512 * 1024));
            Assert.That(cost.KvCacheBytes(4096, 2), Is.EqualTo(2L << 30));
        });
    }

    [Test]
    public void Llama2_7BFlopsAndDecodeCeiling()
    {
        var cost = new ModelCost(Llama2_7B);
        Assert.Multiple(() =>
        {
            // 2 x (32 x (4 x 4096^2 + 3 x 4096 x 11008) + 32000 x 4096): no embedding gather, no norms.
            Assert.That(cost.MatmulFlopsPerToken, Is.EqualTo(13_214_154_752L));
            // 4 x 32 heads x 128 x 4096 keys x 32 layers.
            Assert.That(cost.AttentionFlops(4096), Is.EqualTo(2_147_483_648L));
            Assert.That(cost.DecodeFlopsPerToken(4096), Is.EqualTo(13_214_154_752L + 2_147_483_648L));
            // 4096 x matmuls + 4 x 32 x 128 x 32 x (4096 x 4097 / 2).
            Assert.That(cost.PrefillFlops(4096), Is.EqualTo(58_524_298_117_120L));
            Assert.That(cost.PrefillFlopsPerToken(4096), Is.EqualTo(58_524_298_117_120.0 / 4096));
            // Weights read: the matmuls + 65 norms + one embedding row = 6,607,347,712 parameters of 2 bytes,
            // plus 2 GiB of KV cache; 3.35 TB/s over 15,362,179,072 bytes.
            Assert.That(cost.WeightParametersReadPerToken, Is.EqualTo(6_607_347_712L));
            Assert.That(cost.DecodeBytesPerToken(4096, 2, 2), Is.EqualTo(15_362_179_072.0));
            Assert.That(cost.DecodeTokensPerSecondCeiling(3.35e12, 4096, 2, 2), Is.EqualTo(218.068).Within(0.001));
        });
    }

    [Test]
    public void Mixtral8x7BCountsEveryExpertButRunsTwo()
    {
        var cost = new ModelCost(Mixtral8x7B);
        Assert.Multiple(() =>
        {
            // Per layer: attention 41,943,040 + 8 experts x 176,160,768 + router 32,768 + norms 8,192.
            Assert.That(cost.Parameters, Is.EqualTo(46_702_792_704L));
            // The same with 2 experts: the "12.9B active" of the model card.
            Assert.That(cost.ActiveParameters, Is.EqualTo(12_879_925_248L));
            Assert.That(cost.MatmulFlopsPerToken, Is.EqualTo(2 * (32 * (41_943_040L + 2 * 176_160_768L + 32_768L) + 32000L * 4096)));
            // GQA: 8 kv heads, a quarter of Llama-2's cache.
            Assert.That(cost.KvCacheBytesPerToken(2), Is.EqualTo(128 * 1024));
        });
    }

    [Test]
    public void SlidingWindowCapsTheKeysAttended()
    {
        var cost = new ModelCost(Mistral7B);
        long perKeyAllLayers = 4L * 32 * 128 * 32;
        Assert.Multiple(() =>
        {
            Assert.That(cost.Parameters, Is.EqualTo(7_241_732_096L));
            // Past the 4096-token window a token sees 4096 keys, however long the context.
            Assert.That(cost.AttentionFlops(8192), Is.EqualTo(cost.AttentionFlops(4096)));
            Assert.That(cost.AttentionFlops(4096), Is.EqualTo(perKeyAllLayers * 4096));
            // Prefill of 8192: sum over i of min(i, 4096) = 4096 x 4097 / 2 + 4096 x 4096 keys.
            Assert.That(cost.PrefillFlops(8192), Is.EqualTo(129_691_906_211_840L));
            // The cache keeps every position; a decode step reads only the window's.
            Assert.That(cost.KvCacheBytes(8192, 2), Is.EqualTo(8192L * cost.KvCacheBytesPerToken(2)));
            Assert.That(cost.KvBytesReadPerToken(8192, 2), Is.EqualTo(4096L * cost.KvCacheBytesPerToken(2)));
        });
    }

    [Test]
    public void PrefillEqualsTheSumOfItsTokensAttention()
    {
        // The closed form against the plain sum over query positions, inside and past a window.
        var windowed = TinyModels.Config("tiny-llama") with { SlidingWindow = 5 };
        foreach (var config in new[] { TinyModels.Config("tiny-llama"), windowed })
        {
            var cost = new ModelCost(config);
            for (int n = 0; n <= 12; n++)
            {
                long expected = 0;
                for (int i = 1; i <= n; i++) expected += cost.MatmulFlopsPerToken + cost.AttentionFlops(i);
                Assert.That(cost.PrefillFlops(n), Is.EqualTo(expected), $"n = {n}, window {config.SlidingWindow}");
            }
        }
    }

    [Test]
    public void Qwen2CountsBiasesAndTiedEmbeddingsOnce()
    {
        var cost = new ModelCost(Qwen2_05B);
        Assert.Multiple(() =>
        {
            // transformers' num_parameters() of Qwen2-0.5B.
            Assert.That(cost.Parameters, Is.EqualTo(494_032_768L));
            Assert.That(cost.LmHeadParameters, Is.Zero);
            Assert.That(cost.AttentionBiasParametersPerLayer, Is.EqualTo(896 + 2 * 128));
            // Tied: the LM head's matmul uses the embedding matrix, so it is still multiplied per token.
            Assert.That(cost.MatmulParametersPerToken, Is.EqualTo(24L * (2 * 896 * 896 + 2 * 896 * 128 + 3 * 896 * 4864) + 151936L * 896));
        });
    }

    [TestCase("tiny-llama")]
    [TestCase("tiny-mixtral")]
    public void ParametersEqualTheTensorsOfTheTinyPresets(string preset)
    {
        // CreateWeights writes every tensor LlamaModel loads, under transformers' names.
        var config = TinyModels.Config(preset);
        long tensors = TinyModels.CreateWeights(config, TestSupport.SeedFor(preset)).Values.Sum(w => (long)w.Values.Length);
        Assert.That(new ModelCost(config).Parameters, Is.EqualTo(tensors));
    }
}
