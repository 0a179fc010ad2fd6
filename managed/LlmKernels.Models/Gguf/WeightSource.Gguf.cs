using System.Text.RegularExpressions;
using LlmKernels.Models.Gguf;

namespace LlmKernels.Models;

public abstract partial class WeightSource
{
    /// <summary>
    /// Weights of a GGUF file under the Hugging Face names the runner asks for (token_embd.weight is
    /// model.embed_tokens.weight, blk.N.attn_q.weight model.layers.N.self_attn.q_proj.weight, ...; Mixtral's
    /// 3-D ffn_*_exps give each expert its slice). On the CPU each tensor is a view of the memory-mapped file,
    /// quantized ones included; on CUDA each is uploaded once.
    /// The source owns <paramref name="file"/>.
    /// </summary>
    public static WeightSource FromGguf(GgufFile file) => new GgufSource(file);

    private sealed partial class GgufSource(GgufFile file) : WeightSource
    {
        public override string Origin => file.Path;

        public override Tensor? Get(Context ctx, string name)
        {
            if (GgufName(name) is not var (ggufName, expert)) return null;
            if (!file.TryGetTensor(ggufName, out var info))
            {
                // Older Mixtral files store each expert apart: blk.N.ffn_gate.E.weight.
                if (expert is not int e || !file.TryGetTensor(ggufName.Replace("_exps.", $".{e}."), out info)) return null;
                expert = null;
            }
            nint data = file.GetPointer(info);
            if (expert is not int index) return MappedTensor(ctx, data, info.DType, info.Shape, info.ByteLength, file.Memory);
            if (info.Shape.Length != 3 || index >= info.Shape[0])
                throw new ModelFormatException($"{file.Path}: tensor '{info.Name}' has shape [{string.Join(", ", info.Shape)}]; expected [experts > {index}, out, in]");
            long bytes = info.ByteLength / info.Shape[0]; // experts are whole slabs of whole blocks
            return MappedTensor(ctx, data + (nint)(index * bytes), info.DType, info.Shape[1..], bytes, file.Memory);
        }

        public override void Dispose() => file.Dispose();
    }

    [GeneratedRegex(@"^model\.layers\.(\d+)\.(.+)$")]
    private static partial Regex HfLayerName();

    [GeneratedRegex(@"^block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$")]
    private static partial Regex HfExpertName();

    private static readonly Dictionary<string, string> GgufGlobalNames = new()
    {
        ["model.embed_tokens.weight"] = "token_embd.weight",
        ["model.norm.weight"] = "output_norm.weight",
        ["lm_head.weight"] = "output.weight",
    };

    private static readonly Dictionary<string, string> GgufLayerNames = new()
    {
        ["input_layernorm.weight"] = "attn_norm.weight",
        ["post_attention_layernorm.weight"] = "ffn_norm.weight",
        ["self_attn.q_proj.weight"] = "attn_q.weight", ["self_attn.q_proj.bias"] = "attn_q.bias",
        ["self_attn.k_proj.weight"] = "attn_k.weight", ["self_attn.k_proj.bias"] = "attn_k.bias",
        ["self_attn.v_proj.weight"] = "attn_v.weight", ["self_attn.v_proj.bias"] = "attn_v.bias",
        ["self_attn.o_proj.weight"] = "attn_output.weight", ["self_attn.o_proj.bias"] = "attn_output.bias",
        ["mlp.gate_proj.weight"] = "ffn_gate.weight", ["mlp.gate_proj.bias"] = "ffn_gate.bias",
        ["mlp.up_proj.weight"] = "ffn_up.weight", ["mlp.up_proj.bias"] = "ffn_up.bias",
        ["mlp.down_proj.weight"] = "ffn_down.weight", ["mlp.down_proj.bias"] = "ffn_down.bias",
        ["block_sparse_moe.gate.weight"] = "ffn_gate_inp.weight",
    };

    /// <summary>Mixtral's w1, w2, w3 (gate, down, up) in llama.cpp's 3-D expert tensors.</summary>
    private static readonly Dictionary<string, string> GgufExpertNames = new()
    {
        ["w1"] = "ffn_gate_exps.weight", ["w2"] = "ffn_down_exps.weight", ["w3"] = "ffn_up_exps.weight",
    };

    /// <summary>The GGUF tensor that holds a Hugging Face tensor, and the expert index when it is a slice of one.</summary>
    internal static (string Name, int? Expert)? GgufName(string hfName)
    {
        if (GgufGlobalNames.TryGetValue(hfName, out var global)) return (global, null);
        var layer = HfLayerName().Match(hfName);
        if (!layer.Success) return null;
        string block = $"blk.{layer.Groups[1].Value}.", rest = layer.Groups[2].Value;
        if (GgufLayerNames.TryGetValue(rest, out var name)) return (block + name, null);
        var expert = HfExpertName().Match(rest);
        if (!expert.Success || !int.TryParse(expert.Groups[1].Value, out int e)) return null;
        return (block + GgufExpertNames[expert.Groups[2].Value], e);
    }
}
