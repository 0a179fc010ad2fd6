// Runs the CUDA attention kernels (native/src/cuda/attention_*.cuh) in the host emulator of emu.h
// against a double-precision reference. Usage: attention_emu [early|late] [name filter | fuzz [count]];
// SEED=n changes the random inputs. Exit status 0 when every case passes.
#include "emu.h"
#define __CUDA_ARCH__ 800
#include "attention_flash.cuh"
#include "attention_simple.cuh"
#include <random>
#include <string>

using namespace llmk_cu::attn;
using llmk_cu::to_float;
using llmk_cu::from_float;

struct Case {
    std::string name;
    int B, Lq, H, Hkv, D, kv;       // kv: kv_len, or max_len with kvcache
    bool causal = false;
    int wl = -1, wr = -1;
    float softcap = 0;
    bool alibi = false;
    bool kvcache = false;
    int new_len = 0;
    int splits = 1;
    float scale = 0;
};

static std::mt19937 rng(getenv("SEED") ? atoi(getenv("SEED")) : 12345);
static float uni(float a = -1, float b = 1) { return std::uniform_real_distribution<float>(a, b)(rng); }

template <class T> struct Buf {
    std::vector<T> data;
    int64_t s0, s1, s2;
    Buf(int64_t d0, int64_t d1, int64_t d2, int64_t D, int64_t pad) {
        s2 = D + pad; s1 = d2 * s2; s0 = d1 * s1 + pad;
        data.resize((size_t)(d0 * s0 + 16));
        for (auto& x : data) x = from_float<T>(NAN);
    }
    T& at(int64_t a, int64_t b, int64_t c, int64_t d) { return data[a * s0 + b * s1 + c * s2 + d]; }
};

template <class T, int D> void launch(const Case& c, Params& p, bool flash) {
    if constexpr (!std::is_same_v<T, float>) if (flash) {
        const bool decode = (int64_t)c.Lq * (c.H / c.Hkv) <= 16;
        const int bm = flash_block_m(decode);
        const int64_t m_blocks = ((int64_t)c.Lq * (c.H / c.Hkv) + bm - 1) / bm;
        const int64_t blocks = m_blocks * p.num_splits * c.Hkv * c.B;
        emu::grid_x = (unsigned)blocks;
        for (int64_t bid = 0; bid < blocks; bid++) {
            emu::block_x = (unsigned)bid;
            if (decode) emu::run_block([&] { flash_kernel<T, D, true>(p); });
            else emu::run_block([&] { flash_kernel<T, D, false>(p); });
        }
        if (p.num_splits > 1) {
            const int64_t rows = (int64_t)c.B * c.H * c.Lq;
            for (int64_t bid = 0; bid < (rows + 3) / 4; bid++) {
                emu::block_x = (unsigned)bid;
                emu::run_block([&] { combine_kernel<T>(p); });
            }
        }
        return;
    }
    {
        const int64_t rows = (int64_t)c.B * c.H * c.Lq;
        for (int64_t bid = 0; bid < (rows + 3) / 4; bid++) {
            emu::block_x = (unsigned)bid;
            emu::run_block([&] { simple_kernel<T>(p); });
        }
    }
}

template <class T> bool run(const Case& c, bool flash, double tol) {
    const int group = c.H / c.Hkv;
    Buf<T> q(c.B, c.Lq, c.H, c.D, 8), k(c.B, c.kv, c.Hkv, c.D, 8), v(c.B, c.kv, c.Hkv, c.D, 16), out(c.B, c.Lq, c.H, c.D, 8);
    std::vector<int32_t> seqlens(c.B);
    std::vector<int> kv_len(c.B);
    for (int b = 0; b < c.B; b++) {
        seqlens[b] = c.kvcache ? (int)(rng() % (c.kv - c.new_len + 1)) : 0;
        if (b == 0 && c.kvcache) seqlens[b] = c.kv - c.new_len; // one full cache
        kv_len[b] = c.kvcache ? seqlens[b] + c.new_len : c.kv;
    }
    for (int b = 0; b < c.B; b++)
        for (int i = 0; i < c.Lq; i++)
            for (int h = 0; h < c.H; h++)
                for (int d = 0; d < c.D; d++) q.at(b, i, h, d) = from_float<T>(uni() * 2);
    for (int b = 0; b < c.B; b++)
        for (int j = 0; j < kv_len[b]; j++) // rows past kv_len stay NaN: they must never be used
            for (int h = 0; h < c.Hkv; h++)
                for (int d = 0; d < c.D; d++) {
                    k.at(b, j, h, d) = from_float<T>(uni() * 2);
                    v.at(b, j, h, d) = from_float<T>(uni());
                }
    std::vector<float> slopes(c.H);
    for (int h = 0; h < c.H; h++) slopes[h] = c.alibi ? powf(2.0f, -8.0f * (h + 1) / c.H) : 0;
    const int64_t lse_s1 = c.Lq + 1, lse_s0 = (int64_t)c.H * lse_s1 + 3;
    std::vector<float> lse((size_t)(c.B * lse_s0 + 8), NAN);

    Params p{};
    p.q = q.data.data(); p.k = k.data.data(); p.v = v.data.data(); p.out = out.data.data(); p.lse = lse.data();
    p.q_sb = q.s0, p.q_sl = q.s1, p.q_sh = q.s2;
    p.k_sb = k.s0, p.k_sl = k.s1, p.k_sh = k.s2;
    p.v_sb = v.s0, p.v_sl = v.s1, p.v_sh = v.s2;
    p.o_sb = out.s0, p.o_sl = out.s1, p.o_sh = out.s2;
    p.lse_sb = lse_s0, p.lse_sh = lse_s1, p.lse_sl = 1;
    p.alibi = c.alibi ? slopes.data() : nullptr; p.alibi_stride = 1;
    p.seqlens = c.kvcache ? seqlens.data() : nullptr; p.seqlens_stride = 1; p.kv_add = c.new_len;
    p.batch = c.B, p.q_len = c.Lq, p.kv_len = c.kv, p.heads = c.H, p.kv_heads = c.Hkv, p.group = group, p.head_dim = c.D;
    const float scale = c.scale > 0 ? c.scale : 1.0f / sqrtf((float)c.D);
    p.scale_log2 = scale * kLog2e;
    p.softcap = c.softcap > 0;
    p.softcap_in = p.softcap ? scale / c.softcap : 0;
    p.softcap_out = p.softcap ? c.softcap * kLog2e : 0;
    p.window_left = c.wl;
    p.window_right = c.causal ? 0 : c.wr;
    p.num_splits = flash ? c.splits : 1;
    std::vector<float> o_part, lse_part;
    if (p.num_splits > 1) {
        o_part.assign((size_t)p.num_splits * c.B * c.H * c.Lq * c.D, NAN);
        lse_part.assign((size_t)p.num_splits * c.B * c.H * c.Lq, NAN);
        p.o_part = o_part.data(); p.lse_part = lse_part.data();
    }
    switch (c.D) {
    case 64: launch<T, 64>(c, p, flash); break;
    case 128: launch<T, 128>(c, p, flash); break;
    case 256: launch<T, 256>(c, p, flash); break;
    default: if (flash) { fprintf(stderr, "bad D\n"); exit(1); } launch<T, 64>(c, p, false); break;
    }

    // Reference in double from the stored (rounded) inputs.
    double err2 = 0, ref2 = 0, max_abs = 0, lse_err = 0;
    int bad = 0;
    for (int b = 0; b < c.B; b++)
        for (int h = 0; h < c.H; h++)
            for (int i = 0; i < c.Lq; i++) {
                const int kvh = h / group, L = kv_len[b];
                const long long diag = (long long)i + L - c.Lq;
                long long lo = c.wl >= 0 ? std::max(0LL, diag - c.wl) : 0;
                long long wr = c.causal ? 0 : c.wr;
                long long hi = wr >= 0 ? std::min((long long)L - 1, diag + wr) : L - 1;
                std::vector<double> s;
                double mx = -INFINITY;
                for (long long j = lo; j <= hi; j++) {
                    double dot = 0;
                    for (int d = 0; d < c.D; d++) dot += (double)to_float(q.at(b, i, h, d)) * to_float(k.at(b, j, kvh, d));
                    double x = scale * dot;
                    if (c.softcap > 0) x = c.softcap * tanh(x / c.softcap);
                    x -= (double)slopes[h] * (double)llabs(diag - j);
                    s.push_back(x);
                    mx = std::max(mx, x);
                }
                double sum = 0;
                for (double& x : s) { x = exp(x - mx); sum += x; }
                for (int d = 0; d < c.D; d++) {
                    double ref = 0;
                    for (long long j = lo; j <= hi; j++) ref += s[j - lo] * to_float(v.at(b, j, kvh, d));
                    ref = sum > 0 ? ref / sum : 0;
                    double got = to_float(out.at(b, i, h, d));
                    if (!std::isfinite(got)) { if (bad++ < 5) printf("  non-finite out b%d h%d i%d d%d\n", b, h, i, d); continue; }
                    if (sum == 0 && got != 0) { if (bad++ < 5) printf("  masked row not zero b%d h%d i%d\n", b, h, i); }
                    err2 += (got - ref) * (got - ref); ref2 += ref * ref; max_abs = std::max(max_abs, fabs(got - ref));
                }
                double ref_lse = sum > 0 ? mx + log(sum) : -INFINITY;
                double got_lse = lse[b * lse_s0 + h * lse_s1 + i];
                if (sum == 0) { if (!(std::isinf(got_lse) && got_lse < 0)) { if (bad++ < 5) printf("  lse of masked row %g\n", got_lse); } }
                else if (!std::isfinite(got_lse)) { if (bad++ < 5) printf("  lse non-finite b%d h%d i%d\n", b, h, i); }
                else { if (fabs(got_lse - ref_lse) > 0.1 && getenv("DBG")) printf("  lse b%d h%d i%d got %g ref %g L %d\n", b, h, i, got_lse, ref_lse, L); lse_err = std::max(lse_err, fabs(got_lse - ref_lse)); }
            }
    // Padding between heads/rows of out must be untouched (NaN).
    for (int b = 0; b < c.B; b++)
        for (int i = 0; i < c.Lq; i++)
            for (int h = 0; h < c.H; h++)
                for (int d = c.D; d < out.s2; d++)
                    if (!std::isnan(to_float(out.at(b, i, h, d)))) { if (bad++ < 5) printf("  padding written\n"); }
    double rel = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
    bool ok = bad == 0 && rel <= tol && lse_err <= 50 * tol;
    printf("%s %-44s rel_l2 %.2e max_abs %.2e lse_err %.2e bad %d (%s, splits %d)\n", ok ? "PASS" : "FAIL", c.name.c_str(), rel,
           max_abs, lse_err, bad, flash ? "flash" : "simple", p.num_splits);
    return ok;
}

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
        {"decode splits > tiles", 1, 1, 4, 2, 64, 70, false, -1, -1, 0, false, false, 0, 6},
    };
    if (only && std::string(only) == "fuzz") {
        const int n = argc > 3 ? atoi(argv[3]) : 100;
        cases.clear();
        for (int x = 0; x < n; x++) {
            Case c;
            c.name = "fuzz" + std::to_string(x);
            const int dims[3] = {64, 128, 256};
            c.D = dims[rng() % 3];
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
            snprintf(buf, sizeof buf, " B%d Lq%d H%d/%d D%d kv%d c%d w%d,%d cap%g al%d kvc%d new%d sp%d", c.B, c.Lq, c.H, c.Hkv, c.D, c.kv,
                     c.causal, c.wl, c.wr, c.softcap, c.alibi, c.kvcache, c.new_len, c.splits);
            c.name += buf;
            cases.push_back(c);
        }
        only = nullptr;
    }
    for (auto& c : cases) {
        if (only && c.name.find(only) == std::string::npos) continue;
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
        if (only && c.name.find(only) == std::string::npos) continue;
        fails += !run<float>(c, false, 2e-6);
    }
    {
        Case c{"simple f16 d96 fallback", 1, 9, 2, 2, 96, 40, true};
        if (!only || c.name.find(only) != std::string::npos) fails += !run<__half>(c, false, 6e-3);
    }
    printf("%d failed\n", fails);
    return fails != 0;
}
