using System.Text.Json;
using LlmKernels.Interop;

namespace LlmKernels.Models;

/// <summary>The rope scaling kinds of transformers' ROPE_INIT_FUNCTIONS that this runner supports.</summary>
public enum RopeScalingType { Default, Linear, Dynamic, Llama3, Yarn }

/// <summary>
/// rope_scaling (or the newer rope_parameters) of a config.json. Fields a type does not use are null; the
/// runner hands them to llmk_rope_frequencies, which applies transformers' defaults.
/// </summary>
public sealed record RopeScalingConfig
{
    public RopeScalingType Type { get; init; }
    public double Factor { get; init; } = 1.0;
    public int? OriginalMaxPositionEmbeddings { get; init; }
    public double? LowFreqFactor { get; init; }
    public double? HighFreqFactor { get; init; }
    public double? BetaFast { get; init; }
    public double? BetaSlow { get; init; }
    public double? Mscale { get; init; }
    public double? MscaleAllDim { get; init; }
    public double? AttentionFactor { get; init; }
    /// <summary>YaRN: round the correction range to integers (transformers' default: true).</summary>
    public bool Truncate { get; init; } = true;
}

/// <summary>
/// A Hugging Face config.json for the decoder families this runner implements: llama, mistral, qwen2 and
/// mixtral (same block: RMSNorm, GQA attention with RoPE, SwiGLU MLP or a top-k mixture of SwiGLU experts).
/// </summary>
public sealed partial record ModelConfig
{
    public static readonly IReadOnlySet<string> SupportedModelTypes = new HashSet<string> { "llama", "mistral", "qwen2", "mixtral" };

    public required string ModelType { get; init; }
    public IReadOnlyList<string> Architectures { get; init; } = [];
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int VocabSize { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public double RopeTheta { get; init; } = 10000.0;
    public RopeScalingConfig? RopeScaling { get; init; }
    /// <summary>Which dimensions RoPE pairs: Hugging Face checkpoints rotate halves (NeoX); llama.cpp's converter
    /// permutes llama's q/k rows so that GGUF llama models rotate adjacent pairs (GPT-J).</summary>
    public LlmkRopeStyle RopeStyle { get; init; } = LlmkRopeStyle.Neox;
    public double RmsNormEps { get; init; } = 1e-6;
    public bool TieWordEmbeddings { get; init; }
    /// <summary>Bias on q, k, v (qwen2 always; llama's attention_bias also puts one on o).</summary>
    public bool QkvBias { get; init; }
    /// <summary>Bias on the output projection (llama attention_bias only).</summary>
    public bool OutputBias { get; init; }
    /// <summary>Bias on gate, up and down (llama mlp_bias).</summary>
    public bool MlpBias { get; init; }
    /// <summary>Sliding attention window in tokens (a query sees the last W keys, itself included); null: full.</summary>
    public int? SlidingWindow { get; init; }
    /// <summary>Per layer: whether <see cref="SlidingWindow"/> applies (qwen2's use_sliding_window/max_window_layers).</summary>
    public IReadOnlyList<bool> SlidingLayers { get; init; } = [];
    /// <summary>Experts per MoE layer; 0 for a dense MLP.</summary>
    public int NumLocalExperts { get; init; }
    public int NumExpertsPerTok { get; init; }
    public IReadOnlyList<int> BosTokenIds { get; init; } = [];
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public string? TorchDtype { get; init; }

    public bool IsMoe => NumLocalExperts > 0;

    /// <summary>The window of <paramref name="layer"/>, or null when it attends to everything before it.</summary>
    public int? SlidingWindowFor(int layer) =>
        SlidingWindow is int w && (SlidingLayers.Count == 0 || SlidingLayers[layer]) ? w : null;

    /// <summary>The config.json transformers would write for this configuration (Parse(ToJson()) round-trips).</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartArray("architectures");
            foreach (var a in Architectures.Count > 0 ? Architectures : [ArchitectureName(ModelType)]) w.WriteStringValue(a);
            w.WriteEndArray();
            w.WriteString("model_type", ModelType);
            w.WriteNumber("hidden_size", HiddenSize);
            w.WriteNumber("intermediate_size", IntermediateSize);
            w.WriteNumber("num_hidden_layers", NumHiddenLayers);
            w.WriteNumber("num_attention_heads", NumAttentionHeads);
            w.WriteNumber("num_key_value_heads", NumKeyValueHeads);
            w.WriteNumber("head_dim", HeadDim);
            w.WriteNumber("vocab_size", VocabSize);
            w.WriteNumber("max_position_embeddings", MaxPositionEmbeddings);
            w.WriteNumber("rope_theta", RopeTheta);
            if (RopeScaling is { } r)
            {
                w.WriteStartObject("rope_scaling");
                w.WriteString("rope_type", r.Type.ToString().ToLowerInvariant());
                w.WriteNumber("factor", r.Factor);
                if (r.OriginalMaxPositionEmbeddings is int o) w.WriteNumber("original_max_position_embeddings", o);
                void Opt(string name, double? value) { if (value is double d) w.WriteNumber(name, d); }
                Opt("low_freq_factor", r.LowFreqFactor);
                Opt("high_freq_factor", r.HighFreqFactor);
                Opt("beta_fast", r.BetaFast);
                Opt("beta_slow", r.BetaSlow);
                Opt("mscale", r.Mscale);
                Opt("mscale_all_dim", r.MscaleAllDim);
                Opt("attention_factor", r.AttentionFactor);
                if (r.Type == RopeScalingType.Yarn) w.WriteBoolean("truncate", r.Truncate);
                w.WriteEndObject();
            }
            w.WriteNumber("rms_norm_eps", RmsNormEps);
            w.WriteBoolean("tie_word_embeddings", TieWordEmbeddings);
            if (ModelType == "llama")
            {
                w.WriteBoolean("attention_bias", QkvBias);
                w.WriteBoolean("mlp_bias", MlpBias);
            }
            if (ModelType != "llama")
            {
                if (SlidingWindow is int sw) w.WriteNumber("sliding_window", sw);
                else w.WriteNull("sliding_window");
            }
            if (ModelType == "qwen2")
            {
                // Per-layer sliding as transformers' layer_types.
                w.WriteStartArray("layer_types");
                for (int l = 0; l < NumHiddenLayers; l++)
                    w.WriteStringValue(SlidingLayers.Count > l && SlidingLayers[l] ? "sliding_attention" : "full_attention");
                w.WriteEndArray();
                w.WriteBoolean("use_sliding_window", SlidingLayers.Any(s => s));
            }
            if (IsMoe)
            {
                w.WriteNumber("num_local_experts", NumLocalExperts);
                w.WriteNumber("num_experts_per_tok", NumExpertsPerTok);
            }
            void Ids(string name, IReadOnlyList<int> ids)
            {
                if (ids.Count == 1) w.WriteNumber(name, ids[0]);
                else if (ids.Count > 1)
                {
                    w.WriteStartArray(name);
                    foreach (var id in ids) w.WriteNumberValue(id);
                    w.WriteEndArray();
                }
            }
            Ids("bos_token_id", BosTokenIds);
            Ids("eos_token_id", EosTokenIds);
            if (TorchDtype is string dt) w.WriteString("torch_dtype", dt);
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string ArchitectureName(string modelType) => modelType switch
    {
        "llama" => "LlamaForCausalLM",
        "mistral" => "MistralForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        "mixtral" => "MixtralForCausalLM",
        _ => modelType,
    };

    public static ModelConfig Load(string path) => Parse(ModelFile.ReadSmallFile(path), path);

    public static ModelConfig Parse(string json, string source = "config.json") =>
        Parse(System.Text.Encoding.UTF8.GetBytes(json), source);

    public static ModelConfig Parse(ReadOnlySpan<byte> utf8, string source = "config.json")
    {
        using (var doc = ModelFile.ParseJson(utf8.ToArray(), source, new JsonDocumentOptions { AllowTrailingCommas = true }))
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException($"{source}: expected a JSON object, found {doc.RootElement.ValueKind}");
            return FromJson(new Reader(doc.RootElement, source));
        }
    }

    private static ModelConfig FromJson(Reader r)
    {
        var architectures = r.StringList("architectures");
        string? modelType = r.OptionalString("model_type");
        if (modelType is null)
        {
            // Older exports carry only the class name ("LlamaForCausalLM").
            modelType = architectures.Select(a => a.Replace("ForCausalLM", "").ToLowerInvariant())
                                     .FirstOrDefault(SupportedModelTypes.Contains);
            if (modelType is null)
                r.Fail("model_type", "is missing and architectures do not name a supported model");
        }
        if (!SupportedModelTypes.Contains(modelType!))
            r.Fail("model_type", $"is '{modelType}'; supported: {string.Join(", ", SupportedModelTypes)}");

        int hidden = r.PositiveInt("hidden_size");
        int heads = r.PositiveInt("num_attention_heads");
        int kvHeads = r.OptionalPositiveInt("num_key_value_heads") ?? heads;
        if (heads % kvHeads != 0)
            r.Fail("num_key_value_heads", $"is {kvHeads}, which does not divide num_attention_heads ({heads})");
        int? headDim = r.OptionalPositiveInt("head_dim");
        if (headDim is null)
        {
            if (hidden % heads != 0)
                r.Fail("head_dim", $"is missing and hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads})");
            headDim = hidden / heads;
        }
        if (headDim % 2 != 0)
            r.Fail("head_dim", $"is {headDim}; RoPE needs an even head dimension");
        int layers = r.PositiveInt("num_hidden_layers");
        int maxPositions = r.OptionalPositiveInt("max_position_embeddings") ?? 2048;

        // transformers v5 moves rope_theta and the scaling into rope_parameters.
        var ropeParameters = r.OptionalObject("rope_parameters");
        double theta = ropeParameters?.OptionalFloat("rope_theta") ?? r.OptionalFloat("rope_theta") ?? 10000.0;
        if (!((float)theta > 0)) r.Fail("rope_theta", $"is {theta}, expected > 0");
        var scaling = ParseRopeScaling(ropeParameters ?? r.OptionalObject("rope_scaling"), maxPositions);

        double eps = r.OptionalFloat("rms_norm_eps") ?? 1e-6;
        if (!((float)eps > 0)) r.Fail("rms_norm_eps", $"is {eps}, expected > 0 in single precision (the kernels' eps is a float)");

        bool attentionBias = r.OptionalBool("attention_bias") ?? false;
        bool isQwen2 = modelType == "qwen2";

        int? window = r.OptionalPositiveInt("sliding_window");
        var slidingLayers = new List<bool>();
        if (isQwen2)
        {
            // Qwen2 stores a window but applies it only with use_sliding_window, from max_window_layers on.
            var layerTypes = r.StringList("layer_types");
            if (layerTypes.Count > 0)
            {
                if (layerTypes.Count != layers)
                    r.Fail("layer_types", $"has {layerTypes.Count} entries, expected num_hidden_layers ({layers})");
                slidingLayers.AddRange(layerTypes.Select(t => t == "sliding_attention"));
            }
            else
            {
                bool use = r.OptionalBool("use_sliding_window") ?? false;
                int from = r.OptionalNonNegativeInt("max_window_layers") ?? layers;
                for (int l = 0; l < layers; l++) slidingLayers.Add(use && l >= from);
            }
        }
        else if (modelType == "llama")
        {
            window = null; // llama has no sliding window, whatever the file says
        }

        int experts = 0, perToken = 0;
        if (modelType == "mixtral")
        {
            experts = r.PositiveInt("num_local_experts");
            perToken = r.PositiveInt("num_experts_per_tok");
            if (perToken > experts)
                r.Fail("num_experts_per_tok", $"is {perToken}, more than num_local_experts ({experts})");
        }

        int vocab = r.PositiveInt("vocab_size");
        var bos = r.TokenIds("bos_token_id", vocab);
        var eos = r.TokenIds("eos_token_id", vocab);
        return new ModelConfig
        {
            ModelType = modelType!,
            Architectures = architectures,
            HiddenSize = hidden,
            IntermediateSize = r.PositiveInt("intermediate_size"),
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim.Value,
            VocabSize = vocab,
            MaxPositionEmbeddings = maxPositions,
            RopeTheta = theta,
            RopeScaling = scaling,
            RmsNormEps = eps,
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? false,
            QkvBias = isQwen2 || attentionBias,
            OutputBias = !isQwen2 && attentionBias,
            MlpBias = modelType == "llama" && (r.OptionalBool("mlp_bias") ?? false),
            SlidingWindow = window,
            SlidingLayers = slidingLayers,
            NumLocalExperts = experts,
            NumExpertsPerTok = perToken,
            BosTokenIds = bos,
            EosTokenIds = eos,
            TorchDtype = r.OptionalString("torch_dtype") ?? r.OptionalString("dtype"),
        };
    }

    private static RopeScalingConfig? ParseRopeScaling(Reader? s, int maxPositions)
    {
        if (s is null) return null;
        string? name = s.OptionalString("rope_type") ?? s.OptionalString("type");
        var type = name switch
        {
            null or "default" => RopeScalingType.Default,
            "linear" => RopeScalingType.Linear,
            "dynamic" => RopeScalingType.Dynamic,
            "llama3" => RopeScalingType.Llama3,
            "yarn" => RopeScalingType.Yarn,
            _ => s.Fail<RopeScalingType>("rope_type", $"is '{name}'; supported: default, linear, dynamic, llama3, yarn"),
        };
        if (type == RopeScalingType.Default) return null;
        double factor = s.OptionalFloat("factor") ?? s.Fail<double>("factor", $"is missing; {name} scaling needs it");
        if (!((float)factor > 0)) s.Fail("factor", $"is {factor}, expected > 0");
        int? original = s.OptionalPositiveInt("original_max_position_embeddings");
        if (type == RopeScalingType.Llama3 && original is null)
            s.Fail("original_max_position_embeddings", "is missing; llama3 scaling needs it");
        return new RopeScalingConfig
        {
            Type = type,
            Factor = factor,
            // transformers falls back to max_position_embeddings for dynamic and yarn.
            OriginalMaxPositionEmbeddings = original ?? (type is RopeScalingType.Dynamic or RopeScalingType.Yarn ? maxPositions : null),
            LowFreqFactor = s.OptionalFloat("low_freq_factor"),
            HighFreqFactor = s.OptionalFloat("high_freq_factor"),
            BetaFast = s.OptionalFloat("beta_fast"),
            BetaSlow = s.OptionalFloat("beta_slow"),
            Mscale = s.OptionalFloat("mscale"),
            MscaleAllDim = s.OptionalFloat("mscale_all_dim"),
            AttentionFactor = s.OptionalFloat("attention_factor"),
            Truncate = s.OptionalBool("truncate") ?? true,
        };
    }

    /// <summary>Typed field access that turns every problem into a message naming the file and the field.</summary>
    private sealed class Reader(JsonElement obj, string source)
    {
        public void Fail(string field, string what) => throw new ModelFormatException($"{source}: '{field}' {what}");

        public T Fail<T>(string field, string what) => throw new ModelFormatException($"{source}: '{field}' {what}");

        private JsonElement? Get(string field) =>
            obj.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

        public Reader? OptionalObject(string field)
        {
            if (Get(field) is not JsonElement v) return null;
            if (v.ValueKind != JsonValueKind.Object) Fail(field, $"is a JSON {v.ValueKind}, expected an object");
            return new Reader(v, $"{source}: '{field}'");
        }

        public string? OptionalString(string field)
        {
            if (Get(field) is not JsonElement v) return null;
            if (v.ValueKind != JsonValueKind.String) Fail(field, $"is {v.GetRawText()}, expected a string");
            return v.GetString();
        }

        public List<string> StringList(string field)
        {
            if (Get(field) is not JsonElement v) return [];
            if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
                Fail(field, $"is {v.GetRawText()}, expected an array of strings");
            return v.EnumerateArray().Select(e => e.GetString()!).ToList();
        }

        public bool? OptionalBool(string field)
        {
            if (Get(field) is not JsonElement v) return null;
            if (v.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) Fail(field, $"is {v.GetRawText()}, expected true or false");
            return v.GetBoolean();
        }

        public double? OptionalDouble(string field)
        {
            if (Get(field) is not JsonElement v) return null;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
                Fail(field, $"is {v.GetRawText()}, expected a number");
            return v.GetDouble();
        }

        /// <summary>A number the kernels take as a float: it must be finite in single precision too (1e300 is
        /// a finite double and an infinite float).</summary>
        public double? OptionalFloat(string field)
        {
            if (OptionalDouble(field) is not double d) return null;
            if (!float.IsFinite((float)d)) Fail(field, $"is {d}, beyond the single-precision range the kernels compute in");
            return d;
        }

        /// <summary>The largest size field (layers, widths, vocabulary, positions) taken: far above any real model
        /// (hidden sizes reach 16384, vocabularies 262k, contexts 10M), so that no list sized by one (the per-layer
        /// flags) is made huge by one number in the file; the fuzz test found that one.</summary>
        public const int MaxSize = 1 << 24;

        private int? OptionalInt(string field, int min, string expected)
        {
            if (Get(field) is not JsonElement v) return null;
            // Python writes 4096.0 for some integer fields; accept integral doubles.
            double d = v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double number) ? number : double.NaN;
            if (!(d == Math.Floor(d) && d >= min))
                Fail(field, $"is {v.GetRawText()}, expected {expected}");
            if (d > MaxSize)
                Fail(field, $"is {v.GetRawText()}, more than the {MaxSize} this runner takes for a size");
            return (int)v.GetDouble();
        }

        public int? OptionalPositiveInt(string field) => OptionalInt(field, 1, "a positive integer");

        public int? OptionalNonNegativeInt(string field) => OptionalInt(field, 0, "a non-negative integer");

        public int PositiveInt(string field) =>
            OptionalPositiveInt(field) ?? Fail<int>(field, "is missing; expected a positive integer");

        /// <summary>An id or a list of ids (Llama 3 lists several EOS ids), each below vocab_size.</summary>
        public List<int> TokenIds(string field, int vocabSize)
        {
            if (Get(field) is not JsonElement v) return [];
            var items = v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().ToList() : [v];
            var ids = new List<int>();
            foreach (var e in items)
            {
                if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id) || id < 0)
                    Fail(field, $"is {v.GetRawText()}, expected a token id or a list of token ids");
                if (e.GetInt32() >= vocabSize)
                    Fail(field, $"is {v.GetRawText()}; id {e.GetInt32()} is not below vocab_size ({vocabSize})");
                ids.Add(e.GetInt32());
            }
            return ids;
        }
    }
}
