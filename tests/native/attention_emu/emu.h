// Host emulation of a CUDA thread block (128 threads as ucontext fibers) for the attention kernels:
// barriers, warp shuffles, ldmatrix, mma.sync m16n8k16 and cp.async per the PTX ISA fragment layouts.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <ucontext.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <functional>

#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __shared__
#define __shared__
#undef __forceinline__
#define __forceinline__ inline

namespace llmk_cu { namespace attn {
alignas(128) unsigned char smem[256 * 1024];   // the kernels' extern __shared__ arrays
alignas(128) float simple_smem[64 * 1024];
}}
namespace emu {
inline unsigned char* const smem_base = llmk_cu::attn::smem;
constexpr int kThreads = 128;
struct Barrier { int count = 0; unsigned gen = 0; };
struct Fiber { ucontext_t ctx; std::vector<char> stack; bool done = false; };
inline ucontext_t sched;
inline Fiber fibers[kThreads];
inline int current = 0;
inline unsigned block_x = 0, grid_x = 1;
inline Barrier block_bar, warp_bar[4];
inline uint64_t slots[4][32];
inline bool progress = false;
inline bool late_copies = false; // cp.async data lands at wait (true) or at issue (false)

struct Copy { uint32_t dst; const void* src; bool pred; };
struct ThreadCopies { std::vector<std::vector<Copy>> groups; std::vector<Copy> open; };
inline ThreadCopies copies[kThreads];

inline void yield() { swapcontext(&fibers[current].ctx, &sched); }
inline void wait(Barrier& b, int n) {
    unsigned g = b.gen;
    if (++b.count == n) { b.count = 0; b.gen++; progress = true; }
    else while (b.gen == g) yield();
}
inline void warp_sync() { wait(warp_bar[current / 32], 32); }
template <class T> T exchange(T v, int src_lane) {
    static_assert(sizeof(T) <= 8, "");
    int w = current / 32, l = current % 32;
    uint64_t bits = 0; memcpy(&bits, &v, sizeof(T)); slots[w][l] = bits;
    warp_sync();
    T r; uint64_t got = slots[w][src_lane & 31]; memcpy(&r, &got, sizeof(T));
    warp_sync();
    return r;
}
struct Idx { unsigned x, y, z; };
inline Idx tidx() { return {(unsigned)current, 0, 0}; }
inline Idx bidx() { return {block_x, 0, 0}; }

inline std::function<void()>* body_fn;
inline void trampoline() { (*body_fn)(); fibers[current].done = true; progress = true; }

// Runs body for every thread of one block.
inline void run_block(std::function<void()> body) {
    body_fn = &body;
    memset(llmk_cu::attn::smem, 0xff, sizeof llmk_cu::attn::smem); memset(llmk_cu::attn::simple_smem, 0xff, sizeof llmk_cu::attn::simple_smem); // shared memory starts as garbage (NaN bytes)
    block_bar = Barrier{};
    for (auto& b : warp_bar) b = Barrier{};
    for (int i = 0; i < kThreads; i++) {
        Fiber& f = fibers[i];
        f.stack.resize(512 * 1024);
        f.done = false;
        copies[i] = ThreadCopies{};
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = &sched;
        makecontext(&f.ctx, trampoline, 0);
    }
    for (;;) {
        bool all = true;
        progress = false;
        for (int i = 0; i < kThreads; i++) {
            if (fibers[i].done) continue;
            all = false;
            current = i;
            swapcontext(&sched, &fibers[i].ctx);
        }
        if (all) break;
        if (!progress) { fprintf(stderr, "emu: deadlock in block %u\n", block_x); exit(3); }
    }
}
} // namespace emu

#define threadIdx (::emu::tidx())
#define blockIdx (::emu::bidx())
inline void __syncthreads() { emu::wait(emu::block_bar, emu::kThreads); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp_sync(); }
template <class T> inline T __shfl_xor_sync(unsigned, T v, int o) { return emu::exchange(v, (emu::current % 32) ^ o); }
template <class T> inline T __shfl_sync(unsigned, T v, int src) { return emu::exchange(v, src); }

// ---- what common.cuh provides ----
#define LLMK_CUDA_COMMON_CUH
#include "internal.h"
#include <functional>
struct llmk_cuda_state;
namespace llmk_cu {
inline float to_float(float x) { return x; }
inline float to_float(__half x) { return __half2float(x); }
inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T> T from_float(float x);
template <> inline float from_float<float>(float x) { return x; }
template <> inline __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> inline __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <class T> struct alignas(16) Vec { static constexpr int N = 16 / (int)sizeof(T); T v[N]; };
template <class T> inline void store_vec(T* p, const Vec<T>& r) {
    if ((uintptr_t)p & 15) { fprintf(stderr, "emu: misaligned 16-byte store\n"); exit(4); }
    memcpy(p, &r, 16);
}
inline float warp_sum(float v) { for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }
inline float warp_max(float v) { for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o)); return v; }
}

// ---- what attention_ptx.cuh provides ----
#define LLMK_CUDA_ATTENTION_PTX_CUH
namespace llmk_cu { namespace attn {
inline uint32_t smem_addr(const void* p) {
    auto off = (const unsigned char*)p - emu::smem_base;
    if (off < 0 || off >= (long)sizeof llmk_cu::attn::smem) { fprintf(stderr, "emu: not a shared address\n"); exit(4); }
    return (uint32_t)off;
}
inline void do_copy(const emu::Copy& c) {
    if (c.dst & 15) { fprintf(stderr, "emu: misaligned cp.async dst\n"); exit(4); }
    if (((uintptr_t)c.src & 15) && c.pred) { fprintf(stderr, "emu: misaligned cp.async src\n"); exit(4); }
    if (c.pred) memcpy(emu::smem_base + c.dst, c.src, 16); else memset(emu::smem_base + c.dst, 0, 16);
}
inline void cp_async16(uint32_t dst, const void* src, bool pred) {
    emu::Copy c{dst, src, pred};
    if (emu::late_copies) emu::copies[emu::current].open.push_back(c); else do_copy(c);
}
inline void cp_async_commit() {
    auto& t = emu::copies[emu::current];
    t.groups.push_back(std::move(t.open)); t.open.clear();
}
template <int N> inline void cp_async_wait() {
    auto& t = emu::copies[emu::current];
    while ((int)t.groups.size() > N) { for (auto& c : t.groups.front()) do_copy(c); t.groups.erase(t.groups.begin()); }
}
struct WarpSlots { uint32_t a[32][4]; uint32_t b[32][2]; float c[32][4]; uint32_t addr[32]; };
inline WarpSlots wslots[4];
inline void ldsm_impl(uint32_t (&r)[4], uint32_t addr, bool trans) {
    int lane = emu::current % 32;
    WarpSlots& ws = wslots[emu::current / 32];
    ws.addr[lane] = addr;
    emu::warp_sync();
    for (int m = 0; m < 4; m++) {
        uint16_t e[2];
        for (int x = 0; x < 2; x++) {
            int row, col;
            if (!trans) { row = lane / 4; col = (lane % 4) * 2 + x; }
            else { row = (lane % 4) * 2 + x; col = lane / 4; }
            uint32_t a = ws.addr[m * 8 + row];
            if (a & 15) { fprintf(stderr, "emu: misaligned ldmatrix row\n"); exit(4); }
            memcpy(&e[x], emu::smem_base + a + col * 2, 2);
        }
        r[m] = (uint32_t)e[0] | ((uint32_t)e[1] << 16);
    }
    emu::warp_sync();
}
inline void ldsm_x4(uint32_t (&r)[4], uint32_t addr) { ldsm_impl(r, addr, false); }
inline void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) { ldsm_impl(r, addr, true); }
template <class T> inline float half_bits(uint16_t b) { T h; memcpy(&h, &b, 2); return to_float(h); }
template <class T> void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    int lane = emu::current % 32;
    WarpSlots& ws = wslots[emu::current / 32];
    for (int x = 0; x < 4; x++) { ws.a[lane][x] = a[x]; ws.c[lane][x] = c[x]; }
    ws.b[lane][0] = b0; ws.b[lane][1] = b1;
    emu::warp_sync();
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        int g = l / 4, t = l % 4;
        for (int x = 0; x < 4; x++) {
            int row = g + (x & 1) * 8, col = 2 * t + (x >> 1) * 8;
            A[row][col] = half_bits<T>(ws.a[l][x] & 0xffff);
            A[row][col + 1] = half_bits<T>(ws.a[l][x] >> 16);
        }
        for (int x = 0; x < 2; x++) {
            B[2 * t + 8 * x][g] = half_bits<T>(ws.b[l][x] & 0xffff);
            B[2 * t + 8 * x + 1][g] = half_bits<T>(ws.b[l][x] >> 16);
        }
        C[g][2 * t] = ws.c[l][0]; C[g][2 * t + 1] = ws.c[l][1]; C[g + 8][2 * t] = ws.c[l][2]; C[g + 8][2 * t + 1] = ws.c[l][3];
    }
    emu::warp_sync();
    int g = lane / 4, t = lane % 4;
    auto d = [&](int row, int col) { double s = C[row][col]; for (int k = 0; k < 16; k++) s += (double)A[row][k] * B[k][col]; return (float)s; };
    c[0] = d(g, 2 * t); c[1] = d(g, 2 * t + 1); c[2] = d(g + 8, 2 * t); c[3] = d(g + 8, 2 * t + 1);
}
template <class T> uint32_t pack2(float lo, float hi);
template <> inline uint32_t pack2<__half>(float lo, float hi) { __half2 h = __floats2half2_rn(lo, hi); uint32_t r; memcpy(&r, &h, 4); return r; }
template <> inline uint32_t pack2<__nv_bfloat16>(float lo, float hi) { __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi); uint32_t r; memcpy(&r, &h, 4); return r; }
}} // namespace llmk_cu::attn

