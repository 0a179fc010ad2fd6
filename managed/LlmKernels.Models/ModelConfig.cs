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

    // What the kernels are given for this configuration. Every difference between the families the runner sees is
    // decided in this file (the biases and windows above, these parameters); LlamaModel only runs the block.

    /// <summary>The attention of <paramref name="layer"/>: causal, with transformers' sliding window W (query i sees
    /// keys j with i - j &lt; W: W - 1 to its left).</summary>
    public LlmkAttentionParams AttentionParams(int layer) =>
        LlmkAttentionParams.Create(causal: true, windowLeft: SlidingWindowFor(layer) is int w ? w - 1 : -1);

    /// <summary>Mixtral's router: softmax over the experts, the best <see cref="NumExpertsPerTok"/>, renormalized.</summary>
    public LlmkMoeRouterParams MoeRouterParams => LlmkMoeRouterParams.Create(NumExpertsPerTok, LlmkMoeScoring.Softmax, renormalize: true);

    /// <summary>The rope parameters for a sequence of <paramref name="sequenceLength"/> tokens (dynamic NTK scaling
    /// depends on it).</summary>
    public LlmkRopeParams RopeParams(int sequenceLength)
    {
        if (RopeScaling is not { } r) return LlmkRopeParams.Create((float)RopeTheta, RopeStyle);
        var scaling = r.Type switch
        {
            RopeScalingType.Linear => LlmkRopeScaling.Linear,
            RopeScalingType.Dynamic => LlmkRopeScaling.Dynamic,
            RopeScalingType.Llama3 => LlmkRopeScaling.Llama3,
            RopeScalingType.Yarn => LlmkRopeScaling.Yarn,
            _ => LlmkRopeScaling.Default,
        };
        // Dynamic NTK grows the base once the sequence passes max_position_embeddings (transformers'
        // _compute_dynamic_ntk_parameters); llama3 and yarn scale against the original training length.
        int originalMax = scaling == LlmkRopeScaling.Dynamic
            ? MaxPositionEmbeddings
            : r.OriginalMaxPositionEmbeddings ?? MaxPositionEmbeddings;
        return LlmkRopeParams.Create((float)RopeTheta, RopeStyle, 0, scaling, (float)r.Factor, originalMax, sequenceLength,
                                     (float)(r.LowFreqFactor ?? 0), (float)(r.HighFreqFactor ?? 0), (float)(r.BetaFast ?? 0),
                                     (float)(r.BetaSlow ?? 0), (float)(r.Mscale ?? 0), (float)(r.MscaleAllDim ?? 0),
                                     (float)(r.AttentionFactor ?? 0), r.Truncate);
    }

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

    public static ModelConfig Parse(ReadOnlySpan<byte> utf8, string source = "config.json") =>
        FromJson(JsonField.ParseObject(utf8.ToArray(), source));

    private static ModelConfig FromJson(JsonField r)
    {
        var architectures = r.Optional("architectures")?.StringList() ?? [];
        string? modelType = r.OptionalString("model_type");
        if (modelType is null)
        {
            // Older exports carry only the class name ("LlamaForCausalLM").
            modelType = architectures.Select(a => a.Replace("ForCausalLM", "").ToLowerInvariant())
                                     .FirstOrDefault(SupportedModelTypes.Contains)
                ?? throw r.Error("model_type", "is missing and architectures do not name a supported model");
        }
        if (!SupportedModelTypes.Contains(modelType))
            throw r.Error("model_type", $"is '{modelType}'; supported: {string.Join(", ", SupportedModelTypes)}");

        int hidden = r.Required("hidden_size").Size(1);
        int heads = r.Required("num_attention_heads").Size(1);
        int kvHeads = r.Optional("num_key_value_heads")?.Size(1) ?? heads;
        if (heads % kvHeads != 0)
            throw r.Error("num_key_value_heads", $"is {kvHeads}, which does not divide num_attention_heads ({heads})");
        int? headDim = r.Optional("head_dim")?.Size(1);
        if (headDim is null)
        {
            if (hidden % heads != 0)
                throw r.Error("head_dim", $"is missing and hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads})");
            headDim = hidden / heads;
        }
        if (headDim % 2 != 0)
            throw r.Error("head_dim", $"is {headDim}; RoPE needs an even head dimension");
        int layers = r.Required("num_hidden_layers").Size(1);
        int maxPositions = r.Optional("max_position_embeddings")?.Size(1) ?? 2048;

        // transformers v5 moves rope_theta and the scaling into rope_parameters.
        var ropeParameters = r.Optional("rope_parameters")?.Object();
        double theta = ropeParameters?.Optional("rope_theta")?.Float() ?? r.Optional("rope_theta")?.Float() ?? 10000.0;
        if (!((float)theta > 0)) throw r.Error("rope_theta", $"is {theta}, expected > 0");
        var scaling = ParseRopeScaling(ropeParameters ?? r.Optional("rope_scaling")?.Object(), maxPositions);

        double eps = r.Optional("rms_norm_eps")?.Float() ?? 1e-6;
        if (!((float)eps > 0)) throw r.Error("rms_norm_eps", $"is {eps}, expected > 0 in single precision (the kernels' eps is a float)");

        bool attentionBias = r.Optional("attention_bias")?.Bool() ?? false;
        bool isQwen2 = modelType == "qwen2";

        int? window = r.Optional("sliding_window")?.Size(1);
        var slidingLayers = new List<bool>();
        if (isQwen2)
        {
            // Qwen2 stores a window but applies it only with use_sliding_window, from max_window_layers on.
            var layerTypes = r.Optional("layer_types")?.StringList() ?? [];
            if (layerTypes.Count > 0)
            {
                if (layerTypes.Count != layers)
                    throw r.Error("layer_types", $"has {layerTypes.Count} entries, expected num_hidden_layers ({layers})");
                slidingLayers.AddRange(layerTypes.Select(t => t == "sliding_attention"));
            }
            else
            {
                bool use = r.OptionalBool("use_sliding_window", false);
                int from = r.Optional("max_window_layers")?.Size(0) ?? layers;
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
            experts = r.Required("num_local_experts").Size(1);
            perToken = r.Required("num_experts_per_tok").Size(1);
            if (perToken > experts)
                throw r.Error("num_experts_per_tok", $"is {perToken}, more than num_local_experts ({experts})");
        }

        int vocab = r.Required("vocab_size").Size(1);
        return new ModelConfig
        {
            ModelType = modelType,
            Architectures = architectures,
            HiddenSize = hidden,
            IntermediateSize = r.Required("intermediate_size").Size(1),
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim.Value,
            VocabSize = vocab,
            MaxPositionEmbeddings = maxPositions,
            RopeTheta = theta,
            RopeScaling = scaling,
            RmsNormEps = eps,
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings", false),
            QkvBias = isQwen2 || attentionBias,
            OutputBias = !isQwen2 && attentionBias,
            MlpBias = modelType == "llama" && r.OptionalBool("mlp_bias", false),
            SlidingWindow = window,
            SlidingLayers = slidingLayers,
            NumLocalExperts = experts,
            NumExpertsPerTok = perToken,
            BosTokenIds = r.Optional("bos_token_id")?.TokenIds(vocab) ?? [],
            EosTokenIds = r.Optional("eos_token_id")?.TokenIds(vocab) ?? [],
            TorchDtype = r.OptionalString("torch_dtype") ?? r.OptionalString("dtype"),
        };
    }

    private static RopeScalingConfig? ParseRopeScaling(JsonField? s, int maxPositions)
    {
        if (s is not JsonField node) return null;
        string? name = node.OptionalString("rope_type") ?? node.OptionalString("type");
        var type = name switch
        {
            null or "default" => RopeScalingType.Default,
            "linear" => RopeScalingType.Linear,
            "dynamic" => RopeScalingType.Dynamic,
            "llama3" => RopeScalingType.Llama3,
            "yarn" => RopeScalingType.Yarn,
            _ => throw node.Error("rope_type", $"is '{name}'; supported: default, linear, dynamic, llama3, yarn"),
        };
        if (type == RopeScalingType.Default) return null;
        double factor = node.Optional("factor")?.Float() ?? throw node.Error("factor", $"is missing; {name} scaling needs it");
        if (!((float)factor > 0)) throw node.Error("factor", $"is {factor}, expected > 0");
        int? original = node.Optional("original_max_position_embeddings")?.Size(1);
        if (type == RopeScalingType.Llama3 && original is null)
            throw node.Error("original_max_position_embeddings", "is missing; llama3 scaling needs it");
        double? Float(string field) => node.Optional(field)?.Float();
        return new RopeScalingConfig
        {
            Type = type,
            Factor = factor,
            // transformers falls back to max_position_embeddings for dynamic and yarn.
            OriginalMaxPositionEmbeddings = original ?? (type is RopeScalingType.Dynamic or RopeScalingType.Yarn ? maxPositions : null),
            LowFreqFactor = Float("low_freq_factor"),
            HighFreqFactor = Float("high_freq_factor"),
            BetaFast = Float("beta_fast"),
            BetaSlow = Float("beta_slow"),
            Mscale = Float("mscale"),
            MscaleAllDim = Float("mscale_all_dim"),
            AttentionFactor = Float("attention_factor"),
            Truncate = node.OptionalBool("truncate", true),
        };
    }
}
