using System.Text.Json;
using LlmKernels.Interop;
using LlmKernels.Models.Safetensors;
using LlmKernels.Models.Tokenization;

namespace LlmKernels.Models;

/// <summary>
/// Built-in tiny models that need no download: a Llama-style and a Mixtral-style preset with weights from
/// a seeded RNG, and a small byte-level BPE tokenizer built in code. The text they generate is noise; they
/// exist to run every kernel of the forward pass end to end (generate, verify, bench, tests).
/// </summary>
public static class TinyModels
{
    public static IReadOnlyList<string> Presets { get; } = ["tiny-llama", "tiny-mixtral"];

    /// <summary>A few English merges on top of the 256 byte tokens.</summary>
    private static readonly (string Left, string Right)[] Merges =
    [
        ("Ġ", "t"), ("h", "e"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġt", "he"), ("r", "e"),
        ("a", "n"), ("Ġ", "s"), ("e", "n"), ("Ġ", "w"), ("o", "r"), ("Ġ", "o"), ("a", "t"), ("e", "s"),
        ("Ġ", "b"), ("i", "s"), ("Ġ", "c"), ("Ġ", "m"), ("in", "g"), ("Ġ", "l"), ("Ġ", "f"), ("l", "l"),
    ];

    public const string BosToken = "<|begin_of_text|>";
    public const string EosToken = "<|end_of_text|>";

    /// <summary>The Llama 3 style tokenizer.json of the tiny models.</summary>
    public static string TokenizerJson()
    {
        var vocab = new Dictionary<string, int>();
        foreach (char c in Enumerable.Range(0, 256).Select(b => ByteLevelMap.ByteToChar[b])) vocab[c.ToString()] = vocab.Count;
        foreach (var (l, r) in Merges) vocab[l + r] = vocab.Count;
        int bos = vocab.Count, eos = vocab.Count + 1;

        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteStartArray("added_tokens");
            foreach (var (id, content) in new[] { (bos, BosToken), (eos, EosToken) })
            {
                w.WriteStartObject();
                w.WriteNumber("id", id);
                w.WriteString("content", content);
                w.WriteBoolean("single_word", false);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("normalized", false);
                w.WriteBoolean("special", true);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNull("normalizer");
            w.WriteStartObject("pre_tokenizer");
            w.WriteString("type", "ByteLevel");
            w.WriteBoolean("add_prefix_space", false);
            w.WriteBoolean("use_regex", true);
            w.WriteEndObject();
            w.WriteStartObject("post_processor");
            w.WriteString("type", "TemplateProcessing");
            w.WriteStartArray("single");
            w.WriteStartObject(); w.WriteStartObject("SpecialToken"); w.WriteString("id", BosToken); w.WriteNumber("type_id", 0); w.WriteEndObject(); w.WriteEndObject();
            w.WriteStartObject(); w.WriteStartObject("Sequence"); w.WriteString("id", "A"); w.WriteNumber("type_id", 0); w.WriteEndObject(); w.WriteEndObject();
            w.WriteEndArray();
            w.WriteStartObject("special_tokens");
            w.WriteStartObject(BosToken);
            w.WriteString("id", BosToken);
            w.WriteStartArray("ids"); w.WriteNumberValue(bos); w.WriteEndArray();
            w.WriteStartArray("tokens"); w.WriteStringValue(BosToken); w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject("decoder");
            w.WriteString("type", "ByteLevel");
            w.WriteEndObject();
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteBoolean("byte_fallback", false);
            w.WriteStartObject("vocab");
            foreach (var (token, id) in vocab) w.WriteNumber(token, id);
            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (var (l, r) in Merges) { w.WriteStartArray(); w.WriteStringValue(l); w.WriteStringValue(r); w.WriteEndArray(); }
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    public static Tokenizer CreateTokenizer() => Tokenizer.FromJson(TokenizerJson(), "embedded tiny tokenizer");

    /// <summary>The tiny models' chat template: "role: content" turns, each ended by the end-of-text token.</summary>
    public const string ChatTemplateSource =
        "{{ bos_token }}{% if tools %}tools: {{ tools | tojson }}{{ eos_token }}{% endif %}" +
        "{% for message in messages %}{{ message.role }}: {{ message.content }}" +
        "{% for call in message.tool_calls or [] %} call {{ call.function.name }}({{ call.function.arguments | tojson }}){% endfor %}" +
        "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

    public static Templates.ChatTemplate CreateChatTemplate() => new(ChatTemplateSource, BosToken, EosToken);

    /// <summary>An IChatClient over a preset (noise answers, real mechanics); it owns the model.</summary>
    public static Chat.LlmkChatClient CreateChatClient(Context ctx, string preset = "tiny-llama", int seed = 1234,
                                                       Chat.LlmkChatClientOptions? options = null)
    {
        var model = Load(ctx, preset, seed);
        return new Chat.LlmkChatClient(model, CreateTokenizer(), CreateChatTemplate(),
                                       options ?? new Chat.LlmkChatClientOptions { ModelId = preset }, model);
    }

    /// <summary>The configuration of a preset ("tiny-llama", "tiny-mixtral").</summary>
    public static ModelConfig Config(string preset)
    {
        int vocab = 256 + Merges.Length + 2;
        var llama = new ModelConfig
        {
            ModelType = "llama",
            HiddenSize = 64,
            IntermediateSize = 160,
            NumHiddenLayers = 2,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 2,
            HeadDim = 16,
            VocabSize = vocab,
            MaxPositionEmbeddings = 512,
            RopeTheta = 10000,
            RmsNormEps = 1e-5,
            BosTokenIds = [vocab - 2],
            EosTokenIds = [vocab - 1],
            TorchDtype = "float32",
        };
        return preset switch
        {
            "tiny-llama" => llama,
            "tiny-mixtral" => llama with { ModelType = "mixtral", IntermediateSize = 96, NumLocalExperts = 4, NumExpertsPerTok = 2 },
            _ => throw new ArgumentException($"unknown preset '{preset}'; presets: {string.Join(", ", Presets)}", nameof(preset)),
        };
    }

    /// <summary>
    /// Random weights for any configuration, under transformers' names: projections uniform with variance
    /// 1/fan_in (activations keep their scale through the layers), norms near 1, biases small.
    /// </summary>
    public static Dictionary<string, (float[] Values, long[] Shape)> CreateWeights(ModelConfig c, int seed)
    {
        var rng = new Random(seed);
        var weights = new Dictionary<string, (float[], long[])>();
        void Add(string name, float center, float scale, params long[] shape)
        {
            var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
            for (int i = 0; i < values.Length; i++) values[i] = center + scale * (float)(2 * rng.NextDouble() - 1);
            weights[name] = (values, shape);
        }
        void Linear(string name, long outFeatures, long inFeatures, bool bias = false)
        {
            Add(name + ".weight", 0, (float)Math.Sqrt(3.0 / inFeatures), outFeatures, inFeatures);
            if (bias) Add(name + ".bias", 0, 0.1f, outFeatures);
        }
        long hidden = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        long ffn = c.IntermediateSize;
        Add("model.embed_tokens.weight", 0, 1, c.VocabSize, hidden);
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            Add(p + "input_layernorm.weight", 1, 0.2f, hidden);
            Add(p + "post_attention_layernorm.weight", 1, 0.2f, hidden);
            Linear(p + "self_attn.q_proj", q, hidden, c.QkvBias);
            Linear(p + "self_attn.k_proj", kv, hidden, c.QkvBias);
            Linear(p + "self_attn.v_proj", kv, hidden, c.QkvBias);
            Linear(p + "self_attn.o_proj", hidden, q, c.OutputBias);
            if (c.IsMoe)
            {
                Linear(p + "block_sparse_moe.gate", c.NumLocalExperts, hidden);
                for (int e = 0; e < c.NumLocalExperts; e++)
                {
                    string x = $"{p}block_sparse_moe.experts.{e}.";
                    Linear(x + "w1", ffn, hidden);
                    Linear(x + "w2", hidden, ffn);
                    Linear(x + "w3", ffn, hidden);
                }
            }
            else
            {
                Linear(p + "mlp.gate_proj", ffn, hidden, c.MlpBias);
                Linear(p + "mlp.up_proj", ffn, hidden, c.MlpBias);
                Linear(p + "mlp.down_proj", hidden, ffn, c.MlpBias);
            }
        }
        Add("model.norm.weight", 1, 0.2f, hidden);
        if (!c.TieWordEmbeddings) Linear("lm_head", c.VocabSize, hidden);
        return weights;
    }

    /// <summary>A preset loaded on <paramref name="ctx"/> from memory.</summary>
    public static LlamaModel Load(Context ctx, string preset, int seed = 1234, LlmkDtype weightDtype = LlmkDtype.F32,
                                  LlmkDtype? activationDtype = null)
    {
        var config = Config(preset);
        return new LlamaModel(ctx, config, WeightSource.FromArrays($"embedded {preset} (seed {seed})", CreateWeights(config, seed), weightDtype),
                              activationDtype);
    }

    /// <summary>Writes a checkpoint directory: config.json, model.safetensors (f32) and, if given, tokenizer.json.</summary>
    public static void Save(string directory, ModelConfig config, IReadOnlyDictionary<string, (float[] Values, long[] Shape)> weights,
                            string? tokenizerJson = null)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJson());
        SafetensorsWriter.Write(Path.Combine(directory, SafetensorsCheckpoint.SingleFileName),
                                weights.OrderBy(w => w.Key, StringComparer.Ordinal)
                                       .Select(w => SafetensorsWriter.F32(w.Key, w.Value.Values, w.Value.Shape)),
                                new Dictionary<string, string> { ["format"] = "pt" });
        if (tokenizerJson is not null) File.WriteAllText(Path.Combine(directory, "tokenizer.json"), tokenizerJson);
    }
}
