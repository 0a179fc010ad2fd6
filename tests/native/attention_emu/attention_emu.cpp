// Runs the CUDA attention entry points (llmk_attention, llmk_attention_kvcache on the emulated CUDA context
// of tests/native/emu: native/src/cuda/attention*.cu/.cuh as they are, threads as fibers, the PTX
// instructions emulated) against the CPU reference (native/src/cpu/attention.c through the same API, on f32
// copies of the rounded inputs): the reference llmk_gpu_bench --check holds the CUDA backend to on a GPU, and
// the one the NUnit suite holds to the double-precision oracles. Each case checks out and lse, that rows
// which see no key give zeros and -inf, that the KV caches hold exactly what the reference appended, that
// padding and cache rows past the sequence stay untouched (NaN), and that the intended kernels ran.
// Cases alternate between a compute capability 8.x device (the sm80 path) and 9.x (the sm90 slot).
// Usage: attention_emu [early|late] [name filter | fuzz [count]]; SEED=n changes the random inputs. Every line
// ends with a digest of the CUDA output bits: a change that claims to keep the kernels' math keeps them.
// Exit status 0 when every case passes.
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "emu_runtime.h"

#include "attention.cuh"

using namespace llmk_cu::attn;

namespace {

struct Case {
    std::string name;
    int B, Lq, H, Hkv, D, kv; // kv: kv_len, or max_len with kvcache
    bool causal = false;
    int wl = -1, wr = -1;
    float softcap = 0;
    bool alibi = false;
    bool kvcache = false;
    int new_len = 0;
    int splits = 1;
    float scale = 0;
    int algorithm = LLMK_ATTENTION_ALGORITHM_AUTO;
};

std::mt19937 rng(getenv("SEED") ? atoi(getenv("SEED")) : 12345);
float uni(float a = -1, float b = 1) { return std::uniform_real_distribution<float>(a, b)(rng); }

void check(llmk_status s, const char* what) {
    if (s != LLMK_STATUS_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, llmk_status_string(s), llmk_last_error());
        exit(2);
    }
}

/* A [d0, d1, d2, D] tensor in dtype T on the host, rows padded (pad elements after each row of D, and after
 * each batch), everything NaN until written; and its copy on a context. */
template <class T> struct Host {
    std::vector<T> data;
    int64_t shape[4], strides[4];
    Host(int64_t d0, int64_t d1, int64_t d2, int64_t D, int64_t pad) : shape{d0, d1, d2, D} {
        strides[3] = 1;
        strides[2] = D + pad;
        strides[1] = d2 * strides[2];
        strides[0] = d1 * strides[1] + pad;
        data.assign((size_t)(d0 * strides[0] + 16), llmk_cu::from_float<T>(NAN));
    }
    T& at(int64_t a, int64_t b, int64_t c, int64_t d) {
        return data[(size_t)(a * strides[0] + b * strides[1] + c * strides[2] + d)];
    }
    float get(int64_t a, int64_t b, int64_t c, int64_t d) { return llmk_cu::to_float(at(a, b, c, d)); }
};

template <class T> constexpr int32_t dtype_of() {
    return std::is_same_v<T, float> ? LLMK_DTYPE_F32 : std::is_same_v<T, __half> ? LLMK_DTYPE_F16 : LLMK_DTYPE_BF16;
}

/* Memory of one context: uploaded copies of host tensors, freed together. */
struct Device {
    llmk_context* ctx;
    std::vector<void*> buffers;
    ~Device() {
        for (void* p : buffers)
            llmk_free(ctx, p);
    }
    template <class T> llmk_tensor put(Host<T>& h) { return put(h.data.data(), h.data.size() * sizeof(T), dtype_of<T>(), 4, h.shape, h.strides); }
    llmk_tensor put(const void* bytes, size_t size, int32_t dtype, int32_t rank, const int64_t* shape, const int64_t* strides) {
        void* p = nullptr;
        check(llmk_malloc(ctx, size, &p), "llmk_malloc");
        check(llmk_upload(ctx, p, bytes, size), "llmk_upload");
        buffers.push_back(p);
        llmk_tensor t{};
        t.data = p;
        t.dtype = dtype;
        t.rank = rank;
        for (int d = 0; d < rank; d++)
            t.shape[d] = shape[d], t.strides[d] = strides[d];
        check(llmk_context_device(ctx, &t.device_type, &t.device_index), "llmk_context_device");
        return t;
    }
    template <class T> void get(Host<T>& h, const llmk_tensor& t) {
        check(llmk_download(ctx, h.data.data(), t.data, h.data.size() * sizeof(T)), "llmk_download");
    }
};

/* f32 copy of a host tensor (the reference's input: the rounded values, exactly). */
template <class T> Host<float> widen(Host<T>& h, int64_t pad) {
    Host<float> f(h.shape[0], h.shape[1], h.shape[2], h.shape[3], pad);
    for (int64_t a = 0; a < h.shape[0]; a++)
        for (int64_t b = 0; b < h.shape[1]; b++)
            for (int64_t c = 0; c < h.shape[2]; c++)
                for (int64_t d = 0; d < h.shape[3]; d++)
                    f.at(a, b, c, d) = h.get(a, b, c, d);
    return f;
}

uint32_t fnv(uint32_t h, const void* p, size_t n) {
    const unsigned char* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

/* "find_out_of_range+append+flash_sm80+combine": the kernels of the call, in order. */
std::string kernels_run() {
    std::string s;
    for (std::string k : emu::launched) {
        if (k.size() > 7 && k.compare(k.size() - 7, 7, "_kernel") == 0)
            k.erase(k.size() - 7);
        const size_t at = k.find("_kernel_");
        if (at != std::string::npos)
            k.erase(at, 7);
        s += (s.empty() ? "" : "+") + k;
    }
    return s;
}

int case_number = 0;

template <class T> bool run(const Case& c, bool flash, double tol) {
    const int group = c.H / c.Hkv;
    const int cc_major = case_number++ % 2 ? 9 : 8;
    Host<T> q(c.B, c.Lq, c.H, c.D, 8), k(c.B, c.kv, c.Hkv, c.D, 8), v(c.B, c.kv, c.Hkv, c.D, 16), out(c.B, c.Lq, c.H, c.D, 8);
    Host<T> k_new(c.B, c.new_len, c.Hkv, c.D, 8), v_new(c.B, c.new_len, c.Hkv, c.D, 8);
    std::vector<int32_t> seqlens(c.B);
    std::vector<int> kv_len(c.B);
    for (int b = 0; b < c.B; b++) {
        seqlens[b] = c.kvcache ? (int)(rng() % (c.kv - c.new_len + 1)) : 0;
        if (b == 0 && c.kvcache)
            seqlens[b] = c.kv - c.new_len; // one full cache
        kv_len[b] = c.kvcache ? seqlens[b] + c.new_len : c.kv;
    }
    for (int b = 0; b < c.B; b++)
        for (int i = 0; i < c.Lq; i++)
            for (int h = 0; h < c.H; h++)
                for (int d = 0; d < c.D; d++)
                    q.at(b, i, h, d) = llmk_cu::from_float<T>(uni() * 2);
    /* Rows past the sequence stay NaN: they must never be read. With a cache, rows [seqlens, + new_len)
     * come from k_new/v_new, appended by the call. */
    for (int b = 0; b < c.B; b++)
        for (int j = 0; j < kv_len[b]; j++)
            for (int h = 0; h < c.Hkv; h++)
                for (int d = 0; d < c.D; d++) {
                    const T kx = llmk_cu::from_float<T>(uni() * 2), vx = llmk_cu::from_float<T>(uni());
                    const bool is_new = c.kvcache && j >= seqlens[b];
                    (is_new ? k_new.at(b, j - seqlens[b], h, d) : k.at(b, j, h, d)) = kx;
                    (is_new ? v_new.at(b, j - seqlens[b], h, d) : v.at(b, j, h, d)) = vx;
                }
    std::vector<float> slopes(c.H);
    for (int h = 0; h < c.H; h++)
        slopes[h] = c.alibi ? powf(2.0f, -8.0f * (h + 1) / c.H) : 0;
    const int64_t lse_shape[3] = {c.B, c.H, c.Lq};
    const int64_t lse_strides[3] = {(int64_t)c.H * (c.Lq + 1) + 3, c.Lq + 1, 1};
    std::vector<float> lse((size_t)(c.B * lse_strides[0] + 8), NAN);
    const int64_t one[1] = {1};
    const int64_t heads[1] = {c.H}, batch[1] = {c.B};

    llmk_attention_params params{};
    params.scale = c.scale;
    params.causal = c.causal;
    params.window_left = c.wl;
    params.window_right = c.wr;
    params.softcap = c.softcap;
    params.algorithm = c.algorithm;
    params.num_splits = c.splits;

    /* The reference: the CPU backend on f32 copies (contiguous apart from the same padding), plain softmax. */
    Host<float> rq = widen(q, 0), rk = widen(k, 0), rv = widen(v, 0), rout(c.B, c.Lq, c.H, c.D, 0);
    Host<float> rk_new = widen(k_new, 0), rv_new = widen(v_new, 0);
    std::vector<float> rlse((size_t)c.B * c.H * c.Lq, NAN);
    {
        static llmk_context* cpu = nullptr;
        if (!cpu)
            check(llmk_context_create_cpu(1, &cpu), "llmk_context_create_cpu");
        llmk_attention_params rp = params;
        rp.algorithm = LLMK_ATTENTION_ALGORITHM_NAIVE;
        rp.num_splits = 0;
        Device m{cpu};
        llmk_tensor tq = m.put(rq), tk = m.put(rk), tv = m.put(rv), to = m.put(rout);
        const int64_t lse_c[3] = {(int64_t)c.H * c.Lq, c.Lq, 1};
        llmk_tensor tl = m.put(rlse.data(), rlse.size() * 4, LLMK_DTYPE_F32, 3, lse_shape, lse_c);
        llmk_tensor ts = m.put(slopes.data(), slopes.size() * 4, LLMK_DTYPE_F32, 1, heads, one);
        llmk_tensor* alibi = c.alibi ? &ts : nullptr;
        if (c.kvcache) {
            llmk_tensor tkn = m.put(rk_new), tvn = m.put(rv_new);
            llmk_tensor tsl = m.put(seqlens.data(), seqlens.size() * 4, LLMK_DTYPE_I32, 1, batch, one);
            const bool has_new = c.new_len > 0;
            check(llmk_attention_kvcache(cpu, &tq, &tk, &tv, has_new ? &tkn : nullptr, has_new ? &tvn : nullptr,
                                         &tsl, alibi, &rp, &to, &tl), "reference llmk_attention_kvcache");
            m.get(rk, tk);
            m.get(rv, tv);
        } else {
            check(llmk_attention(cpu, &tq, &tk, &tv, alibi, &rp, &to, &tl), "reference llmk_attention");
        }
        m.get(rout, to);
        check(llmk_download(cpu, rlse.data(), tl.data, rlse.size() * 4), "llmk_download");
    }

    /* The emulated CUDA device. */
    static llmk_context* gpu = nullptr;
    if (!gpu)
        check(llmk_context_create_cuda(0, &gpu), "llmk_context_create_cuda");
    static_cast<llmk_cuda_state*>(gpu->backend)->cc_major = cc_major;
    emu::launched.clear();
    {
        Device m{gpu};
        llmk_tensor tq = m.put(q), tk = m.put(k), tv = m.put(v), to = m.put(out);
        llmk_tensor tl = m.put(lse.data(), lse.size() * 4, LLMK_DTYPE_F32, 3, lse_shape, lse_strides);
        llmk_tensor ts = m.put(slopes.data(), slopes.size() * 4, LLMK_DTYPE_F32, 1, heads, one);
        llmk_tensor* alibi = c.alibi ? &ts : nullptr;
        llmk_status s;
        if (c.kvcache) {
            llmk_tensor tkn = m.put(k_new), tvn = m.put(v_new);
            llmk_tensor tsl = m.put(seqlens.data(), seqlens.size() * 4, LLMK_DTYPE_I32, 1, batch, one);
            const bool has_new = c.new_len > 0;
            s = llmk_attention_kvcache(gpu, &tq, &tk, &tv, has_new ? &tkn : nullptr, has_new ? &tvn : nullptr, &tsl,
                                       alibi, &params, &to, &tl);
            m.get(k, tk);
            m.get(v, tv);
        } else {
            s = llmk_attention(gpu, &tq, &tk, &tv, alibi, &params, &to, &tl);
        }
        check(s, "llmk_attention on the emulated CUDA context");
        check(llmk_context_synchronize(gpu), "llmk_context_synchronize");
        m.get(out, to);
        check(llmk_download(gpu, lse.data(), tl.data, lse.size() * 4), "llmk_download");
    }

    double err2 = 0, ref2 = 0, max_abs = 0, lse_err = 0;
    int bad = 0;
    auto complain = [&](const char* what, int b, int h, int i) {
        if (bad++ < 5)
            printf("  %s: b%d h%d i%d\n", what, b, h, i);
    };
    uint32_t digest = 2166136261u;
    for (int b = 0; b < c.B; b++)
        for (int h = 0; h < c.H; h++)
            for (int i = 0; i < c.Lq; i++) {
                const float ref_lse = rlse[((size_t)b * c.H + h) * c.Lq + i];
                const float got_lse = lse[b * lse_strides[0] + h * lse_strides[1] + i];
                digest = fnv(digest, &got_lse, 4);
                const bool empty = std::isinf(ref_lse) && ref_lse < 0; // the row sees no key
                for (int d = 0; d < c.D; d++) {
                    const double ref = rout.get(b, i, h, d), got = out.get(b, i, h, d);
                    digest = fnv(digest, &out.at(b, i, h, d), sizeof(T));
                    if (!std::isfinite(got)) {
                        complain("non-finite out", b, h, i);
                        continue;
                    }
                    if (empty && got != 0)
                        complain("a row that sees no key is not zero", b, h, i);
                    err2 += (got - ref) * (got - ref);
                    ref2 += ref * ref;
                    max_abs = std::max(max_abs, fabs(got - ref));
                }
                if (empty) {
                    if (!(std::isinf(got_lse) && got_lse < 0))
                        complain("lse of a row that sees no key is not -inf", b, h, i);
                } else if (!std::isfinite(got_lse)) {
                    complain("non-finite lse", b, h, i);
                } else {
                    lse_err = std::max(lse_err, (double)fabs(got_lse - ref_lse));
                }
            }
    /* Padding of out must be untouched; the caches must hold exactly what the reference's do (the appended
     * rows, NaN past them), with their padding untouched. */
    for (int b = 0; b < c.B; b++)
        for (int i = 0; i < c.Lq; i++)
            for (int h = 0; h < c.H; h++)
                for (int64_t d = c.D; d < out.strides[2]; d++)
                    if (!std::isnan(out.get(b, i, h, d)))
                        complain("padding of out written", b, h, i);
    if (c.kvcache)
        for (int b = 0; b < c.B; b++)
            for (int j = 0; j < c.kv; j++)
                for (int h = 0; h < c.Hkv; h++) {
                    for (int d = 0; d < c.D; d++) {
                        const float gk = k.get(b, j, h, d), rk_ = rk.get(b, j, h, d);
                        const float gv = v.get(b, j, h, d), rv_ = rv.get(b, j, h, d);
                        if (!(gk == rk_ || (std::isnan(gk) && std::isnan(rk_))) ||
                            !(gv == rv_ || (std::isnan(gv) && std::isnan(rv_))))
                            complain("cache differs from the reference's (row j as i)", b, h, j);
                    }
                    for (int64_t d = c.D; d < k.strides[2]; d++)
                        if (!std::isnan(k.get(b, j, h, d)))
                            complain("padding of k_cache written (row j as i)", b, h, j);
                }
    const std::string ran = kernels_run();
    const char* want = flash ? "flash_sm80" : "simple";
    if (ran.find(want) == std::string::npos) {
        printf("  expected %s, ran %s\n", want, ran.c_str());
        bad++;
    }
    const double rel = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
    const bool ok = bad == 0 && rel <= tol && lse_err <= 50 * tol;
    printf("%s %-44s %-4s rel_l2 %.2e max_abs %.2e lse_err %.2e bad %d (cc %d.0: %s) #%08x\n", ok ? "PASS" : "FAIL",
           c.name.c_str(), dtype_of<T>() == LLMK_DTYPE_F16 ? "f16" : dtype_of<T>() == LLMK_DTYPE_BF16 ? "bf16" : "f32",
           rel, max_abs, lse_err, bad, cc_major, ran.c_str(), digest);
    return ok;
}

/* The tensor-core launcher refuses a head dim that is not in the list, on every path, and launches nothing. */
bool unlisted_head_dim_refused() {
    bool ok = true;
    for (FlashArch arch : {FlashArch::Sm80, FlashArch::Sm90}) {
        Params p{};
        p.batch = p.q_len = p.heads = p.kv_heads = p.group = p.num_splits = 1;
        p.head_dim = 96;
        emu::launched.clear();
        const llmk_status s = launch_flash<__half>(arch, p, FlashPlan{}, nullptr, "attention_emu");
        const bool refused = s == LLMK_STATUS_UNSUPPORTED && strstr(llmk_last_error(), "head_dim 96") &&
                             emu::launched.empty();
        printf("%s %-44s %s: %s\n", refused ? "PASS" : "FAIL", "unlisted head dim refused", flash_arch_name(arch),
               llmk_last_error());
        ok &= refused;
    }
    return ok;
}

} // namespace

int main(int argc, char** argv) {
    int fails = 0;
    emu::late_copies = argc > 1 && std::string(argv[1]) == "late";
    const char* only = argc > 2 ? argv[2] : nullptr;
    std::vector<Case> cases = {
        {"prefill d64 ragged", 2, 70, 2, 2, 64, 130},
        {"prefill d64 causal q<kv", 1, 37, 2, 1, 64, 150, true},
        {"prefill d64 causal q>kv (empty rows)", 1, 90, 2, 2, 64, 40, true},
        {"prefill d128 gqa4 causal", 1, 33, 8, 2, 128, 97, true},
        {"prefill d128 window softcap alibi", 1, 80, 2, 1, 128, 200, false, 30, 5, 20.0f, true},
        {"prefill d256 causal window", 1, 70, 2, 2, 256, 70, true, 16},
        {"prefill d128 kv0", 1, 20, 2, 2, 128, 0},
        {"decode d128 gqa8 q1 splits3", 2, 1, 8, 1, 128, 300, false, -1, -1, 0, false, false, 0, 3},
        {"decode d64 q2 gqa4 causal alibi splits5", 1, 2, 8, 2, 64, 333, true, -1, -1, 0, true, false, 0, 5},
        {"decode d256 q1 mqa2 window splits2", 1, 1, 2, 1, 256, 150, false, 40, -1, 0, false, false, 0, 2},
        {"kvcache d128 q3 gqa4 causal new3 splits4", 3, 3, 8, 2, 128, 200, true, -1, -1, 0, false, true, 3, 4},
        {"kvcache d64 prefill chunk q40 new40 causal", 2, 40, 2, 2, 64, 160, true, -1, -1, 0, false, true, 40, 1},
        {"kvcache d256 q1 new1 splits1", 2, 1, 4, 4, 256, 100, false, -1, -1, 0, false, true, 1, 1},
        {"kvcache d128 q1 no new rows splits0", 2, 1, 4, 2, 128, 90, false, -1, -1, 0, false, true, 0, 0},
        {"decode splits > tiles", 1, 1, 4, 2, 64, 70, false, -1, -1, 0, false, false, 0, 6},
    };
    if (only && std::string(only) == "fuzz") {
        const int n = argc > 3 ? atoi(argv[3]) : 100;
#define LLMK_ATTN_EMU_DIM_(D) D,
        const int dims[] = {LLMK_ATTN_FLASH_HEAD_DIMS(LLMK_ATTN_EMU_DIM_)}; // every listed head dim
#undef LLMK_ATTN_EMU_DIM_
        const int ndims = (int)(sizeof dims / sizeof dims[0]);
        cases.clear();
        for (int x = 0; x < n; x++) {
            Case c;
            c.name = "fuzz" + std::to_string(x);
            c.D = dims[rng() % ndims];
            c.Hkv = 1 + rng() % 2;
            c.H = c.Hkv * (1 << (rng() % 4));
            c.B = 1 + rng() % 2;
            c.Lq = rng() % 3 == 0 ? 1 + rng() % 4 : 1 + rng() % 90;
            c.kvcache = rng() % 3 == 0;
            c.new_len = c.kvcache ? (int)(rng() % (c.Lq + 1)) : 0;
            c.kv = c.kvcache ? c.new_len + (int)(rng() % 200) : (int)(rng() % 260);
            c.causal = rng() % 2;
            c.wl = rng() % 3 == 0 ? (int)(rng() % 100) : -1;
            c.wr = rng() % 4 == 0 ? (int)(rng() % 20) : -1;
            c.softcap = rng() % 4 == 0 ? 5.0f + rng() % 30 : 0;
            c.alibi = rng() % 4 == 0;
            c.splits = rng() % 2 ? 1 : 1 + rng() % 5;
            c.scale = rng() % 5 == 0 ? 0.3f : 0;
            char buf[200];
            snprintf(buf, sizeof buf, " B%d Lq%d H%d/%d D%d kv%d c%d w%d,%d cap%g al%d kvc%d new%d sp%d", c.B, c.Lq, c.H,
                     c.Hkv, c.D, c.kv, c.causal, c.wl, c.wr, c.softcap, c.alibi, c.kvcache, c.new_len, c.splits);
            c.name += buf;
            cases.push_back(c);
        }
        only = nullptr;
    }
    for (auto& c : cases) {
        if (only && c.name.find(only) == std::string::npos)
            continue;
        fails += !run<__half>(c, true, 6e-3);
        fails += !run<__nv_bfloat16>(c, true, 4e-2);
    }
    std::vector<Case> simple = {
        {"simple f32 d80 causal gqa2 alibi softcap", 2, 19, 4, 2, 80, 45, true, -1, -1, 10.0f, true},
        {"simple f32 d64 window q>kv", 1, 50, 2, 1, 64, 30, false, 3, 2},
        {"simple f32 kvcache d40", 2, 2, 4, 2, 40, 90, true, -1, -1, 0, false, true, 2},
        {"simple f32 kv0", 1, 3, 2, 2, 16, 0},
    };
    for (auto& c : simple) {
        if (only && c.name.find(only) == std::string::npos)
            continue;
        fails += !run<float>(c, false, 2e-6);
    }
    std::vector<Case> fallback = {
        {"simple f16 d96 (an unlisted head dim)", 1, 9, 2, 2, 96, 40, true},
        {"simple f16 d64 algorithm naive", 1, 9, 2, 2, 64, 40, true, -1, -1, 0, false, false, 0, 1, 0,
         LLMK_ATTENTION_ALGORITHM_NAIVE},
    };
    for (auto& c : fallback) {
        if (only && c.name.find(only) == std::string::npos)
            continue;
        fails += !run<__half>(c, false, 6e-3);
    }
    if (!only || std::string("unlisted head dim refused").find(only) != std::string::npos)
        fails += !unlisted_head_dim_refused();
    printf("%d failed\n", fails);
    return fails != 0;
}
