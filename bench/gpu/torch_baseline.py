#!/usr/bin/env python3
"""PyTorch baseline for bench/gpu/llmk_gpu_bench: the same shapes, timed the same way (CUDA events,
median of --repeats after --warmup), in eager PyTorch: scaled_dot_product_attention, F.linear, and the
eager (unfused) RMSNorm / RoPE / SwiGLU / MoE routing, permute and unpermute that the fused kernels
replace. Byte and FLOP counts match the C++ bench, so the numbers are directly comparable.

    python3 bench/gpu/torch_baseline.py [--quick] [--repeats 20] [--warmup 5] [--json F] [--markdown F]
"""
import argparse
import json

import torch
import torch.nn.functional as F


def median_ms(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def rms_norm(x, w, eps=1e-6):
    # As HF LlamaRMSNorm: f32 statistics, then back to the input dtype.
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def rope_neox(q, k, positions, theta=500000.0):
    # As HF apply_rotary_pos_emb (rotate_half), cos/sin built per call.
    head_dim = q.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=q.device, dtype=torch.float32) / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(q.dtype)[:, None, :], emb.sin().to(q.dtype)[:, None, :]

    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to PyTorch")

    dev = "cuda"
    bf = torch.bfloat16
    big_rows = 4096 if args.quick else 16384
    results = []
    torch.manual_seed(0)

    def record(kernel, shape, ms, bytes_=None, flops=None):
        if flops is not None:
            value, unit = flops / (ms * 1e-3) / 1e12, "TFLOP/s"
        else:
            value, unit = bytes_ / (ms * 1e-3) / 1e9, "GB/s"
        results.append({"kernel": kernel, "shape": shape, "ms": ms, "value": value, "unit": unit})
        print(f"{kernel:<28} {shape:<44} {ms:9.4f} ms {value:9.1f} {unit}")

    def t(fn):
        return median_ms(fn, args.repeats, args.warmup)

    # ceilings, as in the C++ bench
    src = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    ms = t(lambda: dst.copy_(src))
    copy_gbs = 2.0 * (1 << 30) / (ms * 1e-3) / 1e9
    del src, dst
    n = 4096 if args.quick else 8192
    a = torch.randn(n, n, device=dev, dtype=bf)
    b = torch.randn(n, n, device=dev, dtype=bf)
    ms = t(lambda: a @ b)
    gemm_tflops = 2.0 * n ** 3 / (ms * 1e-3) / 1e12
    print(f"ceiling: device copy {copy_gbs:.1f} GB/s, bf16 GEMM {gemm_tflops:.1f} TFLOP/s")
    del a, b

    r, h = big_rows, 8192
    x, y = torch.randn(r, h, device=dev, dtype=bf), torch.randn(r, h, device=dev, dtype=bf)
    record("add", f"[{r}, {h}] bf16", t(lambda: torch.add(x, y)), bytes_=3.0 * r * h * 2)
    xf = torch.randn(r, h, device=dev)
    record("convert f32->bf16", f"[{r}, {h}] f32", t(lambda: xf.to(bf)), bytes_=6.0 * r * h)
    del xf
    w = torch.randn(h, device=dev, dtype=bf)
    record("rms_norm", f"[{r}, {h}] bf16", t(lambda: rms_norm(x, w)), bytes_=2.0 * r * h * 2)

    def add_rms():
        s = x + y
        return s, rms_norm(s, w)

    record("add_rms_norm", f"[{r}, {h}] bf16", t(add_rms), bytes_=4.0 * r * h * 2)
    del x, y

    vocab, hid = 128000, 4096
    table = torch.randn(vocab, hid, device=dev, dtype=bf)
    ids = torch.randint(0, vocab, (big_rows,), device=dev)
    record("embedding", f"vocab 128000, [{big_rows}, {hid}] bf16", t(lambda: F.embedding(ids, table)),
           bytes_=2.0 * big_rows * hid * 2)
    del table

    wl = torch.randn(14336, 4096, device=dev, dtype=bf) * 0.05
    for rows in (1024 if args.quick else 4096, 16):
        xl = torch.randn(rows, 4096, device=dev, dtype=bf)
        ms = t(lambda: F.linear(xl, wl))
        shape = f"x [{rows}, 4096] bf16 W [14336, 4096]"
        if rows > 16:
            record("linear", shape, ms, flops=2.0 * rows * 4096 * 14336)
        else:
            record("linear (decode)", shape, ms, bytes_=2.0 * 4096 * 14336 + 2.0 * rows * (4096 + 14336))
    del wl

    rr, d = (2048 if args.quick else 8192), 14336
    gu = torch.randn(rr, 2 * d, device=dev, dtype=bf)
    record("gated_activation silu", f"[{rr}, {2 * d}] bf16", t(lambda: F.silu(gu[:, :d]) * gu[:, d:]),
           bytes_=3.0 * rr * d * 2)
    del gu

    tk, hq, hk, hd = big_rows, 32, 8, 128
    q = torch.randn(tk, hq, hd, device=dev, dtype=bf)
    k = torch.randn(tk, hk, hd, device=dev, dtype=bf)
    pos = torch.randint(0, 131072, (tk,), device=dev)
    record("rope neox", f"q [{tk}, {hq}, {hd}] bf16 k 8 heads", t(lambda: rope_neox(q, k, pos)),
           bytes_=2.0 * tk * (hq + hk) * hd * 2)
    del q, k

    s = 2048 if args.quick else 8192
    qa = torch.randn(1, hq, s, hd, device=dev, dtype=bf)
    ka = torch.randn(1, hk, s, hd, device=dev, dtype=bf)
    va = torch.randn(1, hk, s, hd, device=dev, dtype=bf)
    ms = t(lambda: F.scaled_dot_product_attention(qa, ka, va, is_causal=True, enable_gqa=True))
    record("attention causal", f"q [1, {s}, {hq}, {hd}] bf16 kv 8 heads", ms, flops=2.0 * hq * s * s * hd)
    del qa, ka, va
    db, length = 32, 8192
    qd = torch.randn(db, hq, 1, hd, device=dev, dtype=bf)
    kc = torch.randn(db, hk, length, hd, device=dev, dtype=bf)
    vc = torch.randn(db, hk, length, hd, device=dev, dtype=bf)
    ms = t(lambda: F.scaled_dot_product_attention(qd, kc, vc, enable_gqa=True))
    record("attention_kvcache decode", "batch 32, cache 8192, 32/8 heads, 128 bf16", ms,
           bytes_=2.0 * db * length * hk * hd * 2)
    del qd, kc, vc

    tm, experts, top_k, hm = big_rows, 256, 8, 4096
    logits = torch.randn(tm, experts, device=dev) * 4
    bias = torch.randn(experts, device=dev) * 0.1

    def route_sigmoid():
        # DeepSeek-V3's grouped top-k, as in transformers' DeepseekV3TopkRouter.
        scores = logits.sigmoid()
        choice = scores + bias
        group_scores = choice.view(tm, 8, -1).topk(2, dim=-1)[0].sum(-1)
        group_idx = group_scores.topk(4, dim=-1, sorted=False)[1]
        mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        mask = mask.unsqueeze(-1).expand(tm, 8, experts // 8).reshape(tm, -1)
        idx = choice.masked_fill(mask == 0, 0.0).topk(top_k, dim=-1)[1]
        wts = scores.gather(1, idx)
        return wts / (wts.sum(-1, keepdim=True) + 1e-20) * 2.5, idx

    def route_softmax():
        wts, idx = torch.softmax(logits, dim=-1).topk(top_k, dim=-1)
        return wts / wts.sum(-1, keepdim=True), idx

    route_bytes = tm * experts * 4.0 + tm * top_k * 8.0
    record("moe_route sigmoid grouped", f"logits [{tm}, {experts}] f32 top 8", t(route_sigmoid), bytes_=route_bytes)
    record("moe_route softmax", f"logits [{tm}, {experts}] f32 top 8", t(route_softmax), bytes_=route_bytes)

    weights, expert_ids = route_softmax()
    xm = torch.randn(tm, hm, device=dev, dtype=bf)

    def permute():
        flat = expert_ids.reshape(-1)
        order = torch.sort(flat, stable=True)[1]  # (token, slot) order within each expert
        offsets = torch.zeros(experts + 1, dtype=torch.int64, device=dev)
        offsets[1:] = torch.bincount(flat, minlength=experts).cumsum(0)
        return xm[order // top_k], offsets, order

    permuted, _, order = permute()
    record("moe_permute", f"x [{tm}, {hm}] bf16 top 8 of 256", t(permute), bytes_=2.0 * tm * top_k * hm * 2)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=dev)
    rows = inverse.view(tm, top_k)

    def unpermute():
        return (permuted[rows].float() * weights.unsqueeze(-1)).sum(1).to(bf)

    record("moe_unpermute", f"expert_out [{tm * top_k}, {hm}] bf16", t(unpermute),
           bytes_=tm * top_k * hm * 2.0 + tm * hm * 2.0)

    device = torch.cuda.get_device_name()
    report = {"device": device, "torch": torch.__version__, "copy_gbs": copy_gbs, "gemm_bf16_tflops": gemm_tflops,
              "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"# PyTorch {torch.__version__} baseline on {device}\n\n"
                    f"Ceilings: device copy {copy_gbs:.1f} GB/s, bf16 GEMM {gemm_tflops:.1f} TFLOP/s.\n\n"
                    "| kernel | shape | median ms | result |\n|---|---|---:|---:|\n")
            for r_ in results:
                f.write(f"| {r_['kernel']} | {r_['shape']} | {r_['ms']:.4f} | {r_['value']:.1f} {r_['unit']} |\n")


if __name__ == "__main__":
    main()
