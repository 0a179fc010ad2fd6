// The PTX instructions of the tensor-core kernels (native/src/cuda/attention_ptx.cuh), emulated from the
// PTX ISA's fragment layouts: cp.async (16 bytes, zero-fill, commit/wait groups), ldmatrix .x4 (plain and
// .trans), mma.sync m16n8k16 with f32 accumulators (f16, bf16). Included by emu_runtime.h, so before any
// kernel source: it defines attention_ptx.cuh's include guard, and these functions stand in for that
// header's wrappers (the one header of native/src/cuda the emulator replaces rather than compiles: the rest
// is inline PTX). Shared addresses are offsets into emu::dynamic_shared; 16-byte alignment of every copy and
// every ldmatrix row is asserted.
#pragma once
#define LLMK_CUDA_ATTENTION_PTX_CUH

namespace emu {

inline bool late_copies = false; /* cp.async data lands at cp.async.wait_group (true) or at issue (false) */

struct Copy {
    uint32_t dst;
    const void* src;
    bool pred;
};
struct ThreadCopies {
    std::vector<std::vector<Copy>> groups;
    std::vector<Copy> open;
};
inline ThreadCopies copies[kMaxThreads];

/* A warp's operands, exchanged at the rendezvous of a warp-wide instruction. */
struct WarpSlots {
    uint32_t a[32][4];
    uint32_t b[32][2];
    float c[32][4];
    uint32_t addr[32];
};
inline WarpSlots warp_slots[kMaxThreads / 32];

inline void fail(const char* what) {
    fprintf(stderr, "emu: %s (block %u, thread %d)\n", what, block_idx.x, current);
    exit(4);
}

inline const bool ptx_registered = [] {
    before_block = [] {
        for (int i = 0; i < threads; i++)
            copies[i] = ThreadCopies{};
    };
    return true;
}();

inline void do_copy(const Copy& c) {
    if (c.dst & 15)
        fail("misaligned cp.async destination");
    if (((uintptr_t)c.src & 15) && c.pred)
        fail("misaligned cp.async source");
    if ((size_t)c.dst + 16 > dynamic_bytes)
        fail("cp.async beyond the dynamic shared memory of the launch");
    if (c.pred)
        memcpy(dynamic_shared + c.dst, c.src, 16);
    else
        memset(dynamic_shared + c.dst, 0, 16);
}

inline float to_float(__half h) { return __half2float(h); }
inline float to_float(__nv_bfloat16 h) { return __bfloat162float(h); }

template <class T> inline float half_bits(uint16_t b) {
    T h;
    memcpy(&h, &b, 2);
    return to_float(h);
}

} // namespace emu

namespace llmk_cu {
namespace attn {

inline uint32_t smem_addr(const void* p) {
    const auto off = static_cast<const unsigned char*>(p) - emu::dynamic_shared;
    if (off < 0 || (size_t)off >= emu::dynamic_bytes)
        emu::fail("not an address in the launch's dynamic shared memory");
    return (uint32_t)off;
}

inline void cp_async16(uint32_t dst, const void* src, bool pred) {
    emu::Copy c{dst, src, pred};
    if (emu::late_copies)
        emu::copies[emu::current].open.push_back(c);
    else
        emu::do_copy(c);
}

inline void cp_async_commit() {
    auto& t = emu::copies[emu::current];
    t.groups.push_back(std::move(t.open));
    t.open.clear();
}

template <int N> inline void cp_async_wait() {
    auto& t = emu::copies[emu::current];
    while ((int)t.groups.size() > N) {
        for (auto& c : t.groups.front())
            emu::do_copy(c);
        t.groups.erase(t.groups.begin());
    }
}

/* Matrix m of the four comes from the 8 row addresses of lanes 8m..8m+7; lane l receives row l / 4,
 * elements 2 (l % 4) and 2 (l % 4) + 1 (transposed: column l / 4 of rows 2 (l % 4) and 2 (l % 4) + 1). */
inline void ldsm_impl(uint32_t (&r)[4], uint32_t addr, bool trans) {
    const int lane = emu::current % 32;
    emu::WarpSlots& ws = emu::warp_slots[emu::current / 32];
    ws.addr[lane] = addr;
    emu::warp_sync();
    for (int m = 0; m < 4; m++) {
        uint16_t e[2];
        for (int x = 0; x < 2; x++) {
            int row, col;
            if (!trans) {
                row = lane / 4;
                col = (lane % 4) * 2 + x;
            } else {
                row = (lane % 4) * 2 + x;
                col = lane / 4;
            }
            const uint32_t a = ws.addr[m * 8 + row];
            if (a & 15)
                emu::fail("misaligned ldmatrix row");
            if ((size_t)a + 16 > emu::dynamic_bytes)
                emu::fail("ldmatrix row beyond the dynamic shared memory of the launch");
            memcpy(&e[x], emu::dynamic_shared + a + col * 2, 2);
        }
        r[m] = (uint32_t)e[0] | ((uint32_t)e[1] << 16);
    }
    emu::warp_sync();
}

inline void ldsm_x4(uint32_t (&r)[4], uint32_t addr) { ldsm_impl(r, addr, false); }
inline void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) { ldsm_impl(r, addr, true); }

/* c += a . b, 16x16 (row) by 16x8 (col), the fragments of the warp's 32 lanes as the PTX ISA lays them out;
 * products summed in double, rounded once to f32. */
template <class T> void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    const int lane = emu::current % 32;
    emu::WarpSlots& ws = emu::warp_slots[emu::current / 32];
    for (int x = 0; x < 4; x++) {
        ws.a[lane][x] = a[x];
        ws.c[lane][x] = c[x];
    }
    ws.b[lane][0] = b0;
    ws.b[lane][1] = b1;
    emu::warp_sync();
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        const int g = l / 4, t = l % 4;
        for (int x = 0; x < 4; x++) {
            const int row = g + (x & 1) * 8, col = 2 * t + (x >> 1) * 8;
            A[row][col] = emu::half_bits<T>(ws.a[l][x] & 0xffff);
            A[row][col + 1] = emu::half_bits<T>(ws.a[l][x] >> 16);
        }
        for (int x = 0; x < 2; x++) {
            B[2 * t + 8 * x][g] = emu::half_bits<T>(ws.b[l][x] & 0xffff);
            B[2 * t + 8 * x + 1][g] = emu::half_bits<T>(ws.b[l][x] >> 16);
        }
        C[g][2 * t] = ws.c[l][0];
        C[g][2 * t + 1] = ws.c[l][1];
        C[g + 8][2 * t] = ws.c[l][2];
        C[g + 8][2 * t + 1] = ws.c[l][3];
    }
    emu::warp_sync();
    const int g = lane / 4, t = lane % 4;
    auto d = [&](int row, int col) {
        double s = C[row][col];
        for (int k = 0; k < 16; k++)
            s += (double)A[row][k] * B[k][col];
        return (float)s;
    };
    c[0] = d(g, 2 * t);
    c[1] = d(g, 2 * t + 1);
    c[2] = d(g + 8, 2 * t);
    c[3] = d(g + 8, 2 * t + 1);
}

/* Two floats rounded to T, lo in the low half. */
template <class T> uint32_t pack2(float lo, float hi);
template <> inline uint32_t pack2<__half>(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    uint32_t r;
    memcpy(&r, &h, 4);
    return r;
}
template <> inline uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t r;
    memcpy(&r, &h, 4);
    return r;
}

} // namespace attn
} // namespace llmk_cu
