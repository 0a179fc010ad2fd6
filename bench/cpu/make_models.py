#!/usr/bin/python3
"""Random Llama weights written twice: as a Hugging Face folder (config.json + model.safetensors) for llmk and as
a GGUF v3 file for llama.cpp. Both hold the same values (the GGUF's q/k rows are permuted the way llama.cpp's
converter permutes them, so both engines compute the same model); only their speed is of interest.

    /usr/bin/python3 bench/cpu/make_models.py --shape stories110M --dtype bf16 --out-dir /tmp/llmk-bench-models

writes <out-dir>/<shape>-<dtype>/{config.json,model.safetensors} and <out-dir>/<shape>-<dtype>.gguf, and skips
a model whose two outputs already exist (--force rewrites). Each tensor is drawn from its own seeded generator
and written as soon as it is drawn, so memory stays at about one tensor (TinyLlama's embedding, 260 MB in f32).
Needs numpy only (Debian: apt-get install python3-numpy).
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np

SHAPES = {
    "stories110M": dict(hidden=768, layers=12, heads=12, kv_heads=12, ffn=2048, vocab=32000, max_pos=1024),
    "tinyllama": dict(hidden=2048, layers=22, heads=32, kv_heads=4, ffn=5632, vocab=32000, max_pos=2048),
}
RMS_EPS = 1e-5
ROPE_THETA = 10000.0
DTYPES = ("f32", "f16", "bf16")

# safetensors dtype names, GGUF tensor types (ggml_type: F32 = 0, F16 = 1, BF16 = 30) and general.file_type
# (llama_ftype: ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_BF16 = 32).
ST_DTYPE = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
GGML_TYPE = {"f32": 0, "f16": 1, "bf16": 30}
LLAMA_FTYPE = {"f32": 0, "f16": 1, "bf16": 32}
TORCH_DTYPE = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
ELEMENT_SIZE = {"f32": 4, "f16": 2, "bf16": 2}

GGUF_ALIGNMENT = 32
# GGUF metadata value types.
GU32, GI32, GF32, GBOOL, GSTR, GARR = 4, 5, 6, 7, 8, 9


def tensor_plan(s):
    """(hf name, gguf name, numpy shape, kind) in write order; kind: 'norm', 'q', 'k' or 'w'."""
    h, f, v = s["hidden"], s["ffn"], s["vocab"]
    hd = h // s["heads"]
    kv = s["kv_heads"] * hd
    plan = [("model.embed_tokens.weight", "token_embd.weight", (v, h), "w")]
    for n in range(s["layers"]):
        p, g = f"model.layers.{n}.", f"blk.{n}."
        plan += [
            (p + "input_layernorm.weight", g + "attn_norm.weight", (h,), "norm"),
            (p + "self_attn.q_proj.weight", g + "attn_q.weight", (h, h), "q"),
            (p + "self_attn.k_proj.weight", g + "attn_k.weight", (kv, h), "k"),
            (p + "self_attn.v_proj.weight", g + "attn_v.weight", (kv, h), "w"),
            (p + "self_attn.o_proj.weight", g + "attn_output.weight", (h, h), "w"),
            (p + "post_attention_layernorm.weight", g + "ffn_norm.weight", (h,), "norm"),
            (p + "mlp.gate_proj.weight", g + "ffn_gate.weight", (f, h), "w"),
            (p + "mlp.up_proj.weight", g + "ffn_up.weight", (f, h), "w"),
            (p + "mlp.down_proj.weight", g + "ffn_down.weight", (h, f), "w"),
        ]
    plan += [("model.norm.weight", "output_norm.weight", (h,), "norm"),
             ("lm_head.weight", "output.weight", (v, h), "w")]
    return plan


def draw(seed, index, shape, kind):
    """The f32 values of one tensor: N(0, 0.02) for matrices, 1 + N(0, 0.05) for norms."""
    rng = np.random.default_rng([seed, index])
    x = rng.standard_normal(shape, dtype=np.float32)
    if kind == "norm":
        return x * np.float32(0.05) + np.float32(1.0)
    return x * np.float32(0.02)


def to_bf16_bits(x):
    """f32 -> bf16 bit patterns (uint16), rounding to nearest even (no NaNs occur here)."""
    u = x.view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)


def encode(x, dtype):
    """The stored array of f32 values x in dtype (bf16 as uint16 bit patterns)."""
    if dtype == "f32":
        return np.ascontiguousarray(x, dtype=np.float32)
    if dtype == "f16":
        return x.astype(np.float16)
    return to_bf16_bits(np.ascontiguousarray(x, dtype=np.float32))


def decode_f32(stored, dtype):
    """The f32 values that `stored` (from encode) holds: the GGUF keeps norms in f32, with the rounded values."""
    if dtype == "bf16":
        return bf16_bits_to_f32(stored)
    return stored.astype(np.float32)


def permute_rows(w, n_head):
    """llama.cpp's HF->GGUF permutation of q/k rows (convert_hf_to_gguf.py, LlamaModel.permute): per head, HF's
    half-split rope pairs (i, i + d/2) become ggml's adjacent pairs (2i, 2i + 1)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ---- GGUF ----

def g_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def g_kv(key, vtype, value):
    out = g_str(key) + struct.pack("<I", vtype)
    if vtype == GU32:
        return out + struct.pack("<I", value)
    if vtype == GI32:
        return out + struct.pack("<i", value)
    if vtype == GF32:
        return out + struct.pack("<f", value)
    if vtype == GBOOL:
        return out + struct.pack("<?", value)
    if vtype == GSTR:
        return out + g_str(value)
    raise ValueError(vtype)


def g_arr(key, etype, values):
    out = bytearray(g_str(key) + struct.pack("<IIQ", GARR, etype, len(values)))
    if etype == GSTR:
        for v in values:
            out += g_str(v)
    elif etype == GF32:
        out += np.asarray(values, dtype="<f4").tobytes()
    elif etype == GI32:
        out += np.asarray(values, dtype="<i4").tobytes()
    else:
        raise ValueError(etype)
    return bytes(out)


def synthetic_vocab(n):
    """A SentencePiece-style vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then unique pieces."""
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]  # UNKNOWN, CONTROL, CONTROL
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(6)  # BYTE
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(tokens) < n:
        # base-26 spelling of i, alternately with and without the word-start mark.
        k, word = i // 2, ""
        while True:
            word = letters[k % 26] + word
            k = k // 26 - 1
            if k < 0:
                break
        tokens.append(("\u2581" if i % 2 == 0 else "") + word)
        scores.append(-float(len(tokens)))
        types.append(1)  # NORMAL
        i += 1
    assert len(set(tokens)) == n
    return tokens, scores, types


def gguf_metadata(shape_name, s, dtype):
    hd = s["hidden"] // s["heads"]
    tokens, scores, types = synthetic_vocab(s["vocab"])
    kvs = [
        g_kv("general.architecture", GSTR, "llama"),
        g_kv("general.name", GSTR, f"llmk-bench {shape_name} {dtype} (random weights)"),
        g_kv("general.file_type", GU32, LLAMA_FTYPE[dtype]),
        g_kv("general.alignment", GU32, GGUF_ALIGNMENT),
        g_kv("llama.context_length", GU32, s["max_pos"]),
        g_kv("llama.embedding_length", GU32, s["hidden"]),
        g_kv("llama.block_count", GU32, s["layers"]),
        g_kv("llama.feed_forward_length", GU32, s["ffn"]),
        g_kv("llama.attention.head_count", GU32, s["heads"]),
        g_kv("llama.attention.head_count_kv", GU32, s["kv_heads"]),
        g_kv("llama.rope.dimension_count", GU32, hd),
        g_kv("llama.attention.layer_norm_rms_epsilon", GF32, RMS_EPS),
        g_kv("llama.rope.freq_base", GF32, ROPE_THETA),
        g_kv("llama.vocab_size", GU32, s["vocab"]),
        g_kv("tokenizer.ggml.model", GSTR, "llama"),
        g_arr("tokenizer.ggml.tokens", GSTR, tokens),
        g_arr("tokenizer.ggml.scores", GF32, scores),
        g_arr("tokenizer.ggml.token_type", GI32, types),
        g_kv("tokenizer.ggml.bos_token_id", GU32, 1),
        g_kv("tokenizer.ggml.eos_token_id", GU32, 2),
        g_kv("tokenizer.ggml.unknown_token_id", GU32, 0),
        g_kv("tokenizer.ggml.add_bos_token", GBOOL, True),
        g_kv("tokenizer.ggml.add_eos_token", GBOOL, False),
    ]
    return kvs


def pad_to(n, a):
    return (n + a - 1) // a * a


# ---- Hugging Face ----

def hf_config(s, dtype):
    hd = s["hidden"] // s["heads"]
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": s["hidden"],
        "intermediate_size": s["ffn"],
        "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"],
        "num_key_value_heads": s["kv_heads"],
        "head_dim": hd,
        "hidden_act": "silu",
        "max_position_embeddings": s["max_pos"],
        "initializer_range": 0.02,
        "rms_norm_eps": RMS_EPS,
        "rope_theta": ROPE_THETA,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "use_cache": True,
        "vocab_size": s["vocab"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": TORCH_DTYPE[dtype],
        "transformers_version": "4.48.0",
    }


def paths(out_dir, shape_name, dtype):
    name = f"{shape_name}-{dtype}"
    return os.path.join(out_dir, name), os.path.join(out_dir, name + ".gguf")


def make(shape_name, dtype, seed, out_dir, force=False, quiet=False):
    s = SHAPES[shape_name]
    hf_dir, gguf_path = paths(out_dir, shape_name, dtype)
    st_path = os.path.join(hf_dir, "model.safetensors")
    cfg_path = os.path.join(hf_dir, "config.json")
    if not force and os.path.exists(st_path) and os.path.exists(cfg_path) and os.path.exists(gguf_path):
        if not quiet:
            print(f"make_models: {shape_name} {dtype}: cached in {out_dir}", file=sys.stderr)
        return hf_dir, gguf_path
    os.makedirs(hf_dir, exist_ok=True)
    clock = time.time()
    plan = tensor_plan(s)
    es = ELEMENT_SIZE[dtype]

    # safetensors header: every tensor in dtype, offsets in write order.
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for hf_name, _, shp, _ in plan:
        n = int(np.prod(shp)) * es
        header[hf_name] = {"dtype": ST_DTYPE[dtype], "shape": list(shp), "data_offsets": [off, off + n]}
        off += n
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (pad_to(len(hjson), 8) - len(hjson))

    # GGUF header, metadata and tensor infos; norms are F32 (as llama.cpp's converter keeps 1-d tensors).
    kvs = gguf_metadata(shape_name, s, dtype)
    infos, goff, gsizes = bytearray(), 0, []
    for _, g_name, shp, kind in plan:
        gdt = "f32" if kind == "norm" else dtype
        n = int(np.prod(shp)) * ELEMENT_SIZE[gdt]
        infos += g_str(g_name) + struct.pack("<I", len(shp))
        for d in reversed(shp):  # ggml's ne0 is the innermost (last numpy) dimension
            infos += struct.pack("<Q", d)
        infos += struct.pack("<IQ", GGML_TYPE[gdt], goff)
        gsizes.append(n)
        goff += pad_to(n, GGUF_ALIGNMENT)
    ghead = struct.pack("<4sIQQ", b"GGUF", 3, len(plan), len(kvs)) + b"".join(kvs) + bytes(infos)
    ghead += b"\0" * (pad_to(len(ghead), GGUF_ALIGNMENT) - len(ghead))

    st_tmp, gguf_tmp, cfg_tmp = st_path + ".part", gguf_path + ".part", cfg_path + ".part"
    with open(st_tmp, "wb") as fs, open(gguf_tmp, "wb") as fg:
        fs.write(struct.pack("<Q", len(hjson)) + hjson)
        fg.write(ghead)
        for i, (hf_name, g_name, shp, kind) in enumerate(plan):
            stored = encode(draw(seed, i, shp, kind), dtype)
            fs.write(memoryview(stored).cast("B"))
            if kind == "norm":
                g = decode_f32(stored, dtype) if dtype != "f32" else stored
            elif kind == "q":
                g = permute_rows(stored, s["heads"])
            elif kind == "k":
                g = permute_rows(stored, s["kv_heads"])
            else:
                g = stored
            g = np.ascontiguousarray(g)
            assert g.nbytes == gsizes[i], (g_name, g.nbytes, gsizes[i])
            fg.write(memoryview(g).cast("B"))
            fg.write(b"\0" * (pad_to(g.nbytes, GGUF_ALIGNMENT) - g.nbytes))
            del stored, g
    with open(cfg_tmp, "w") as f:
        json.dump(hf_config(s, dtype), f, indent=2)
        f.write("\n")
    os.replace(st_tmp, st_path)
    os.replace(gguf_tmp, gguf_path)
    os.replace(cfg_tmp, cfg_path)  # last: config.json + both files present means complete
    if not quiet:
        print(f"make_models: {shape_name} {dtype}: wrote {hf_dir} and {gguf_path} "
              f"({(off + goff) / 1e9:.2f} GB) in {time.time() - clock:.1f} s", file=sys.stderr)
    return hf_dir, gguf_path


def weight_bytes_per_token(shape_name, dtype):
    """Bytes of weights one decode token reads: every layer matrix, the norms and lm_head (one embedding row)."""
    s = SHAPES[shape_name]
    total = 0
    for _, g_name, shp, _ in tensor_plan(s):
        n = s["hidden"] if g_name == "token_embd.weight" else int(np.prod(shp))
        total += n * ELEMENT_SIZE[dtype]
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--dtype", required=True, choices=DTYPES)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out-dir", default="/tmp/llmk-bench-models")
    ap.add_argument("--force", action="store_true", help="rewrite even if both outputs exist")
    a = ap.parse_args()
    hf_dir, gguf_path = make(a.shape, a.dtype, a.seed, a.out_dir, a.force)
    print(hf_dir)
    print(gguf_path)


if __name__ == "__main__":
    main()
