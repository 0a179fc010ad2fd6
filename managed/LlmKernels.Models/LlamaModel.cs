using LlmKernels.Interop;
using LlmKernels.Models.Gguf;
using LlmKernels.Models.Safetensors;

namespace LlmKernels.Models;

/// <summary>
/// Receives the residual stream [tokens, hidden] during <see cref="LlamaModel.Forward(ReadOnlySpan{int}, KvCache, Span{float}, bool, LayerHook?)"/>: index 0 is the
/// embedding output and index l + 1 the output of layer l, as transformers' hidden_states (before the
/// final norm). The tensor is scratch memory: copy what you keep (ToFloatArray).
/// </summary>
public delegate void LayerHook(int index, Tensor hidden);

/// <summary>The keys and values of every layer for one sequence: [1, capacity, kv_heads, head_dim] each.</summary>
public sealed class KvCache : IDisposable
{
    internal readonly Tensor[] Keys, Values;
    internal readonly LlamaModel Owner;

    internal KvCache(LlamaModel owner, Context ctx, ModelConfig c, LlmkDtype dtype, int capacity)
    {
        Owner = owner;
        Capacity = capacity;
        Keys = new Tensor[c.NumHiddenLayers];
        Values = new Tensor[c.NumHiddenLayers];
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            Keys[l] = ctx.Allocate(dtype, 1, capacity, c.NumKeyValueHeads, c.HeadDim);
            Values[l] = ctx.Allocate(dtype, 1, capacity, c.NumKeyValueHeads, c.HeadDim);
        }
    }

    /// <summary>Tokens the cache can hold.</summary>
    public int Capacity { get; }

    /// <summary>Tokens already in the cache (the position of the next token).</summary>
    public int Length { get; internal set; }

    /// <summary>Starts a new sequence; the memory is reused.</summary>
    public void Reset() => Length = 0;

    public void Dispose()
    {
        foreach (var t in Keys.Concat(Values)) t?.Dispose();
    }
}

/// <summary>
/// The Llama-family decoder (llama, mistral, qwen2, mixtral) over LlmKernels: one loop over layers, each
/// step one kernel call, as llama2.c's run.c. Weights stay in their stored dtype (f32, f16, bf16);
/// activations are <see cref="ActivationDtype"/> (f32 on the CPU).
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private sealed class Layer
    {
        public required Tensor InputNorm, PostNorm, Wq, Wk, Wv, Wo;   // norms [hidden]; Wq [heads*hd, hidden]; Wk, Wv [kv*hd, hidden]; Wo [hidden, heads*hd]
        public Tensor? Bq, Bk, Bv, Bo;                                // biases [out] (qwen2: q, k, v)
        public Tensor? Gate, Up, Down, BGate, BUp, BDown;            // dense MLP: gate, up [ffn, hidden]; down [hidden, ffn]
        public Tensor? Router;                                        // mixtral: [experts, hidden]
        public (Tensor W1, Tensor W2, Tensor W3)[]? Experts;         // w1 (gate), w3 (up) [ffn, hidden]; w2 (down) [hidden, ffn]
        public LlmkAttentionParams Attention;                         // causal, with the layer's sliding window
    }

    private readonly WeightSource _source;
    private readonly List<Tensor> _weights = [];
    private readonly Tensor _embed, _finalNorm, _lmHead;             // [vocab, hidden], [hidden], [vocab, hidden]
    private readonly Layer[] _layers;
    private readonly Scratch _scratch;
    private int[] _positions = new int[64];                         // host staging of the positions
    private int[] _expertBounds = [];                               // host copy of the MoE expert offsets
    private bool _disposed;

    public ModelConfig Config { get; }
    public Context Context { get; }
    public LlmkDtype ActivationDtype { get; }

    /// <summary>The attention algorithm of every layer: Auto (the backend's fastest) by default; `llmk verify`
    /// runs the CPU's Naive one as the reference for its Flash one.</summary>
    public LlmkAttentionAlgorithm AttentionAlgorithm { get; set; }

    /// <summary>A path that names a GGUF file (a file ending in .gguf) rather than a Hugging Face folder.</summary>
    public static bool IsGguf(string path) => path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) && !Directory.Exists(path);

    /// <summary>Loads a GGUF file (<see cref="IsGguf"/>), or config.json and the safetensors weights of a Hugging Face
    /// checkpoint directory.</summary>
    public static LlamaModel Load(Context ctx, string path, LlmkDtype? activationDtype = null)
    {
        ModelConfig config;
        WeightSource source;
        if (IsGguf(path))
        {
            var file = GgufFile.Open(path);
            try
            {
                config = ModelConfig.FromGguf(file);
            }
            catch
            {
                file.Dispose();
                throw;
            }
            source = WeightSource.FromGguf(file);
        }
        else
        {
            config = ModelConfig.Load(Path.Combine(path, "config.json"));
            source = WeightSource.FromCheckpoint(SafetensorsCheckpoint.Open(path));
        }
        try
        {
            return new LlamaModel(ctx, config, source, activationDtype);
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <summary>Where the weights come from (a checkpoint folder, a preset), for messages.</summary>
    public string Origin => _source.Origin;

    /// <summary>A model over <paramref name="source"/>, which the model owns from here (disposed with it).</summary>
    public LlamaModel(Context ctx, ModelConfig config, WeightSource source, LlmkDtype? activationDtype = null)
    {
        Context = ctx;
        Config = config;
        _source = source;
        try
        {
            // The rope parameters' ranges and relations (factor > 0, low_freq_factor < high_freq_factor, ...) are
            // checked by the code that uses them, once, here: a bad config.json fails at load, not at the first token.
            try
            {
                config.RopeParams(1).Frequencies(config.HeadDim);
            }
            catch (LlmkException e)
            {
                throw new ModelFormatException($"{source.Origin}: config.json: its rope parameters are unusable: {e.Message}", e);
            }
            var c = config;
            long hidden = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
            long ffn = c.IntermediateSize;
            _embed = Weight("model.embed_tokens.weight", c.VocabSize, hidden);
            _finalNorm = Weight("model.norm.weight", hidden);
            _lmHead = c.TieWordEmbeddings ? _embed : Weight("lm_head.weight", c.VocabSize, hidden);
            ActivationDtype = activationDtype ?? DefaultActivationDtype(ctx, _embed.DType);

            _layers = new Layer[c.NumHiddenLayers];
            for (int l = 0; l < c.NumHiddenLayers; l++)
            {
                string p = $"model.layers.{l}.";
                var layer = new Layer
                {
                    InputNorm = Weight(p + "input_layernorm.weight", hidden),
                    PostNorm = Weight(p + "post_attention_layernorm.weight", hidden),
                    Wq = Weight(p + "self_attn.q_proj.weight", q, hidden),
                    Wk = Weight(p + "self_attn.k_proj.weight", kv, hidden),
                    Wv = Weight(p + "self_attn.v_proj.weight", kv, hidden),
                    Wo = Weight(p + "self_attn.o_proj.weight", hidden, q),
                    Attention = c.AttentionParams(l),
                };
                if (c.QkvBias)
                {
                    layer.Bq = Weight(p + "self_attn.q_proj.bias", q);
                    layer.Bk = Weight(p + "self_attn.k_proj.bias", kv);
                    layer.Bv = Weight(p + "self_attn.v_proj.bias", kv);
                }
                if (c.OutputBias) layer.Bo = Weight(p + "self_attn.o_proj.bias", hidden);
                if (c.IsMoe)
                {
                    layer.Router = Weight(p + "block_sparse_moe.gate.weight", c.NumLocalExperts, hidden);
                    layer.Experts = new (Tensor, Tensor, Tensor)[c.NumLocalExperts];
                    for (int e = 0; e < c.NumLocalExperts; e++)
                    {
                        string x = $"{p}block_sparse_moe.experts.{e}.";
                        layer.Experts[e] = (Weight(x + "w1.weight", ffn, hidden), Weight(x + "w2.weight", hidden, ffn),
                                            Weight(x + "w3.weight", ffn, hidden));
                    }
                }
                else
                {
                    layer.Gate = Weight(p + "mlp.gate_proj.weight", ffn, hidden);
                    layer.Up = Weight(p + "mlp.up_proj.weight", ffn, hidden);
                    layer.Down = Weight(p + "mlp.down_proj.weight", hidden, ffn);
                    if (c.MlpBias)
                    {
                        layer.BGate = Weight(p + "mlp.gate_proj.bias", ffn);
                        layer.BUp = Weight(p + "mlp.up_proj.bias", ffn);
                        layer.BDown = Weight(p + "mlp.down_proj.bias", hidden);
                    }
                }
                _layers[l] = layer;
            }
            _scratch = new Scratch(ctx, ActivationDtype);
        }
        catch
        {
            foreach (var t in _weights) t.Dispose();
            throw;
        }
    }

    /// <summary>f32 on the CPU; on CUDA the weights' half type (f16/bf16), else bf16.</summary>
    public static LlmkDtype DefaultActivationDtype(Context ctx, LlmkDtype weightDtype) =>
        !ctx.IsCuda ? LlmkDtype.F32 : weightDtype is LlmkDtype.F16 or LlmkDtype.Bf16 ? weightDtype : LlmkDtype.Bf16;

    private Tensor Weight(string name, params long[] shape)
    {
        var t = _source.Get(Context, name)
            ?? throw new ModelFormatException($"{_source.Origin}: missing tensor '{name}' (the configuration implies [{string.Join(", ", shape)}])");
        _weights.Add(t);
        if (!t.Shape.SequenceEqual(shape))
            throw new ModelFormatException(
                $"{_source.Origin}: tensor '{name}' has shape [{string.Join(", ", t.Shape)}], the configuration implies [{string.Join(", ", shape)}]");
        return t;
    }

    /// <summary>A KV cache for up to <paramref name="capacity"/> tokens of one sequence.</summary>
    public KvCache CreateCache(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        return new KvCache(this, Context, Config, ActivationDtype, capacity);
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions cache.Length.. (prefill with many, decode with one),
    /// appending their keys and values to <paramref name="cache"/>. Returns the logits of the last token
    /// [vocab], or of every token [tokens * vocab] with <paramref name="allLogits"/>.
    /// </summary>
    public float[] Forward(ReadOnlySpan<int> tokens, KvCache cache, bool allLogits = false, LayerHook? hook = null)
    {
        var logits = new float[(allLogits ? tokens.Length : 1) * (long)Config.VocabSize];
        Forward(tokens, cache, logits, allLogits, hook);
        return logits;
    }

    /// <summary>
    /// <see cref="Forward(ReadOnlySpan{int}, KvCache, bool, LayerHook?)"/> into the caller's
    /// <paramref name="logits"/> ([vocab], or [tokens * vocab] with <paramref name="allLogits"/>). A decode step (the
    /// token count of the step before) allocates nothing, native or managed: activations and inputs live in buffers
    /// kept between calls, with their views, and the logits are copied once into <paramref name="logits"/> (a MoE
    /// layer makes a managed view per expert it runs).
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, KvCache cache, Span<float> logits, bool allLogits = false, LayerHook? hook = null)
    {
        ArgumentNullException.ThrowIfNull(cache);
        // CPU weights are views of the memory-mapped files, which Dispose unmaps.
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (cache.Owner != this) throw new ArgumentException("the KV cache belongs to another model", nameof(cache));
        var c = Config;
        var ctx = Context;
        int n = tokens.Length, start = cache.Length;
        if (n == 0) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (start + n > cache.Capacity)
            throw new InvalidOperationException($"the KV cache holds {cache.Capacity} tokens; {start} are in it and {n} more do not fit");
        int rows = allLogits ? n : 1;
        if (logits.Length != (long)rows * c.VocabSize)
            throw new ArgumentException($"logits has {logits.Length} elements; {rows} x vocab {c.VocabSize} expected", nameof(logits));
        float eps = (float)c.RmsNormEps;
        int heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads, hd = c.HeadDim;
        var s = _scratch;

        if (_positions.Length < n) _positions = new int[Math.Max(n, 2 * _positions.Length)];
        var positions = _positions.AsSpan(0, n);
        for (int i = 0; i < n; i++) positions[i] = start + i;
        var ids = s.Vector("ids", n, LlmkDtype.I32);
        var pos = s.Vector("positions", n, LlmkDtype.I32);
        var seqlens = s.Vector("seqlens", 1, LlmkDtype.I32);
        ids.CopyFrom(tokens);
        pos.CopyFrom<int>(positions);
        seqlens.CopyFrom(new ReadOnlySpan<int>(in start)); // the cache length before this call
        var rope = c.RopeParams(start + n);

        var x = s.Get("x", n, c.HiddenSize);              // residual stream
        var h = s.Get("h", n, c.HiddenSize);              // normalized input of attention / MLP
        var q = s.Get("q", n, heads * hd);
        var k = s.Get("k", n, kvHeads * hd);
        var v = s.Get("v", n, kvHeads * hd);
        var attn = s.Get("attn", n, heads * hd);
        var o = s.Get("o", n, c.HiddenSize);
        // The same buffers as [tokens, heads, head_dim] for RoPE and [1, tokens, heads, head_dim] for attention.
        var qHeads = s.Shaped("q", n, heads, hd);
        var kHeads = s.Shaped("k", n, kvHeads, hd);
        var qBatch = s.Shaped("q", 1, n, heads, hd);
        var kBatch = s.Shaped("k", 1, n, kvHeads, hd);
        var vBatch = s.Shaped("v", 1, n, kvHeads, hd);
        var attnBatch = s.Shaped("attn", 1, n, heads, hd);

        // x = embedding rows of the tokens
        Kernels.Embedding(ctx, _embed, ids, x);
        hook?.Invoke(0, x);
        for (int l = 0; l < _layers.Length; l++)
        {
            var L = _layers[l];
            // h = rmsnorm(x) * input_layernorm
            Kernels.RmsNorm(ctx, x, L.InputNorm, eps, h);
            // q, k, v = h . Wq^T, h . Wk^T, h . Wv^T (+ bias)
            Kernels.Linear(ctx, h, L.Wq, L.Bq, q);
            Kernels.Linear(ctx, h, L.Wk, L.Bk, k);
            Kernels.Linear(ctx, h, L.Wv, L.Bv, v);
            // rotate q and k by their positions
            Kernels.Rope(ctx, pos, rope, qHeads, kHeads);
            // append k, v to the layer's cache; attn = causal (windowed) attention of q over the cache
            Kernels.AttentionKvcache(ctx, qBatch, cache.Keys[l], cache.Values[l], kBatch, vBatch, seqlens, null,
                                     L.Attention with { algorithm = AttentionAlgorithm }, attnBatch);
            // o = attn . Wo^T
            Kernels.Linear(ctx, attn, L.Wo, L.Bo, o);
            // x += o; h = rmsnorm(x) * post_attention_layernorm
            Kernels.AddRmsNorm(ctx, o, x, L.PostNorm, eps, h);
            // o = mlp(h): down(silu(gate(h)) * up(h)), or the top-k mixture of such experts
            if (L.Experts is null) Mlp(L.Gate!, L.Up!, L.Down!, L.BGate, L.BUp, L.BDown, h, o, Dense);
            else Moe(L, h, o, n);
            // x += o
            Kernels.Add(ctx, x, o, x);
            hook?.Invoke(l + 1, x);
        }
        cache.Length = start + n;

        // logits = rmsnorm(x) * norm . lm_head^T, for the last token or all of them
        var last = rows == n ? x : x.Slice(0, n - rows, rows);
        var normed = rows == n ? h : h.Slice(0, 0, rows);
        Kernels.RmsNorm(ctx, last, _finalNorm, eps, normed);
        var output = s.Get("logits", rows, c.VocabSize);
        Kernels.Linear(ctx, normed, _lmHead, null, output);
        if (output.DType != LlmkDtype.F32)
        {
            // half-precision activations (CUDA): widened on the device, into a kept buffer
            var wide = s.Get("logits.f32", rows, c.VocabSize, LlmkDtype.F32);
            Kernels.Convert(ctx, output, wide);
            output = wide;
        }
        output.CopyTo(logits);
    }

    /// <summary>The scratch buffers' names of a SwiGLU block (constants, so a decode step builds no strings).</summary>
    private sealed record MlpScratch(string Gate, string Up);
    private static readonly MlpScratch Dense = new("mlp.gate", "mlp.up"), Expert = new("expert.gate", "expert.up");

    /// <summary>output = (act(input . gate^T) * (input . up^T)) . down^T, SwiGLU.</summary>
    private void Mlp(Tensor gate, Tensor up, Tensor down, Tensor? bGate, Tensor? bUp, Tensor? bDown,
                     Tensor input, Tensor output, MlpScratch scratch)
    {
        long rows = input.Dim(0);
        var g = _scratch.Get(scratch.Gate, rows, Config.IntermediateSize);
        var u = _scratch.Get(scratch.Up, rows, Config.IntermediateSize);
        Kernels.Linear(Context, input, gate, bGate, g);
        Kernels.Linear(Context, input, up, bUp, u);
        Kernels.GatedActivationSplit(Context, LlmkActivation.Silu, g, u, g);
        Kernels.Linear(Context, g, down, bDown, output);
    }

    /// <summary>Mixtral's sparse MoE: route each token to its top-k experts, run each expert on its rows, combine.</summary>
    private void Moe(Layer L, Tensor h, Tensor output, int n)
    {
        var c = Config;
        var ctx = Context;
        int experts = c.NumLocalExperts, topK = c.NumExpertsPerTok;
        var s = _scratch;
        // router logits [n, experts]; the top-k weights and ids [n, top_k]
        var routerLogits = s.Get("moe.logits", n, experts);
        Kernels.Linear(ctx, h, L.Router!, null, routerLogits);
        var weights = s.Get("moe.weights", n, topK, LlmkDtype.F32);
        var ids = s.Get("moe.ids", n, topK, LlmkDtype.I32);
        Kernels.MoeRoute(ctx, routerLogits, null, c.MoeRouterParams, weights, ids);
        // gather token rows into expert order
        var permuted = s.Get("moe.permuted", n * topK, c.HiddenSize);
        var offsets = s.Vector("moe.offsets", experts + 1, LlmkDtype.I32);
        var sourceRows = s.Vector("moe.source", n * topK, LlmkDtype.I32);
        var permutedRows = s.Get("moe.rows", n, topK, LlmkDtype.I32);
        Kernels.MoePermute(ctx, h, ids, experts, permuted, offsets, sourceRows, permutedRows);
        // each expert's SwiGLU on its contiguous rows
        var expertOut = s.Get("moe.out", n * topK, c.HiddenSize);
        if (_expertBounds.Length != experts + 1) _expertBounds = new int[experts + 1];
        var bounds = _expertBounds;
        offsets.CopyTo<int>(bounds);
        for (int e = 0; e < experts; e++)
        {
            int count = bounds[e + 1] - bounds[e];
            if (count == 0) continue;
            var (w1, w2, w3) = L.Experts![e];
            Mlp(w1, w3, w2, null, null, null, permuted.Slice(0, bounds[e], count), expertOut.Slice(0, bounds[e], count), Expert);
        }
        // output[t] = sum over slots of weight * expert row
        Kernels.MoeUnpermute(ctx, expertOut, weights, permutedRows, output);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _scratch?.Dispose();
        foreach (var t in _weights) t.Dispose();
        _source.Dispose();
    }

    /// <summary>
    /// Activation memory kept between calls, so that a decode step allocates nothing: one buffer per name, grown to
    /// the largest call so far, and the views handed out, kept per name and shape (a decode step asks for the shapes
    /// of the step before and gets the same views).
    /// </summary>
    private sealed class Scratch(Context ctx, LlmkDtype dtype) : IDisposable
    {
        private const int MaxViews = 256; // prefills of ever new lengths would otherwise keep views without end
        private readonly Dictionary<string, Tensor> _buffers = new();
        private readonly Dictionary<(string Name, long D0, long D1, long D2, long D3), Tensor> _views = new();

        /// <summary>A [rows, width] view of buffer <paramref name="name"/>, in the activations' dtype unless
        /// <paramref name="type"/> says otherwise.</summary>
        public Tensor Get(string name, long rows, long width, LlmkDtype? type = null) => View(name, type ?? dtype, rows, width, -1, -1);

        /// <summary>A [length] view of buffer <paramref name="name"/>.</summary>
        public Tensor Vector(string name, long length, LlmkDtype type) => View(name, type, length, -1, -1, -1);

        /// <summary>Buffer <paramref name="name"/> (activations' dtype) as [d0, d1, d2] or [d0, d1, d2, d3]: another
        /// shape of the memory <see cref="Get"/> gives, e.g. q as [tokens, heads, head_dim].</summary>
        public Tensor Shaped(string name, long d0, long d1, long d2, long d3 = -1) => View(name, dtype, d0, d1, d2, d3);

        private Tensor View(string name, LlmkDtype type, long d0, long d1, long d2, long d3)
        {
            var key = (name, d0, d1, d2, d3);
            if (_views.TryGetValue(key, out var view)) return view;
            long[] shape = d1 < 0 ? [d0] : d2 < 0 ? [d0, d1] : d3 < 0 ? [d0, d1, d2] : [d0, d1, d2, d3];
            long count = shape.Aggregate(1L, (a, d) => a * d);
            if (!_buffers.TryGetValue(name, out var buffer) || buffer.ElementCount < count || buffer.DType != type)
            {
                long capacity = Math.Max(count, buffer?.DType == type ? buffer.ElementCount : 0);
                if (buffer is not null) Replace(name, buffer);
                _buffers[name] = buffer = ctx.Allocate(type, capacity);
            }
            if (_views.Count >= MaxViews) _views.Clear();
            return _views[key] = buffer.Slice(0, 0, count).Reshape(shape);
        }

        /// <summary>Drops a buffer about to be replaced, and its views. (Apart from View: a lambda there capturing the
        /// name would cost a closure on every call.)</summary>
        private void Replace(string name, Tensor buffer)
        {
            foreach (var stale in _views.Keys.Where(k => k.Name == name).ToList()) _views.Remove(stale);
            buffer.Dispose();
        }

        public void Dispose()
        {
            foreach (var b in _buffers.Values) b.Dispose();
            _buffers.Clear();
            _views.Clear();
        }
    }
}
