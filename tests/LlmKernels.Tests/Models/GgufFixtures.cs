using LlmKernels.Models;
using LlmKernels.Models.Gguf;

namespace LlmKernels.Tests.Models;

/// <summary>
/// Writes a Hugging Face checkpoint (config + weights by transformers' names) as GGUF the way llama.cpp's
/// converter does: GGUF tensor names, ne reversed, llama's q/k rows permuted for its GPT-J rope, 1-D tensors
/// in f32, Mixtral's experts stacked into 3-D tensors, matrices in <c>matrixDtype</c> (quantized by llmk_convert).
/// </summary>
internal static class GgufFixtures
{
    public static string Architecture(ModelConfig c) => c.ModelType == "qwen2" ? "qwen2" : "llama";

    public static List<KeyValuePair<string, object>> Metadata(ModelConfig c)
    {
        string arch = Architecture(c);
        var kv = new List<KeyValuePair<string, object>>();
        void Add(string key, object value) => kv.Add(new(key, value));
        Add("general.architecture", arch);
        Add("general.alignment", 32u);
        Add($"{arch}.context_length", (uint)c.MaxPositionEmbeddings);
        Add($"{arch}.embedding_length", (uint)c.HiddenSize);
        Add($"{arch}.block_count", (uint)c.NumHiddenLayers);
        Add($"{arch}.feed_forward_length", (uint)c.IntermediateSize);
        Add($"{arch}.attention.head_count", (uint)c.NumAttentionHeads);
        Add($"{arch}.attention.head_count_kv", (uint)c.NumKeyValueHeads);
        Add($"{arch}.attention.key_length", (uint)c.HeadDim);
        Add($"{arch}.attention.value_length", (uint)c.HeadDim);
        Add($"{arch}.rope.dimension_count", (uint)c.HeadDim);
        Add($"{arch}.attention.layer_norm_rms_epsilon", (float)c.RmsNormEps);
        Add($"{arch}.rope.freq_base", (float)c.RopeTheta);
        Add($"{arch}.vocab_size", (uint)c.VocabSize);
        if (c.RopeScaling is { } r)
        {
            Add($"{arch}.rope.scaling.type", r.Type.ToString().ToLowerInvariant());
            Add($"{arch}.rope.scaling.factor", (float)r.Factor);
        }
        if (c.SlidingWindow is int w) Add($"{arch}.attention.sliding_window", (uint)w);
        if (c.IsMoe)
        {
            Add($"{arch}.expert_count", (uint)c.NumLocalExperts);
            Add($"{arch}.expert_used_count", (uint)c.NumExpertsPerTok);
        }
        if (c.BosTokenIds.Count > 0) Add("tokenizer.ggml.bos_token_id", (uint)c.BosTokenIds[0]);
        if (c.EosTokenIds.Count > 0) Add("tokenizer.ggml.eos_token_id", (uint)c.EosTokenIds[0]);
        return kv;
    }

    /// <summary>llama.cpp's q/k permutation: per head, rows (i, i + d/2) of the rotate-halves layout become rows (2i, 2i + 1).</summary>
    public static float[] PermuteRows(float[] w, long rows, int heads)
    {
        long cols = w.Length / rows, headDim = rows / heads, half = headDim / 2;
        var result = new float[w.Length];
        for (long h = 0; h < heads; h++)
            for (long i = 0; i < half; i++)
                for (int t = 0; t < 2; t++)
                    Array.Copy(w, (h * headDim + t * half + i) * cols, result, (h * headDim + 2 * i + t) * cols, cols);
        return result;
    }

    public static List<GgufWriter.Entry> Tensors(Context ctx, ModelConfig c, IReadOnlyDictionary<string, (float[] Values, long[] Shape)> weights,
                                                 LlmkDtype matrixDtype, bool permute = true)
    {
        bool gptj = permute && Architecture(c) == "llama";
        var stacked = new Dictionary<string, SortedDictionary<int, (float[] Values, long[] Shape)>>();
        var entries = new List<GgufWriter.Entry>();
        foreach (var (hfName, (values, shape)) in weights.OrderBy(w => w.Key, StringComparer.Ordinal))
        {
            var (name, expert) = WeightSource.GgufName(hfName) ?? throw new ArgumentException($"no GGUF name for {hfName}");
            var v = values;
            if (gptj && hfName.EndsWith("q_proj.weight")) v = PermuteRows(v, shape[0], c.NumAttentionHeads);
            if (gptj && hfName.EndsWith("k_proj.weight")) v = PermuteRows(v, shape[0], c.NumKeyValueHeads);
            if (expert is int e)
            {
                if (!stacked.TryGetValue(name, out var slices)) stacked[name] = slices = new();
                slices[e] = (v, shape);
                continue;
            }
            entries.Add(Entry(ctx, name, v, shape, shape.Length == 1 ? LlmkDtype.F32 : matrixDtype));
        }
        foreach (var (name, slices) in stacked)
        {
            var shape = new long[] { slices.Count }.Concat(slices[0].Shape).ToArray();
            entries.Add(Entry(ctx, name, slices.Values.SelectMany(s => s.Values).ToArray(), shape, matrixDtype));
        }
        return entries;
    }

    /// <summary>A tensor's bytes in <paramref name="dtype"/>, converted by the library (llmk_convert).</summary>
    public static GgufWriter.Entry Entry(Context ctx, string name, float[] values, long[] shape, LlmkDtype dtype)
    {
        using var source = ctx.FromFloats(values, LlmkDtype.F32, shape);
        using var converted = ctx.Allocate(dtype, shape);
        Kernels.Convert(ctx, source, converted);
        return new GgufWriter.Entry(name, dtype, shape, converted.ToArray<byte>());
    }

    /// <summary>The values a dtype holds after a round trip (what a quantized GGUF really stores).</summary>
    public static float[] RoundTrip(Context ctx, float[] values, long[] shape, LlmkDtype dtype)
    {
        if (dtype == LlmkDtype.F32) return values;
        using var source = ctx.FromFloats(values, LlmkDtype.F32, shape);
        using var converted = ctx.Allocate(dtype, shape);
        Kernels.Convert(ctx, source, converted);
        using var back = ctx.Allocate(LlmkDtype.F32, shape);
        Kernels.Convert(ctx, converted, back);
        return back.ToFloatArray();
    }

    public static void Write(string path, Context ctx, ModelConfig c, IReadOnlyDictionary<string, (float[] Values, long[] Shape)> weights,
                             LlmkDtype matrixDtype = LlmkDtype.F32, IReadOnlyList<KeyValuePair<string, object>>? extra = null, bool permute = true)
    {
        // Keys in extra (a tokenizer's) replace the model's own.
        var metadata = Metadata(c).Where(kv => extra?.All(e => e.Key != kv.Key) ?? true).Concat(extra ?? []);
        GgufWriter.Write(path, metadata, Tensors(ctx, c, weights, matrixDtype, permute));
    }
}
