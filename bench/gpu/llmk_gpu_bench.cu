// llmk_gpu_bench: times every LlmKernels CUDA kernel with CUDA events and, with --check, compares every
// kernel with the CPU reference of the same library on small ragged shapes (a smoke test for a GPU host
// without .NET).
//
//   llmk_gpu_bench [--device N] [--repeats R] [--warmup W] [--json FILE] [--markdown FILE] [--check]
//                  [--check-only] [--quick]
//
// Timing: the median over R runs after W warm-up runs, each run bracketed by events on the context's
// stream; inputs are several times the L2 cache so every run streams from HBM. Each result is reported
// as GB/s (bytes the kernel must move at least) or TFLOP/s, and as a fraction of two ceilings measured
// in the same run: device-to-device copy bandwidth (llmk_copy of 1 GiB) and a cuBLAS bf16 GEMM
// (8192^3). Kernels with data-dependent index checks (embedding, rope, moe_permute, moe_unpermute)
// include their one stream synchronization.
#include "attention.cuh" // the head dims of the tensor-core attention kernels, to check each
#include "common.cuh"    // llmk_cuda_state: the context's stream, for the events

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

// ---- small utilities ------------------------------------------------------------------------------------

#define CHECK_LLMK(call)                                                                                  \
    do {                                                                                                  \
        llmk_status s_ = (call);                                                                          \
        if (s_ != LLMK_STATUS_OK) {                                                                       \
            std::fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call,                 \
                         llmk_status_string(s_), llmk_last_error());                                      \
            std::exit(1);                                                                                 \
        }                                                                                                 \
    } while (0)

#define CHECK_CUDA_RT(call)                                                                               \
    do {                                                                                                  \
        cudaError_t e_ = (call);                                                                          \
        if (e_ != cudaSuccess) {                                                                          \
            std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            std::exit(1);                                                                                 \
        }                                                                                                 \
    } while (0)

llmk_tensor make_tensor(void* data, int32_t dtype, std::vector<int64_t> shape, const llmk_context* ctx) {
    llmk_tensor t;
    std::memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    t.rank = (int32_t)shape.size();
    int64_t stride = 1;
    for (int32_t d = t.rank - 1; d >= 0; d--) {
        t.shape[d] = shape[d];
        t.strides[d] = stride;
        stride *= shape[d];
    }
    int32_t type = 0, index = 0;
    llmk_context_device(ctx, &type, &index);
    t.device_type = type;
    t.device_index = index;
    return t;
}

// Causal attention over the whole kv length, every other parameter at its default.
llmk_attention_params causal_attention() {
    llmk_attention_params p;
    std::memset(&p, 0, sizeof p);
    p.causal = 1;
    p.window_left = -1;
    p.window_right = -1;
    return p;
}

int64_t numel(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t s : shape)
        n *= s;
    return n;
}


bool is_float(int32_t d) { return d == LLMK_DTYPE_F32 || d == LLMK_DTYPE_F16 || d == LLMK_DTYPE_BF16; }

// ---- device fill (timing inputs) ------------------------------------------------------------------------

__device__ __forceinline__ uint32_t hash32(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t)x;
}

template <class T> __global__ void fill_uniform(T* p, int64_t n, uint64_t seed, float scale) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float u = (hash32(seed * 0x9e3779b97f4a7c15ull + (uint64_t)i) >> 8) * (1.0f / 16777216.0f);
        p[i] = llmk_cu::from_float<T>((2.0f * u - 1.0f) * scale);
    }
}

template <class I> __global__ void fill_ids(I* p, int64_t n, uint64_t seed, int64_t range) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        p[i] = (I)(hash32(seed * 0x9e3779b97f4a7c15ull + (uint64_t)i) % (uint64_t)range);
}

// ---- timing ---------------------------------------------------------------------------------------------

// Renormalizing router parameters: softmax without groups, or DeepSeek-style sigmoid with groups and scaling.
llmk_moe_router_params router(int32_t top_k, int32_t scoring, int32_t num_groups = 0, int32_t topk_groups = 0,
                              float routed_scaling_factor = 0) {
    llmk_moe_router_params p;
    std::memset(&p, 0, sizeof p);
    p.top_k = top_k;
    p.scoring = scoring;
    p.renormalize = 1;
    p.num_groups = num_groups;
    p.topk_groups = topk_groups;
    p.routed_scaling_factor = routed_scaling_factor;
    return p;
}

struct Result {
    std::string kernel, shape, metric; // metric: "GB/s" or "TFLOP/s"
    double ms, value, fraction;         // fraction of the matching ceiling
    std::string note;
};

struct Bench {
    llmk_context* ctx = nullptr;
    cudaStream_t stream = nullptr;
    int repeats = 20, warmup = 5;
    bool quick = false;
    double copy_gbs = 0, gemm_tflops = 0;
    std::vector<Result> results;
    std::vector<void*> live;

    void* alloc(uint64_t bytes) {
        void* p = nullptr;
        CHECK_LLMK(llmk_malloc(ctx, bytes, &p));
        live.push_back(p);
        return p;
    }
    void release_all() {
        for (void* p : live)
            llmk_free(ctx, p);
        live.clear();
    }
    llmk_tensor floats(int32_t dtype, std::vector<int64_t> shape, float scale = 1.0f, uint64_t seed = 1) {
        int64_t n = numel(shape);
        void* p = alloc((uint64_t)n * llmk_dtype_size(dtype));
        unsigned grid = (unsigned)std::min<int64_t>((n + 255) / 256, 65536);
        if (grid == 0)
            grid = 1;
        switch (dtype) {
        case LLMK_DTYPE_F32: fill_uniform<float><<<grid, 256, 0, stream>>>((float*)p, n, seed, scale); break;
        case LLMK_DTYPE_F16: fill_uniform<__half><<<grid, 256, 0, stream>>>((__half*)p, n, seed, scale); break;
        default: fill_uniform<__nv_bfloat16><<<grid, 256, 0, stream>>>((__nv_bfloat16*)p, n, seed, scale); break;
        }
        CHECK_CUDA_RT(cudaGetLastError());
        return make_tensor(p, dtype, shape, ctx);
    }
    llmk_tensor ids(int32_t dtype, std::vector<int64_t> shape, int64_t range, uint64_t seed = 2) {
        int64_t n = numel(shape);
        void* p = alloc((uint64_t)n * llmk_dtype_size(dtype));
        unsigned grid = (unsigned)std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 65536));
        if (dtype == LLMK_DTYPE_I32)
            fill_ids<int32_t><<<grid, 256, 0, stream>>>((int32_t*)p, n, seed, range);
        else
            fill_ids<int64_t><<<grid, 256, 0, stream>>>((int64_t*)p, n, seed, range);
        CHECK_CUDA_RT(cudaGetLastError());
        return make_tensor(p, dtype, shape, ctx);
    }
    llmk_tensor empty(int32_t dtype, std::vector<int64_t> shape) {
        return make_tensor(alloc((uint64_t)numel(shape) * llmk_dtype_size(dtype)), dtype, shape, ctx);
    }

    // Median milliseconds of op over the repeats.
    double time(const std::function<llmk_status()>& op) {
        CHECK_LLMK(llmk_context_synchronize(ctx));
        for (int i = 0; i < warmup; i++)
            CHECK_LLMK(op());
        cudaEvent_t start, stop;
        CHECK_CUDA_RT(cudaEventCreate(&start));
        CHECK_CUDA_RT(cudaEventCreate(&stop));
        std::vector<double> ms;
        for (int i = 0; i < repeats; i++) {
            CHECK_CUDA_RT(cudaEventRecord(start, stream));
            CHECK_LLMK(op());
            CHECK_CUDA_RT(cudaEventRecord(stop, stream));
            CHECK_CUDA_RT(cudaEventSynchronize(stop));
            float t = 0;
            CHECK_CUDA_RT(cudaEventElapsedTime(&t, start, stop));
            ms.push_back(t);
        }
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
        CHECK_LLMK(llmk_context_synchronize(ctx));
        std::sort(ms.begin(), ms.end());
        return ms[ms.size() / 2];
    }

    void record_bytes(const std::string& kernel, const std::string& shape, double ms, double bytes,
                      const std::string& note = "") {
        double gbs = bytes / (ms * 1e-3) / 1e9;
        results.push_back({kernel, shape, "GB/s", ms, gbs, copy_gbs > 0 ? gbs / copy_gbs : 0, note});
        std::printf("%-28s %-44s %9.4f ms %9.1f GB/s  (%5.1f%% of copy)\n", kernel.c_str(), shape.c_str(), ms, gbs,
                    100 * results.back().fraction);
    }
    void record_flops(const std::string& kernel, const std::string& shape, double ms, double flops,
                      const std::string& note = "") {
        double tf = flops / (ms * 1e-3) / 1e12;
        results.push_back({kernel, shape, "TFLOP/s", ms, tf, gemm_tflops > 0 ? tf / gemm_tflops : 0, note});
        std::printf("%-28s %-44s %9.4f ms %9.1f TFLOP/s (%5.1f%% of cuBLAS bf16)\n", kernel.c_str(), shape.c_str(),
                    ms, tf, 100 * results.back().fraction);
    }
};

// The two ceilings: device-to-device copy bandwidth and cuBLAS bf16 GEMM throughput.
void measure_ceilings(Bench& b) {
    const uint64_t bytes = 1ull << 30;
    void* src = b.alloc(bytes);
    void* dst = b.alloc(bytes);
    CHECK_CUDA_RT(cudaMemsetAsync(src, 1, bytes, b.stream));
    double ms = b.time([&] { return llmk_copy(b.ctx, dst, src, bytes); });
    b.copy_gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
    std::printf("ceiling: device copy %.1f GB/s (read + write of 1 GiB in %.3f ms)\n", b.copy_gbs, ms);
    b.release_all();

    const int n = b.quick ? 4096 : 8192;
    llmk_tensor A = b.floats(LLMK_DTYPE_BF16, {n, n}, 1.0f, 3), B = b.floats(LLMK_DTYPE_BF16, {n, n}, 1.0f, 4);
    llmk_tensor C = b.empty(LLMK_DTYPE_BF16, {n, n});
    cublasHandle_t handle;
    if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
        std::fprintf(stderr, "cublasCreate failed\n");
        std::exit(1);
    }
    cublasSetStream(handle, b.stream);
    const float alpha = 1, beta = 0;
    ms = b.time([&] {
        cublasStatus_t s = cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, A.data, CUDA_R_16BF, n,
                                        B.data, CUDA_R_16BF, n, &beta, C.data, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT);
        return s == CUBLAS_STATUS_SUCCESS ? LLMK_STATUS_OK : LLMK_STATUS_DEVICE_ERROR;
    });
    b.gemm_tflops = 2.0 * n * (double)n * n / (ms * 1e-3) / 1e12;
    std::printf("ceiling: cuBLAS bf16 GEMM %d^3 %.1f TFLOP/s (%.3f ms)\n", n, b.gemm_tflops, ms);
    cublasDestroy(handle);
    b.release_all();
}

std::string shape_str(std::initializer_list<int64_t> dims, int32_t dtype) {
    std::string s = "[";
    bool first = true;
    for (int64_t d : dims) {
        s += (first ? "" : ", ") + std::to_string(d);
        first = false;
    }
    return s + "] " + llmk_dtype_name(dtype);
}

void run_timings(Bench& b) {
    const int32_t bf = LLMK_DTYPE_BF16;
    const int64_t big_rows = b.quick ? 4096 : 16384;
    llmk_context* ctx = b.ctx;

    { // add: read a, b, write out
        const int64_t r = big_rows, h = 8192;
        llmk_tensor x = b.floats(bf, {r, h}), y = b.floats(bf, {r, h}, 1, 5), o = b.empty(bf, {r, h});
        double ms = b.time([&] { return llmk_add(ctx, &x, &y, &o); });
        b.record_bytes("add", shape_str({r, h}, bf), ms, 3.0 * r * h * 2);
        b.release_all();
    }
    { // convert f32 -> bf16
        const int64_t r = big_rows, h = 8192;
        llmk_tensor x = b.floats(LLMK_DTYPE_F32, {r, h}), o = b.empty(bf, {r, h});
        double ms = b.time([&] { return llmk_convert(ctx, &x, &o); });
        b.record_bytes("convert f32->bf16", shape_str({r, h}, LLMK_DTYPE_F32), ms, (double)r * h * 6);
        b.release_all();
    }
    { // embedding gather
        const int64_t vocab = 128000, h = 4096, t = big_rows;
        llmk_tensor table = b.floats(bf, {vocab, h}), id = b.ids(LLMK_DTYPE_I64, {t}, vocab), o = b.empty(bf, {t, h});
        double ms = b.time([&] { return llmk_embedding(ctx, &table, &id, &o); });
        b.record_bytes("embedding", "vocab 128000, " + shape_str({t, h}, bf), ms, 2.0 * t * h * 2,
                       "includes the id check's sync");
        b.release_all();
    }
    { // linear: prefill (compute bound) and decode (weight streaming)
        const int64_t in = 4096, out = 14336;
        llmk_tensor w = b.floats(bf, {out, in}, 0.05f);
        for (int64_t rows : {(int64_t)(b.quick ? 1024 : 4096), (int64_t)16}) {
            llmk_tensor x = b.floats(bf, {rows, in}), y = b.empty(bf, {rows, out});
            double ms = b.time([&] { return llmk_linear(ctx, &x, &w, nullptr, &y); });
            std::string shape = "x " + shape_str({rows, in}, bf) + " W [14336, 4096]";
            if (rows > 16)
                b.record_flops("linear", shape, ms, 2.0 * rows * in * out);
            else
                b.record_bytes("linear (decode)", shape, ms, 2.0 * in * out + 2.0 * rows * (in + out));
        }
        b.release_all();
    }
    { // rms_norm and add_rms_norm
        const int64_t r = big_rows, h = 8192;
        llmk_tensor x = b.floats(bf, {r, h}), res = b.floats(bf, {r, h}, 1, 6), w = b.floats(bf, {h}),
                    o = b.empty(bf, {r, h});
        double ms = b.time([&] { return llmk_rms_norm(ctx, &x, &w, 1e-6f, 0, &o); });
        b.record_bytes("rms_norm", shape_str({r, h}, bf), ms, 2.0 * r * h * 2);
        ms = b.time([&] { return llmk_add_rms_norm(ctx, &x, &res, &w, 1e-6f, 0, &o); });
        b.record_bytes("add_rms_norm", shape_str({r, h}, bf), ms, 4.0 * r * h * 2);
        b.release_all();
    }
    { // gated activation (fused [rows, 2d])
        const int64_t r = b.quick ? 2048 : 8192, d = 14336;
        llmk_tensor gu = b.floats(bf, {r, 2 * d}), o = b.empty(bf, {r, d});
        double ms = b.time([&] { return llmk_gated_activation(ctx, LLMK_ACTIVATION_SILU, &gu, &o); });
        b.record_bytes("gated_activation silu", shape_str({r, 2 * d}, bf), ms, 3.0 * r * d * 2);
        b.release_all();
    }
    { // rope, q and k in place
        const int64_t t = big_rows, hq = 32, hk = 8, hd = 128;
        llmk_tensor q = b.floats(bf, {t, hq, hd}), k = b.floats(bf, {t, hk, hd}),
                    pos = b.ids(LLMK_DTYPE_I64, {t}, 131072);
        llmk_rope_params p;
        std::memset(&p, 0, sizeof p);
        p.style = LLMK_ROPE_STYLE_NEOX;
        p.theta = 500000.0f;
        double ms = b.time([&] { return llmk_rope(ctx, &pos, &p, &q, &k); });
        b.record_bytes("rope neox", "q " + shape_str({t, hq, hd}, bf) + " k 8 heads", ms, 2.0 * t * (hq + hk) * hd * 2,
                       "includes the position check's sync");
        b.release_all();
    }
    { // attention prefill (causal) and decode from a cache
        const int64_t batch = 1, s = b.quick ? 2048 : 8192, hq = 32, hk = 8, hd = 128;
        llmk_tensor q = b.floats(bf, {batch, s, hq, hd}), k = b.floats(bf, {batch, s, hk, hd}, 1, 7),
                    v = b.floats(bf, {batch, s, hk, hd}, 1, 8), o = b.empty(bf, {batch, s, hq, hd});
        llmk_attention_params ap = causal_attention();
        llmk_status probe = llmk_attention(ctx, &q, &k, &v, nullptr, &ap, &o, nullptr);
        if (probe == LLMK_STATUS_OK) {
            double ms = b.time([&] { return llmk_attention(ctx, &q, &k, &v, nullptr, &ap, &o, nullptr); });
            // causal: half of the 4 * s^2 * hd * heads multiply-adds
            b.record_flops("attention causal", "q " + shape_str({batch, s, hq, hd}, bf) + " kv 8 heads", ms,
                           2.0 * batch * hq * (double)s * s * hd);
        } else {
            std::printf("attention: skipped (%s: %s)\n", llmk_status_string(probe), llmk_last_error());
        }
        b.release_all();

        const int64_t db = 32, len = 8192;
        llmk_tensor dq = b.floats(bf, {db, 1, hq, hd}), kc = b.floats(bf, {db, len, hk, hd}, 1, 9),
                    vc = b.floats(bf, {db, len, hk, hd}, 1, 10), dout = b.empty(bf, {db, 1, hq, hd});
        llmk_tensor seqlens = b.empty(LLMK_DTYPE_I32, {db});
        std::vector<int32_t> lens((size_t)db, (int32_t)len);
        CHECK_LLMK(llmk_upload(ctx, seqlens.data, lens.data(), lens.size() * 4));
        probe = llmk_attention_kvcache(ctx, &dq, &kc, &vc, nullptr, nullptr, &seqlens, nullptr, &ap, &dout, nullptr);
        if (probe == LLMK_STATUS_OK) {
            double ms = b.time([&] {
                return llmk_attention_kvcache(ctx, &dq, &kc, &vc, nullptr, nullptr, &seqlens, nullptr, &ap, &dout,
                                              nullptr);
            });
            b.record_bytes("attention_kvcache decode", "batch 32, cache 8192, 32/8 heads, 128 bf16", ms,
                           2.0 * db * len * hk * hd * 2);
        } else {
            std::printf("attention_kvcache: skipped (%s: %s)\n", llmk_status_string(probe), llmk_last_error());
        }
        b.release_all();
    }
    { // MoE: route, permute, unpermute
        const int64_t t = big_rows, experts = 256, top_k = 8, h = 4096;
        llmk_tensor logits = b.floats(LLMK_DTYPE_F32, {t, experts}, 4.0f), bias = b.floats(LLMK_DTYPE_F32, {experts}, 0.1f);
        llmk_tensor w = b.empty(LLMK_DTYPE_F32, {t, top_k}), ids = b.empty(LLMK_DTYPE_I32, {t, top_k});
        llmk_moe_router_params rp = router((int32_t)top_k, LLMK_MOE_SCORING_SIGMOID, 8, 4, 2.5f);
        double ms = b.time([&] { return llmk_moe_route(ctx, &logits, &bias, &rp, &w, &ids); });
        b.record_bytes("moe_route sigmoid grouped", "logits " + shape_str({t, experts}, LLMK_DTYPE_F32) + " top 8", ms,
                       (double)t * experts * 4 + (double)t * top_k * 8);
        rp.scoring = LLMK_MOE_SCORING_SOFTMAX;
        rp.num_groups = 0;
        rp.routed_scaling_factor = 0;
        ms = b.time([&] { return llmk_moe_route(ctx, &logits, nullptr, &rp, &w, &ids); });
        b.record_bytes("moe_route softmax", "logits " + shape_str({t, experts}, LLMK_DTYPE_F32) + " top 8", ms,
                       (double)t * experts * 4 + (double)t * top_k * 8);

        llmk_tensor x = b.floats(bf, {t, h}), permuted = b.empty(bf, {t * top_k, h});
        llmk_tensor offsets = b.empty(LLMK_DTYPE_I32, {experts + 1}), sources = b.empty(LLMK_DTYPE_I32, {t * top_k}),
                    rows = b.empty(LLMK_DTYPE_I32, {t, top_k});
        ms = b.time([&] {
            return llmk_moe_permute(ctx, &x, &ids, (int32_t)experts, &permuted, &offsets, &sources, &rows);
        });
        b.record_bytes("moe_permute", "x " + shape_str({t, h}, bf) + " top 8 of 256", ms, 2.0 * t * top_k * h * 2,
                       "includes the id check's sync");
        llmk_tensor out = b.empty(bf, {t, h});
        ms = b.time([&] { return llmk_moe_unpermute(ctx, &permuted, &w, &rows, &out); });
        b.record_bytes("moe_unpermute", "expert_out " + shape_str({t * top_k, h}, bf), ms,
                       (double)t * top_k * h * 2 + (double)t * h * 2, "includes the row check's sync");
        b.release_all();
    }
}

// ---- check mode: CUDA against the CPU reference ----------------------------------------------------------------

struct Spec {
    int32_t dtype;
    std::vector<int64_t> shape;
    std::vector<double> values; // initial contents; empty: an output, poisoned
    bool compare;
};

// Bytes of n elements of a dtype (whole blocks for a quantized one).
size_t byte_count(int32_t dtype, int64_t n) {
    int64_t elements = 1, bytes = 0;
    CHECK_LLMK(llmk_dtype_block(dtype, &elements, &bytes));
    return (size_t)(n / elements * bytes);
}

// Host bytes of a spec, through the CPU backend's conversions (a quantized spec is quantized there).
std::vector<unsigned char> host_bytes(llmk_context* cpu, const Spec& s) {
    const int64_t n = numel(s.shape);
    std::vector<unsigned char> bytes(byte_count(s.dtype, n), 0xff); // outputs: NaN / garbage poison
    if (s.values.empty())
        return bytes;
    if (s.dtype == LLMK_DTYPE_I32 || s.dtype == LLMK_DTYPE_I64) {
        for (int64_t i = 0; i < n; i++) {
            int64_t v = (int64_t)s.values[(size_t)i];
            if (s.dtype == LLMK_DTYPE_I32) {
                int32_t v32 = (int32_t)v;
                std::memcpy(&bytes[(size_t)i * 4], &v32, 4);
            } else {
                std::memcpy(&bytes[(size_t)i * 8], &v, 8);
            }
        }
        return bytes;
    }
    std::vector<float> f(s.values.begin(), s.values.end());
    llmk_tensor src = make_tensor(f.data(), LLMK_DTYPE_F32, s.shape, cpu);
    llmk_tensor dst = make_tensor(bytes.data(), s.dtype, s.shape, cpu);
    CHECK_LLMK(llmk_convert(cpu, &src, &dst));
    return bytes;
}

std::vector<double> as_doubles(llmk_context* cpu, const Spec& s, std::vector<unsigned char>& bytes) {
    const int64_t n = numel(s.shape);
    std::vector<double> out((size_t)n);
    if (!is_float(s.dtype)) {
        for (int64_t i = 0; i < n; i++) {
            if (s.dtype == LLMK_DTYPE_I32) {
                int32_t v;
                std::memcpy(&v, &bytes[(size_t)i * 4], 4);
                out[(size_t)i] = v;
            } else {
                int64_t v;
                std::memcpy(&v, &bytes[(size_t)i * 8], 8);
                out[(size_t)i] = (double)v;
            }
        }
        return out;
    }
    std::vector<float> f((size_t)n);
    llmk_tensor src = make_tensor(bytes.data(), s.dtype, s.shape, cpu);
    llmk_tensor dst = make_tensor(f.data(), LLMK_DTYPE_F32, s.shape, cpu);
    CHECK_LLMK(llmk_convert(cpu, &src, &dst));
    for (int64_t i = 0; i < n; i++)
        out[(size_t)i] = f[(size_t)i];
    return out;
}

using Op = std::function<llmk_status(llmk_context*, std::vector<llmk_tensor>&)>;

struct Checker {
    llmk_context* cpu;
    llmk_context* gpu;
    unsigned seed = 12345;
    int passed = 0, failed = 0, skipped = 0;

    double uniform(double scale = 1.0) {
        seed = seed * 1664525u + 1013904223u;
        return ((seed >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0) * scale;
    }
    std::vector<double> randoms(int64_t n, double scale = 1.0) {
        std::vector<double> v((size_t)n);
        for (auto& x : v)
            x = uniform(scale);
        return v;
    }

    // Runs op on ctx with fresh copies of the specs; returns the status and the compared tensors.
    llmk_status run(llmk_context* ctx, const std::vector<Spec>& specs, const Op& op,
                    std::vector<std::vector<double>>& outputs, std::string& message) {
        std::vector<void*> memory;
        std::vector<llmk_tensor> tensors;
        for (const Spec& s : specs) {
            std::vector<unsigned char> bytes = host_bytes(cpu, s);
            void* p = nullptr;
            CHECK_LLMK(llmk_malloc(ctx, bytes.size(), &p));
            CHECK_LLMK(llmk_upload(ctx, p, bytes.data(), bytes.size()));
            memory.push_back(p);
            tensors.push_back(make_tensor(p, s.dtype, s.shape, ctx));
        }
        llmk_status status = op(ctx, tensors);
        if (status == LLMK_STATUS_OK)
            status = llmk_context_synchronize(ctx);
        message = status == LLMK_STATUS_OK ? "" : llmk_last_error();
        outputs.clear();
        for (size_t i = 0; i < specs.size(); i++) {
            if (!specs[i].compare)
                continue;
            std::vector<unsigned char> bytes(byte_count(specs[i].dtype, numel(specs[i].shape)));
            CHECK_LLMK(llmk_download(ctx, bytes.data(), memory[i], bytes.size()));
            outputs.push_back(as_doubles(cpu, specs[i], bytes));
        }
        for (void* p : memory)
            llmk_free(ctx, p);
        return status;
    }

    void check(const std::string& name, int32_t dtype, const std::vector<Spec>& specs, const Op& op,
               llmk_status expected = LLMK_STATUS_OK) {
        std::vector<std::vector<double>> want, got;
        std::string cpu_message, gpu_message;
        llmk_status cs = run(cpu, specs, op, want, cpu_message);
        llmk_status gs = run(gpu, specs, op, got, gpu_message);
        if (gs == LLMK_STATUS_UNSUPPORTED && expected == LLMK_STATUS_OK) {
            std::printf("SKIP %-40s %-5s unsupported on CUDA: %s\n", name.c_str(), llmk_dtype_name(dtype), gpu_message.c_str());
            skipped++;
            return;
        }
        if (cs != expected || gs != expected) {
            std::printf("FAIL %-40s %-5s status cpu %s, cuda %s (expected %s): %s | %s\n", name.c_str(),
                        llmk_dtype_name(dtype), llmk_status_string(cs), llmk_status_string(gs),
                        llmk_status_string(expected), cpu_message.c_str(), gpu_message.c_str());
            failed++;
            return;
        }
        if (expected != LLMK_STATUS_OK) {
            std::printf("PASS %-40s %-5s both %s: %s\n", name.c_str(), llmk_dtype_name(dtype), llmk_status_string(gs),
                        gpu_message.c_str());
            passed++;
            return;
        }
        const double tolerance = dtype == LLMK_DTYPE_F32 ? 2e-5 : dtype == LLMK_DTYPE_F16 ? 3e-3 : 1.5e-2;
        bool ok = true;
        std::string detail;
        for (size_t t = 0; t < want.size(); t++) {
            double diff = 0, norm = 0, max_abs = 0;
            int64_t bad = 0;
            for (size_t i = 0; i < want[t].size(); i++) {
                double a = want[t][i], g = got[t][i];
                if (std::isnan(a) != std::isnan(g) || (!std::isnan(a) && std::isinf(a) != std::isinf(g))) {
                    bad++;
                    continue;
                }
                if (std::isnan(a) || std::isinf(a))
                    continue;
                diff += (a - g) * (a - g);
                norm += a * a;
                max_abs = std::max(max_abs, std::fabs(a - g));
            }
            double rel = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
            char line[160];
            std::snprintf(line, sizeof line, " out%zu rel_l2 %.2e max_abs %.2e nonfinite %lld;", t, rel, max_abs,
                          (long long)bad);
            detail += line;
            if (bad || !(rel <= tolerance))
                ok = false;
        }
        std::printf("%s %-40s %-5s%s\n", ok ? "PASS" : "FAIL", name.c_str(), llmk_dtype_name(dtype), detail.c_str());
        (ok ? passed : failed)++;
    }
};

void run_checks(Checker& c) {
    const int32_t dtypes[] = {LLMK_DTYPE_F32, LLMK_DTYPE_F16, LLMK_DTYPE_BF16};
    auto in = [](int32_t dt, std::vector<int64_t> shape, std::vector<double> v) { return Spec{dt, shape, v, false}; };
    auto out = [](int32_t dt, std::vector<int64_t> shape) { return Spec{dt, shape, {}, true}; };
    auto inout = [](int32_t dt, std::vector<int64_t> shape, std::vector<double> v) { return Spec{dt, shape, v, true}; };

    for (int32_t dt : dtypes) {
        const int64_t r = 37, h = 129;
        c.check("add (mixed dtypes)", dt, {in(dt, {r, h}, c.randoms(r * h)), in(LLMK_DTYPE_F32, {r, h}, c.randoms(r * h)), out(dt, {r, h})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_add(x, &t[0], &t[1], &t[2]); });
        c.check("add (aligned, vector path)", dt, {in(dt, {64, 256}, c.randoms(64 * 256)), in(dt, {64, 256}, c.randoms(64 * 256)), out(dt, {64, 256})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_add(x, &t[0], &t[1], &t[2]); });
        c.check("add (transposed view)", dt, {in(dt, {r, h}, c.randoms(r * h)), in(dt, {h, r}, c.randoms(r * h)), out(dt, {r, h})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) {
                    llmk_tensor bt = t[1];
                    std::swap(bt.shape[0], bt.shape[1]);
                    std::swap(bt.strides[0], bt.strides[1]);
                    return llmk_add(x, &t[0], &bt, &t[2]);
                });
        c.check("convert f32 -> dtype", dt, {in(LLMK_DTYPE_F32, {r, h}, c.randoms(r * h, 3)), out(dt, {r, h})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_convert(x, &t[0], &t[1]); });
        if (dt == LLMK_DTYPE_F32) { // integer conversions, once
            c.check("convert i64 -> i32", LLMK_DTYPE_I32, {in(LLMK_DTYPE_I64, {4, 3}, {0, -1, 5, 2147483647, -2147483648.0, 7, 8, 9, 10, 11, 12, 13}), out(LLMK_DTYPE_I32, {4, 3})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_convert(x, &t[0], &t[1]); });
            c.check("convert i64 -> i32 out of range", LLMK_DTYPE_I32, {in(LLMK_DTYPE_I64, {2, 2}, {1, 2, 3e10, 4}), out(LLMK_DTYPE_I32, {2, 2})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_convert(x, &t[0], &t[1]); },
                    LLMK_STATUS_OUT_OF_RANGE);
        }
        c.check("convert dtype -> bf16", dt, {in(dt, {r, h}, c.randoms(r * h, 3)), out(LLMK_DTYPE_BF16, {r, h})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_convert(x, &t[0], &t[1]); });

        std::vector<double> ids;
        for (int i = 0; i < 33; i++)
            ids.push_back((i * 37) % 100);
        c.check("embedding (odd row, 2-byte copies)", dt, {in(dt, {100, 71}, c.randoms(7100)), in(LLMK_DTYPE_I64, {33}, ids), out(dt, {33, 71})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_embedding(x, &t[0], &t[1], &t[2]); });
        c.check("embedding", dt, {in(dt, {100, 72}, c.randoms(7200)), in(LLMK_DTYPE_I64, {33}, ids), out(dt, {33, 72})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_embedding(x, &t[0], &t[1], &t[2]); });
        c.check("embedding (table f32 -> dtype)", dt, {in(LLMK_DTYPE_F32, {100, 72}, c.randoms(7200)), in(LLMK_DTYPE_I32, {33}, ids), out(dt, {33, 72})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_embedding(x, &t[0], &t[1], &t[2]); });
        std::vector<double> bad_ids = ids;
        bad_ids[20] = 100;
        c.check("embedding id out of range", dt, {in(dt, {100, 72}, c.randoms(7200)), in(LLMK_DTYPE_I64, {33}, bad_ids), out(dt, {33, 72})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_embedding(x, &t[0], &t[1], &t[2]); },
                LLMK_STATUS_OUT_OF_RANGE);

        c.check("linear + bias", dt, {in(dt, {19, 136}, c.randoms(19 * 136)), in(dt, {72, 136}, c.randoms(72 * 136, 0.2)), in(LLMK_DTYPE_F32, {72}, c.randoms(72)), out(dt, {19, 72})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_linear(x, &t[0], &t[1], &t[2], &t[3]); });
        c.check("linear (f32 weight)", dt, {in(dt, {5, 200}, c.randoms(1000)), in(LLMK_DTYPE_F32, {33, 200}, c.randoms(6600, 0.2)), out(dt, {5, 33})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_linear(x, &t[0], &t[1], nullptr, &t[2]); });
        // Quantized weights: the CPU reference and CUDA both round x to 8 bits first (llmk_linear's contract).
        for (int32_t q : {LLMK_DTYPE_Q8_0, LLMK_DTYPE_Q4_0, LLMK_DTYPE_Q4_K, LLMK_DTYPE_Q6_K}) {
            const std::string name = llmk_dtype_name(q);
            c.check("linear (" + name + " weight, decode)", dt, {in(dt, {1, 512}, c.randoms(512)), in(q, {37, 512}, c.randoms(37 * 512, 0.2)), in(LLMK_DTYPE_F32, {37}, c.randoms(37)), out(dt, {1, 37})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_linear(x, &t[0], &t[1], &t[2], &t[3]); });
            c.check("linear (" + name + " weight, 11 rows)", dt, {in(dt, {11, 768}, c.randoms(11 * 768)), in(q, {70, 768}, c.randoms(70 * 768, 0.2)), out(dt, {11, 70})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_linear(x, &t[0], &t[1], nullptr, &t[2]); });
            c.check("embedding (" + name + " table)", dt, {in(q, {100, 256}, c.randoms(25600)), in(LLMK_DTYPE_I64, {33}, ids), out(dt, {33, 256})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_embedding(x, &t[0], &t[1], &t[2]); });
            c.check("convert " + name + " -> dtype", dt, {in(q, {9, 512}, c.randoms(9 * 512)), out(dt, {9, 512})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_convert(x, &t[0], &t[1]); });
        }

        for (int64_t hidden : {1001, 1024}) { // scalar and vector paths
            c.check("rms_norm hidden " + std::to_string(hidden), dt, {in(dt, {17, hidden}, c.randoms(17 * hidden)), in(dt, {hidden}, c.randoms(hidden)), out(dt, {17, hidden})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_rms_norm(x, &t[0], &t[1], 1e-5f, 0, &t[2]); });
            c.check("add_rms_norm gemma hidden " + std::to_string(hidden), dt, {in(dt, {17, hidden}, c.randoms(17 * hidden)), inout(dt, {17, hidden}, c.randoms(17 * hidden)), in(LLMK_DTYPE_F32, {hidden}, c.randoms(hidden)), out(dt, {17, hidden})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_add_rms_norm(x, &t[0], &t[1], &t[2], 1e-5f, LLMK_NORM_FLAGS_GEMMA, &t[3]); });
        }
        // In place and padded rows: out == x, and views whose row stride exceeds their length.
        c.check("rms_norm in place", dt, {inout(dt, {9, 1024}, c.randoms(9 * 1024)), in(dt, {1024}, c.randoms(1024))},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_rms_norm(x, &t[0], &t[1], 1e-5f, 0, &t[0]); });
        c.check("add_rms_norm out == x, padded rows", dt, {inout(dt, {9, 1024}, c.randoms(9 * 1024)), inout(dt, {9, 1024}, c.randoms(9 * 1024)), in(dt, {1000}, c.randoms(1000))},
                [](llmk_context* x, std::vector<llmk_tensor>& t) {
                    llmk_tensor xs = t[0], rs = t[1];
                    xs.shape[1] = rs.shape[1] = 1000; // row stride stays 1024
                    return llmk_add_rms_norm(x, &xs, &rs, &t[2], 1e-5f, 0, &xs);
                });
        c.check("add in place (out == a)", dt, {inout(dt, {33, 64}, c.randoms(33 * 64)), in(dt, {33, 64}, c.randoms(33 * 64))},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_add(x, &t[0], &t[1], &t[0]); });
        c.check("swiglu split in place (out == gate), padded rows", dt, {inout(dt, {7, 136}, c.randoms(7 * 136, 4)), in(dt, {7, 136}, c.randoms(7 * 136))},
                [](llmk_context* x, std::vector<llmk_tensor>& t) {
                    llmk_tensor g = t[0], u = t[1];
                    g.shape[1] = u.shape[1] = 128;
                    return llmk_gated_activation_split(x, LLMK_ACTIVATION_SILU, &g, &u, &g);
                });
        for (int32_t act : {LLMK_ACTIVATION_SILU, LLMK_ACTIVATION_GELU_TANH})
            for (int64_t d : {201, 256}) // scalar and vector paths
                c.check(std::string(act ? "geglu" : "swiglu") + " fused d " + std::to_string(d), dt, {in(dt, {13, 2 * d}, c.randoms(13 * 2 * d, 4)), out(dt, {13, d})},
                        [act](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_gated_activation(x, act, &t[0], &t[1]); });

        for (int32_t style : {LLMK_ROPE_STYLE_NEOX, LLMK_ROPE_STYLE_GPTJ}) {
            std::vector<double> pos;
            for (int i = 0; i < 11; i++)
                pos.push_back(i * 9973 % 131072);
            c.check(std::string("rope partial ") + (style ? "gptj" : "neox"), dt, {in(LLMK_DTYPE_I64, {11}, pos), inout(dt, {11, 4, 64}, c.randoms(11 * 256)), inout(dt, {11, 2, 64}, c.randoms(11 * 128))},
                    [style](llmk_context* x, std::vector<llmk_tensor>& t) {
                        llmk_rope_params p;
                        std::memset(&p, 0, sizeof p);
                        p.style = style;
                        p.rotary_dim = 32;
                        p.theta = 10000;
                        return llmk_rope(x, &t[0], &p, &t[1], &t[2]);
                    });
        }

        std::vector<int64_t> head_dims; // every head dim of the tensor-core kernels, and one they do not take
#define LLMK_BENCH_HEAD_DIM_(D) head_dims.push_back(D);
        LLMK_ATTN_FLASH_HEAD_DIMS(LLMK_BENCH_HEAD_DIM_)
#undef LLMK_BENCH_HEAD_DIM_
        head_dims.push_back(96);
        for (int64_t hd : head_dims) {
            const int64_t B = 2, S = 37, H = 4, KH = 2;
            c.check("attention causal gqa hd " + std::to_string(hd), dt, {in(dt, {B, S, H, hd}, c.randoms(B * S * H * hd)), in(dt, {B, S, KH, hd}, c.randoms(B * S * KH * hd)), in(dt, {B, S, KH, hd}, c.randoms(B * S * KH * hd)), out(dt, {B, S, H, hd}), out(LLMK_DTYPE_F32, {B, H, S})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) {
                        const llmk_attention_params p = causal_attention();
                        return llmk_attention(x, &t[0], &t[1], &t[2], nullptr, &p, &t[3], &t[4]);
                    });
            const int64_t M = 128, N = 3;
            c.check("attention_kvcache hd " + std::to_string(hd), dt, {in(dt, {B, N, H, hd}, c.randoms(B * N * H * hd)), inout(dt, {B, M, KH, hd}, c.randoms(B * M * KH * hd)), inout(dt, {B, M, KH, hd}, c.randoms(B * M * KH * hd)), in(dt, {B, N, KH, hd}, c.randoms(B * N * KH * hd)), in(dt, {B, N, KH, hd}, c.randoms(B * N * KH * hd)), in(LLMK_DTYPE_I32, {B}, {5, 40}), out(dt, {B, N, H, hd})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) {
                        const llmk_attention_params p = causal_attention();
                        return llmk_attention_kvcache(x, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], nullptr, &p, &t[6], nullptr);
                    });
        }

        c.check("rope frequencies uploaded (rotary_dim 1100)", dt, {in(LLMK_DTYPE_I32, {3}, {0, 7, 123456}), inout(dt, {3, 2, 1100}, c.randoms(6600))},
                [](llmk_context* x, std::vector<llmk_tensor>& t) {
                    llmk_rope_params p;
                    std::memset(&p, 0, sizeof p);
                    p.style = LLMK_ROPE_STYLE_NEOX;
                    p.theta = 10000;
                    return llmk_rope(x, &t[0], &p, &t[1], nullptr);
                });
        c.check("linear in_features 0 (y = bias)", dt, {in(dt, {3, 0}, {}), in(dt, {5, 0}, {}), in(dt, {5}, c.randoms(5)), out(dt, {3, 5})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_linear(x, &t[0], &t[1], &t[2], &t[3]); });

        const int64_t T = 29, E = 64, K = 6, Hd = 80;
        c.check("moe_route deepseek (256 experts, 8 groups, top 8)", dt, {in(dt, {7, 256}, c.randoms(7 * 256, 3)), in(LLMK_DTYPE_F32, {256}, c.randoms(256, 0.1)), out(LLMK_DTYPE_F32, {7, 8}), out(LLMK_DTYPE_I32, {7, 8})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) {
                    llmk_moe_router_params p = router(8, LLMK_MOE_SCORING_SIGMOID, 8, 4, 2.5f);
                    return llmk_moe_route(x, &t[0], &t[1], &p, &t[2], &t[3]);
                });
        c.check("moe_route softmax renormalize", dt, {in(dt, {T, E}, c.randoms(T * E, 3)), out(LLMK_DTYPE_F32, {T, K}), out(LLMK_DTYPE_I32, {T, K})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) {
                    llmk_moe_router_params p = router(6, LLMK_MOE_SCORING_SOFTMAX);
                    return llmk_moe_route(x, &t[0], nullptr, &p, &t[1], &t[2]);
                });
        c.check("moe_route sigmoid grouped bias", dt, {in(dt, {T, E}, c.randoms(T * E, 3)), in(LLMK_DTYPE_F32, {E}, c.randoms(E, 0.1)), out(LLMK_DTYPE_F32, {T, K}), out(LLMK_DTYPE_I32, {T, K})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) {
                    llmk_moe_router_params p = router(6, LLMK_MOE_SCORING_SIGMOID, 8, 3, 2.5f);
                    return llmk_moe_route(x, &t[0], &t[1], &p, &t[2], &t[3]);
                });
        std::vector<double> eids;
        for (int64_t i = 0; i < T * K; i++)
            eids.push_back((double)((i * 7 + i / 5) % 16));
        c.check("moe_permute", dt, {in(dt, {T, Hd}, c.randoms(T * Hd)), in(LLMK_DTYPE_I32, {T, K}, eids), out(dt, {T * K, Hd}), out(LLMK_DTYPE_I32, {17}), out(LLMK_DTYPE_I32, {T * K}), out(LLMK_DTYPE_I32, {T, K})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_moe_permute(x, &t[0], &t[1], 16, &t[2], &t[3], &t[4], &t[5]); });
        { // enough entries for several 256-entry tiles per chunk (the counters carried between tiles)
            const int64_t T2 = 1100, K2 = 8;
            std::vector<double> many;
            for (int64_t i = 0; i < T2 * K2; i++)
                many.push_back((double)((i * 5 + i / 7 + (i % 3 == 0 ? 0 : i / 11)) % 16));
            c.check("moe_permute (many tiles)", dt, {in(dt, {T2, 8}, c.randoms(T2 * 8)), in(LLMK_DTYPE_I32, {T2, K2}, many), out(dt, {T2 * K2, 8}), out(LLMK_DTYPE_I32, {17}), out(LLMK_DTYPE_I32, {T2 * K2}), out(LLMK_DTYPE_I32, {T2, K2})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_moe_permute(x, &t[0], &t[1], 16, &t[2], &t[3], &t[4], &t[5]); });
        }
        std::vector<double> bad = eids;
        bad[50] = 16;
        c.check("moe_permute id out of range", dt, {in(dt, {T, Hd}, c.randoms(T * Hd)), in(LLMK_DTYPE_I32, {T, K}, bad), out(dt, {T * K, Hd}), out(LLMK_DTYPE_I32, {17}), out(LLMK_DTYPE_I32, {T * K}), out(LLMK_DTYPE_I32, {T, K})},
                [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_moe_permute(x, &t[0], &t[1], 16, &t[2], &t[3], &t[4], &t[5]); },
                LLMK_STATUS_OUT_OF_RANGE);
        std::vector<double> map;
        for (int64_t i = 0; i < T * K; i++)
            map.push_back((double)((i * 61) % (T * K)));
        for (int64_t hu : {Hd, (int64_t)77}) // vector and scalar paths
            c.check("moe_unpermute hidden " + std::to_string(hu), dt, {in(dt, {T * K, hu}, c.randoms(T * K * hu)), in(LLMK_DTYPE_F32, {T, K}, c.randoms(T * K)), in(LLMK_DTYPE_I32, {T, K}, map), out(dt, {T, hu})},
                    [](llmk_context* x, std::vector<llmk_tensor>& t) { return llmk_moe_unpermute(x, &t[0], &t[1], &t[2], &t[3]); });
    }
}

// ---- reports --------------------------------------------------------------------------------------------

std::string json_escape(const std::string& s) {
    std::string o;
    for (char ch : s) {
        if (ch == '"' || ch == '\\')
            o += '\\';
        o += ch;
    }
    return o;
}

void write_reports(const Bench& b, const char* device, const char* json, const char* markdown) {
    if (json) {
        FILE* f = std::fopen(json, "w");
        if (!f) {
            std::fprintf(stderr, "cannot write %s\n", json);
            return;
        }
        std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"copy_gbs\": %.2f,\n  \"gemm_bf16_tflops\": %.2f,\n  \"results\": [\n",
                     json_escape(device).c_str(), b.copy_gbs, b.gemm_tflops);
        for (size_t i = 0; i < b.results.size(); i++) {
            const Result& r = b.results[i];
            std::fprintf(f,
                         "    {\"kernel\": \"%s\", \"shape\": \"%s\", \"ms\": %.5f, \"value\": %.3f, \"unit\": \"%s\", "
                         "\"fraction_of_ceiling\": %.4f, \"note\": \"%s\"}%s\n",
                         json_escape(r.kernel).c_str(), json_escape(r.shape).c_str(), r.ms, r.value, r.metric.c_str(),
                         r.fraction, json_escape(r.note).c_str(), i + 1 < b.results.size() ? "," : "");
        }
        std::fprintf(f, "  ]\n}\n");
        std::fclose(f);
    }
    if (markdown) {
        FILE* f = std::fopen(markdown, "w");
        if (!f) {
            std::fprintf(stderr, "cannot write %s\n", markdown);
            return;
        }
        std::fprintf(f, "# LlmKernels GPU benchmark\n\n%s\n\nCeilings measured in this run: device copy %.1f GB/s, "
                        "cuBLAS bf16 GEMM %.1f TFLOP/s.\n\n| kernel | shape | median ms | result | of ceiling | note |\n"
                        "|---|---|---:|---:|---:|---|\n",
                     device, b.copy_gbs, b.gemm_tflops);
        for (const Result& r : b.results)
            std::fprintf(f, "| %s | %s | %.4f | %.1f %s | %.0f%% | %s |\n", r.kernel.c_str(), r.shape.c_str(), r.ms,
                         r.value, r.metric.c_str(), 100 * r.fraction, r.note.c_str());
        std::fclose(f);
    }
}

} // namespace

int main(int argc, char** argv) {
    int device = 0;
    const char* json = nullptr;
    const char* markdown = nullptr;
    bool check = false, check_only = false;
    Bench b;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--device") device = std::atoi(next());
        else if (a == "--repeats") b.repeats = std::max(1, std::atoi(next()));
        else if (a == "--warmup") b.warmup = std::max(0, std::atoi(next()));
        else if (a == "--json") json = next();
        else if (a == "--markdown") markdown = next();
        else if (a == "--check") check = true;
        else if (a == "--check-only") check = check_only = true;
        else if (a == "--quick") b.quick = true;
        else {
            std::fprintf(stderr, "usage: %s [--device N] [--repeats R] [--warmup W] [--json FILE] [--markdown FILE] "
                                 "[--check] [--check-only] [--quick]\n", argv[0]);
            return 2;
        }
    }
    char description[512] = "";
    llmk_status s = llmk_cuda_device_describe(device, description, sizeof description);
    if (s != LLMK_STATUS_OK) {
        std::fprintf(stderr, "no usable CUDA device: %s: %s\n", llmk_status_string(s), llmk_last_error());
        return 3;
    }
    std::printf("%s\nlibrary %s\n", description, llmk_version());
    CHECK_LLMK(llmk_context_create_cuda(device, &b.ctx));
    b.stream = static_cast<llmk_cuda_state*>(b.ctx->backend)->stream;

    int status = 0;
    if (check) {
        llmk_context* cpu = nullptr;
        CHECK_LLMK(llmk_context_create_cpu(0, &cpu));
        Checker c{cpu, b.ctx};
        run_checks(c);
        std::printf("check: %d passed, %d failed, %d skipped\n", c.passed, c.failed, c.skipped);
        llmk_context_destroy(cpu);
        if (c.failed)
            status = 1;
    }
    if (!check_only) {
        measure_ceilings(b);
        run_timings(b);
        write_reports(b, description, json, markdown);
    }
    llmk_context_destroy(b.ctx);
    return status;
}
