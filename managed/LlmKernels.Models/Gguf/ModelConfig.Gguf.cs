using LlmKernels.Interop;
using LlmKernels.Models.Gguf;

namespace LlmKernels.Models;

public sealed partial record ModelConfig
{
    /// <summary>The GGUF architectures this runner reads: llama (also Mistral, and Mixtral with experts), qwen2.</summary>
    public static readonly IReadOnlySet<string> SupportedGgufArchitectures = new HashSet<string> { "llama", "mistral", "mixtral", "qwen2" };

    /// <summary>
    /// The configuration in a GGUF file's metadata ({arch}.embedding_length, ...), as llama.cpp's converter writes
    /// it. The rope style is llama.cpp's for the architecture: GPT-J (adjacent pairs) for llama, whose q/k rows
    /// the converter permutes, NeoX for qwen2. Tied embeddings: no output.weight tensor.
    /// </summary>
    public static ModelConfig FromGguf(GgufFile file) => FromGguf(file.Header, file.Path);

    public static ModelConfig FromGguf(GgufHeader header, string source)
    {
        var m = new GgufMetadata(header.Metadata, source);
        string arch = m.String("general.architecture");
        if (!SupportedGgufArchitectures.Contains(arch))
            throw m.Error("general.architecture", $"is '{arch}'; supported: {string.Join(", ", SupportedGgufArchitectures)}");
        string K(string key) => $"{arch}.{key}";

        int hidden = m.Int(K("embedding_length"), 1);
        int heads = m.Int(K("attention.head_count"), 1);
        int kvHeads = m.OptionalInt(K("attention.head_count_kv"), 1) ?? heads;
        if (heads % kvHeads != 0)
            throw m.Error(K("attention.head_count_kv"), $"is {kvHeads}, which does not divide the head count ({heads})");
        int headDim = m.OptionalInt(K("attention.key_length"), 1) ?? (hidden % heads == 0 ? hidden / heads
            : throw m.Error(K("attention.head_count"), $"is {heads}, which does not divide the embedding length ({hidden})"));
        if (headDim % 2 != 0) throw m.Error(K("attention.key_length"), $"is {headDim}; RoPE needs an even head dimension");
        if (m.OptionalInt(K("attention.value_length"), 1) is int vd && vd != headDim)
            throw m.Error(K("attention.value_length"), $"is {vd}; this runner needs it equal to the key length ({headDim})");
        if (m.OptionalInt(K("rope.dimension_count"), 1) is int rotary && rotary != headDim)
            throw m.Error(K("rope.dimension_count"), $"is {rotary}; partial rotary embeddings (head dimension {headDim}) are not supported");
        if (header.Tensors.Any(t => t.Name == "rope_freqs.weight"))
            throw new ModelFormatException($"{source}: tensor 'rope_freqs.weight' (per-frequency rope factors, as Llama 3.1's) is not supported");

        int contextLength = m.OptionalInt(K("context_length"), 1) ?? 2048;
        double eps = m.OptionalDouble(K("attention.layer_norm_rms_epsilon")) ?? 1e-5;
        if (!(eps > 0)) throw m.Error(K("attention.layer_norm_rms_epsilon"), $"is {eps}, expected > 0");
        double theta = m.OptionalDouble(K("rope.freq_base")) ?? 10000.0;
        if (!(theta > 0)) throw m.Error(K("rope.freq_base"), $"is {theta}, expected > 0");

        int experts = m.OptionalInt(K("expert_count")) ?? 0, perToken = 0;
        if (experts > 0)
        {
            perToken = m.Int(K("expert_used_count"), 1);
            if (perToken > experts) throw m.Error(K("expert_used_count"), $"is {perToken}, more than the expert count ({experts})");
        }
        int? window = m.OptionalInt(K("attention.sliding_window"), 1);
        bool isQwen2 = arch == "qwen2";
        string modelType = isQwen2 ? "qwen2" : experts > 0 ? "mixtral" : arch == "mistral" || window is not null ? "mistral" : "llama";

        var tokens = m.OptionalArray<string>("tokenizer.ggml.tokens");
        int vocab = tokens?.Length ?? m.OptionalInt(K("vocab_size"), 1)
            ?? throw m.Error("tokenizer.ggml.tokens", $"is missing (and so is {K("vocab_size")}); the vocabulary size is unknown");
        static IReadOnlyList<int> Id(int? id) => id is int i ? [i] : [];
        int layers = m.Int(K("block_count"), 1);
        return new ModelConfig
        {
            ModelType = modelType,
            HiddenSize = hidden,
            IntermediateSize = m.Int(K("feed_forward_length"), 1),
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            VocabSize = vocab,
            MaxPositionEmbeddings = contextLength,
            RopeTheta = theta,
            RopeScaling = GgufRopeScaling(m, K, contextLength),
            RopeStyle = isQwen2 ? LlmkRopeStyle.Neox : LlmkRopeStyle.Gptj,
            RmsNormEps = eps,
            TieWordEmbeddings = !header.Tensors.Any(t => t.Name == "output.weight"),
            QkvBias = isQwen2,
            SlidingWindow = window,
            SlidingLayers = window is null ? [] : Enumerable.Repeat(true, layers).ToList(),
            NumLocalExperts = experts,
            NumExpertsPerTok = perToken,
            BosTokenIds = Id(m.OptionalInt("tokenizer.ggml.bos_token_id")),
            EosTokenIds = Id(m.OptionalInt("tokenizer.ggml.eos_token_id")),
        };
    }

    private static RopeScalingConfig? GgufRopeScaling(GgufMetadata m, Func<string, string> key, int contextLength)
    {
        string type = m.OptionalString(key("rope.scaling.type")) ?? "none";
        var kind = type switch
        {
            "none" => RopeScalingType.Default,
            "linear" => RopeScalingType.Linear,
            "yarn" => RopeScalingType.Yarn,
            _ => throw m.Error(key("rope.scaling.type"), $"is '{type}'; supported: none, linear, yarn"),
        };
        if (kind == RopeScalingType.Default) return null;
        double factor = m.OptionalDouble(key("rope.scaling.factor")) ?? throw m.Error(key("rope.scaling.factor"), $"is missing; {type} scaling needs it");
        if (!(factor > 0)) throw m.Error(key("rope.scaling.factor"), $"is {factor}, expected > 0");
        int? original = m.OptionalInt(key("rope.scaling.original_context_length"), 1);
        return new RopeScalingConfig
        {
            Type = kind,
            Factor = factor,
            OriginalMaxPositionEmbeddings = original ?? (kind == RopeScalingType.Yarn ? contextLength : null),
        };
    }
}
