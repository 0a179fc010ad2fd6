using LlmKernels.Interop;
using LlmKernels.Models.Safetensors;

namespace LlmKernels.Models;

/// <summary>
/// Where a model's weights come from, by Hugging Face tensor name. <see cref="Get"/> returns a tensor on the
/// model's context, or null when the name is absent (optional tensors such as biases).
/// </summary>
public abstract partial class WeightSource : IDisposable
{
    /// <summary>Named in error messages (a directory, "embedded tiny-llama").</summary>
    public abstract string Origin { get; }

    public abstract Tensor? Get(Context ctx, string name);

    public virtual void Dispose() { }

    /// <summary>
    /// Weights of a safetensors checkpoint. On the CPU each tensor is a view of the memory-mapped file
    /// (no copy; the mapping stays open while the source lives); on CUDA each is uploaded once.
    /// </summary>
    public static WeightSource FromCheckpoint(SafetensorsCheckpoint checkpoint) => new CheckpointSource(checkpoint);

    /// <summary>Weights held in host arrays (the embedded tiny models), converted to <paramref name="dtype"/>.</summary>
    public static WeightSource FromArrays(string origin, IReadOnlyDictionary<string, (float[] Values, long[] Shape)> weights,
                                          LlmkDtype dtype = LlmkDtype.F32) => new ArraySource(origin, weights, dtype);

    /// <summary>
    /// The matrices of <paramref name="inner"/> quantized to <paramref name="dtype"/> as the model takes them (by
    /// llmk_convert on the CPU; uploaded for a CUDA model), as llama.cpp's quantizer does: every projection and the embedding; norms, biases
    /// and the MoE router stay as they are, and so does a matrix whose rows are not whole blocks. With Q4_K
    /// the LM head (or a tied embedding) takes Q6_K, as in llama.cpp's Q4_K_M.
    /// </summary>
    public static WeightSource Quantized(WeightSource inner, LlmkDtype dtype, bool tiedEmbedding) =>
        Tensor.IsQuantized(dtype)
            ? new QuantizingSource(inner, dtype, tiedEmbedding)
            : throw new ArgumentException($"{dtype} is not a quantized dtype", nameof(dtype));

    /// <summary>The LlmkDtype of a safetensors dtype the kernels take as weights.</summary>
    public static LlmkDtype? ToLlmk(SafetensorsDtype dtype) => dtype switch
    {
        SafetensorsDtype.F32 => LlmkDtype.F32,
        SafetensorsDtype.F16 => LlmkDtype.F16,
        SafetensorsDtype.BF16 => LlmkDtype.Bf16,
        _ => null,
    };

    /// <summary>A tensor over <paramref name="bytes"/> bytes of host memory at <paramref name="data"/> (a memory-mapped
    /// file's): a view on the CPU, whose <paramref name="owner"/> (the mapping's handle, or a tensor) is held during every
    /// kernel call, so disposing the file meanwhile unmaps it after the call; a copy uploaded once on CUDA.</summary>
    private protected static Tensor MappedTensor(Context ctx, nint data, LlmkDtype dtype, long[] shape, long bytes, object owner)
    {
        if (!ctx.IsCuda)
            return Tensor.FromPointer(ctx, data, dtype, shape, keepAlive: owner);
        var tensor = ctx.Allocate(dtype, shape);
        try
        {
            tensor.CopyFrom(data, bytes);
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    private sealed class CheckpointSource(SafetensorsCheckpoint checkpoint) : WeightSource
    {
        public override string Origin => checkpoint.Directory;

        public override Tensor? Get(Context ctx, string name)
        {
            if (!checkpoint.Contains(name)) return null;
            var (file, info) = checkpoint.Get(name);
            var dtype = ToLlmk(info.DType)
                ?? throw new ModelFormatException($"{file.Path}: tensor '{name}' is {SafetensorsFile.DtypeName(info.DType)}; weights must be F32, F16 or BF16");
            if (info.Shape.Length is < 1 or > LlmkConstants.MaxRank)
                throw new ModelFormatException($"{file.Path}: tensor '{name}' has rank {info.Shape.Length}; weights have rank 1..{LlmkConstants.MaxRank}");
            return MappedTensor(ctx, file.GetPointer(info), dtype, info.Shape, info.ByteLength, file.Memory);
        }

        public override void Dispose() => checkpoint.Dispose();
    }

    private sealed class QuantizingSource(WeightSource inner, LlmkDtype dtype, bool tiedEmbedding) : WeightSource
    {
        private Context? _host; // quantizing runs on the CPU; for CUDA the result is uploaded

        public override string Origin => inner.Origin;

        public override Tensor? Get(Context ctx, string name)
        {
            if (!ctx.IsCuda)
                return Quantize(ctx, name);
            _host ??= Context.CreateCpu(0);
            using var host = Quantize(_host, name);
            return host is null ? null
                : MappedTensor(ctx, host.DataPointer, host.DType, host.Shape, Tensor.ByteCount(host.DType, host.ElementCount), host);
        }

        private Tensor? Quantize(Context ctx, string name)
        {
            var source = inner.Get(ctx, name);
            if (source is null || source.Rank != 2 || name.EndsWith(".gate.weight", StringComparison.Ordinal))
                return source;
            bool head = name == "lm_head.weight" || (tiedEmbedding && name == "model.embed_tokens.weight");
            var target = dtype == LlmkDtype.Q4_K && head ? LlmkDtype.Q6_K : dtype;
            if (source.Shape[1] % Tensor.BlockOf(target).Elements != 0)
                return source;
            using (source)
            {
                var quantized = ctx.Allocate(target, source.Shape);
                try
                {
                    Kernels.Convert(ctx, source, quantized);
                    return quantized;
                }
                catch
                {
                    quantized.Dispose();
                    throw;
                }
            }
        }

        public override void Dispose()
        {
            inner.Dispose();
            _host?.Dispose();
        }
    }

    private sealed class ArraySource(string origin, IReadOnlyDictionary<string, (float[] Values, long[] Shape)> weights,
                                     LlmkDtype dtype) : WeightSource
    {
        public override string Origin => origin;

        public override Tensor? Get(Context ctx, string name) =>
            weights.TryGetValue(name, out var w) ? ctx.FromFloats(w.Values, dtype, w.Shape) : null;
    }
}
