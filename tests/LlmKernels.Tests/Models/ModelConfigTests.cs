using NUnit.Framework;
using LlmKernels.Models;

namespace LlmKernels.Tests.Models;

public class ModelConfigTests
{
    [Test]
    public void Llama31ConfigParses()
    {
        var c = ModelConfig.Parse("""
            {"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":4096,"intermediate_size":14336,
             "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,
             "max_position_embeddings":131072,"rope_theta":500000.0,"rms_norm_eps":1e-05,"tie_word_embeddings":false,
             "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},
             "attention_bias":false,"mlp_bias":false,"bos_token_id":128000,"eos_token_id":[128001,128008,128009],"torch_dtype":"bfloat16"}
            """);
        Assert.Multiple(() =>
        {
            Assert.That(c.ModelType, Is.EqualTo("llama"));
            Assert.That(c.HeadDim, Is.EqualTo(128), "head_dim defaults to hidden / heads");
            Assert.That(c.NumKeyValueHeads, Is.EqualTo(8));
            Assert.That(c.RopeTheta, Is.EqualTo(500000));
            Assert.That(c.RopeScaling!.Type, Is.EqualTo(RopeScalingType.Llama3));
            Assert.That(c.RopeScaling.Factor, Is.EqualTo(8));
            Assert.That(c.RopeScaling.OriginalMaxPositionEmbeddings, Is.EqualTo(8192));
            Assert.That(c.RopeScaling.HighFreqFactor, Is.EqualTo(4));
            Assert.That(c.EosTokenIds, Is.EqualTo(new[] { 128001, 128008, 128009 }));
            Assert.That(c.BosTokenIds, Is.EqualTo(new[] { 128000 }));
            Assert.That(c.QkvBias || c.OutputBias || c.MlpBias, Is.False);
            Assert.That(c.SlidingWindowFor(0), Is.Null);
            Assert.That(c.TorchDtype, Is.EqualTo("bfloat16"));
        });
    }

    [Test]
    public void Qwen2HasQkvBiasAndItsWindowOnlyWhenEnabled()
    {
        const string json = """
            {"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,
             "num_key_value_heads":2,"vocab_size":151936,"rope_theta":1000000.0,"rms_norm_eps":1e-06,"sliding_window":32768,
             "use_sliding_window":false,"max_window_layers":21,"tie_word_embeddings":true,"eos_token_id":151643}
            """;
        var off = ModelConfig.Parse(json);
        Assert.That(off.QkvBias, Is.True);
        Assert.That(off.OutputBias, Is.False);
        Assert.That(off.TieWordEmbeddings, Is.True);
        Assert.That(Enumerable.Range(0, 24).Select(off.SlidingWindowFor), Is.All.Null);

        var on = ModelConfig.Parse(json.Replace("\"use_sliding_window\":false", "\"use_sliding_window\":true"));
        Assert.That(on.SlidingWindowFor(20), Is.Null, "layers below max_window_layers attend fully");
        Assert.That(on.SlidingWindowFor(21), Is.EqualTo(32768));
    }

    [Test]
    public void MistralAcceptsANullWindowAndMixtralItsExperts()
    {
        var mistral = ModelConfig.Parse("""
            {"model_type":"mistral","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,
             "num_key_value_heads":8,"vocab_size":32768,"head_dim":128,"sliding_window":null}
            """);
        Assert.That(mistral.SlidingWindowFor(3), Is.Null);
        Assert.That(mistral.RopeTheta, Is.EqualTo(10000), "transformers' default base");

        var mixtral = ModelConfig.Parse("""
            {"model_type":"mixtral","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,
             "num_key_value_heads":8,"vocab_size":32000,"num_local_experts":8,"num_experts_per_tok":2,"sliding_window":4096}
            """);
        Assert.That(mixtral.IsMoe, Is.True);
        Assert.That((mixtral.NumLocalExperts, mixtral.NumExpertsPerTok), Is.EqualTo((8, 2)));
        Assert.That(mixtral.SlidingWindowFor(31), Is.EqualTo(4096));
    }

    [Test]
    public void RopeParametersOfTransformersV5AreRead()
    {
        var c = ModelConfig.Parse("""
            {"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,
             "rope_parameters":{"rope_type":"yarn","rope_theta":20000.0,"factor":4.0,"beta_fast":16,"original_max_position_embeddings":1024}}
            """);
        Assert.That(c.RopeTheta, Is.EqualTo(20000));
        Assert.That(c.RopeScaling!.Type, Is.EqualTo(RopeScalingType.Yarn));
        Assert.That(c.RopeScaling.BetaFast, Is.EqualTo(16));
        Assert.That(c.RopeScaling.BetaSlow, Is.Null, "left to llmk_rope_frequencies' default");
        Assert.That(c.RopeScaling.Truncate, Is.True);
        Assert.That(c.RopeScaling.OriginalMaxPositionEmbeddings, Is.EqualTo(1024));
    }

    [Test]
    public void OlderLinearScalingSpellsItType()
    {
        var c = ModelConfig.Parse("""
            {"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,
             "max_position_embeddings":4096,"rope_scaling":{"type":"dynamic","factor":2.0}}
            """);
        Assert.That(c.RopeScaling!.Type, Is.EqualTo(RopeScalingType.Dynamic));
        Assert.That(c.RopeScaling.OriginalMaxPositionEmbeddings, Is.EqualTo(4096), "dynamic falls back to max_position_embeddings");
    }

    [Test]
    public void ToJsonRoundTrips()
    {
        var c = TinyModels.Config("tiny-mixtral") with { SlidingWindow = 8, RopeScaling = new RopeScalingConfig { Type = RopeScalingType.Linear, Factor = 2 } };
        var back = ModelConfig.Parse(c.ToJson());
        Assert.That(back with { Architectures = c.Architectures, SlidingLayers = c.SlidingLayers, BosTokenIds = c.BosTokenIds, EosTokenIds = c.EosTokenIds },
                    Is.EqualTo(c));
        Assert.That(back.EosTokenIds, Is.EqualTo(c.EosTokenIds));
    }

    public static IEnumerable<TestCaseData> BadConfigs()
    {
        const string ok = "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":10";
        TestCaseData Case(string name, string json, params string[] mentions) => new TestCaseData(json, mentions).SetName("Rejects_" + name);
        yield return Case("UnknownModelType", $$"""{"model_type":"gpt2",{{ok}}}""", "'model_type'", "'gpt2'", "supported");
        yield return Case("NoModelType", $$"""{{{ok}}}""", "'model_type'", "missing");
        yield return Case("MissingHiddenSize", """{"model_type":"llama","intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":10}""", "'hidden_size'", "missing");
        yield return Case("HiddenSizeString", $$"""{"model_type":"llama",{{ok.Replace("\"hidden_size\":64", "\"hidden_size\":\"64\"")}}}""", "'hidden_size'", "\"64\"", "positive integer");
        yield return Case("ZeroLayers", $$"""{"model_type":"llama",{{ok.Replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":0")}}}""", "'num_hidden_layers'", "is 0");
        yield return Case("KvHeadsDoNotDivide", $$"""{"model_type":"llama","num_key_value_heads":3,{{ok}}}""", "'num_key_value_heads'", "3", "does not divide");
        yield return Case("HiddenNotMultipleOfHeads", $$"""{"model_type":"llama",{{ok.Replace("\"num_attention_heads\":4", "\"num_attention_heads\":5")}}}""", "'head_dim'", "not a multiple");
        yield return Case("OddHeadDim", $$"""{"model_type":"llama","head_dim":15,{{ok}}}""", "'head_dim'", "even");
        yield return Case("NegativeEps", $$"""{"model_type":"llama","rms_norm_eps":-1,{{ok}}}""", "'rms_norm_eps'", "> 0");
        yield return Case("UnknownRopeType", $$"""{"model_type":"llama","rope_scaling":{"rope_type":"longrope","factor":2},{{ok}}}""", "'rope_scaling.rope_type'", "'longrope'");
        yield return Case("ScalingWithoutFactor", $$"""{"model_type":"llama","rope_scaling":{"rope_type":"linear"},{{ok}}}""", "'rope_scaling.factor'", "missing");
        yield return Case("Llama3WithoutOriginal", $$"""{"model_type":"llama","rope_scaling":{"rope_type":"llama3","factor":8},{{ok}}}""", "'rope_scaling.original_max_position_embeddings'", "llama3");
        yield return Case("MixtralWithoutExperts", $$"""{"model_type":"mixtral",{{ok}}}""", "'num_local_experts'", "missing");
        yield return Case("TooManyExpertsPerToken", $$"""{"model_type":"mixtral","num_local_experts":2,"num_experts_per_tok":3,{{ok}}}""", "'num_experts_per_tok'", "3");
        yield return Case("BadEosId", $$"""{"model_type":"llama","eos_token_id":"</s>",{{ok}}}""", "'eos_token_id'", "token id");
        yield return Case("NotJson", "{\"model_type\": llama}", "not valid JSON");
        yield return Case("NotAnObject", "[1, 2]", "expected a JSON object");
    }

    [TestCaseSource(nameof(BadConfigs))]
    public void BadConfigIsRejectedWithItsField(string json, string[] mentions)
    {
        var e = Assert.Throws<ModelFormatException>(() => ModelConfig.Parse(json, "some/config.json"))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.StartWith("some/config.json"));
        foreach (var m in mentions) Assert.That(e.Message, Does.Contain(m));
    }
}
