// The host emulation of the CUDA execution model that both emulators use (tests/native/cuda_emu: the
// backend's kernels through the bench's checks; tests/native/attention_emu: the attention kernels). Every
// thread of a block is a fiber (ucontext) scheduled round-robin, with real barriers (__syncthreads,
// __syncwarp), warp shuffles, one block at a time. Shared memory, generically: a kernel's `__shared__`
// variables become function statics (one block runs at a time), and preprocess.py turns every
// `extern __shared__ T name[]` into a pointer to emu::dynamic_shared, whose size is the launch's and whose
// bytes start as garbage. The PTX instructions the tensor-core kernels use are in emu_ptx.h. preprocess.py
// rewrites each kernel<<<grid, block, shared, stream>>>(args) into emu::launch(...) and puts this header
// first in every preprocessed file; fake_backend.cpp is the host side (context, runtime, cuBLAS).
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __shared__
#define __shared__ static /* one block runs at a time: a function static is the block's shared memory */
#undef __forceinline__
#define __forceinline__ inline

namespace emu {

constexpr int kMaxThreads = 1024;
constexpr size_t kStack = 256 * 1024;
constexpr size_t kDynamicShared = 256 * 1024;
constexpr size_t kDefaultDynamicShared = 48 * 1024; /* without cudaFuncSetAttribute, as on the device */

struct Barrier {
    int count = 0;
    unsigned generation = 0;
};
struct Fiber {
    ucontext_t context;
    std::unique_ptr<char[]> stack; /* allocated once, untouched pages cost nothing */
    bool done = false;
};

inline ucontext_t scheduler;
inline Fiber fibers[kMaxThreads];
inline int current = 0, threads = 0;
inline dim3 grid_dim, block_dim, block_idx;
inline Barrier block_barrier, warp_barriers[kMaxThreads / 32];
inline uint64_t slots[kMaxThreads / 32][32];
inline bool progress = false;
alignas(256) inline unsigned char dynamic_shared[kDynamicShared];
inline size_t dynamic_bytes = 0;
inline long long launches = 0;
inline std::vector<std::string> launched;              /* kernel names in launch order; tests may clear it */
inline std::map<const void*, int> max_dynamic_shared;  /* cudaFuncSetAttribute(MaxDynamicSharedMemorySize) */
inline cudaError_t last_error = cudaSuccess;           /* what cudaGetLastError returns (fake_backend.cpp) */
inline void (*before_block)() = nullptr;                /* run before every block (emu_ptx.h: cp.async state) */

inline void yield() { swapcontext(&fibers[current].context, &scheduler); }

inline void wait(Barrier& b, int n) {
    unsigned g = b.generation;
    if (++b.count == n) {
        b.count = 0;
        b.generation++;
        progress = true;
    } else {
        while (b.generation == g)
            yield();
    }
}

inline int warp_size_of(int warp) {
    int first = warp * 32;
    return threads - first < 32 ? threads - first : 32;
}
inline void warp_sync() { wait(warp_barriers[current / 32], warp_size_of(current / 32)); }

template <class T> T exchange(T v, int source_lane) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    const int w = current / 32, l = current % 32;
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    slots[w][l] = bits;
    warp_sync();
    T r;
    uint64_t got = slots[w][source_lane & 31];
    memcpy(&r, &got, sizeof(T));
    warp_sync();
    return r;
}

inline std::function<void()>* body;
inline void trampoline() {
    (*body)();
    fibers[current].done = true;
    progress = true;
}

inline void run_block(std::function<void()>& kernel) {
    body = &kernel;
    block_barrier = Barrier{};
    for (auto& b : warp_barriers)
        b = Barrier{};
    /* Dynamic shared memory starts as garbage (NaN bytes), as on the device. */
    memset(dynamic_shared, 0xff, dynamic_bytes);
    if (before_block)
        before_block();
    for (int i = 0; i < threads; i++) {
        Fiber& f = fibers[i];
        if (!f.stack)
            f.stack.reset(new char[kStack]);
        f.done = false;
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.get();
        f.context.uc_stack.ss_size = kStack;
        f.context.uc_link = &scheduler;
        makecontext(&f.context, trampoline, 0);
    }
    for (;;) {
        bool all = true;
        progress = false;
        for (int i = 0; i < threads; i++) {
            if (fibers[i].done)
                continue;
            all = false;
            current = i;
            swapcontext(&scheduler, &fibers[i].context);
        }
        if (all)
            break;
        if (!progress) {
            fprintf(stderr, "emu: deadlock (a barrier not reached by every thread) in block (%u, %u)\n", block_idx.x,
                    block_idx.y);
            exit(3);
        }
    }
}

/* What name<<<grid, block, shared>>>(args) becomes (entry: the kernel, for its attributes). Checks the launch
 * limits the device would, including dynamic shared memory above 48 KiB without the attribute that allows it. */
inline void launch(dim3 grid, dim3 block, size_t shared, std::function<void()> kernel, const char* name,
                   const void* entry) {
    const long long n = (long long)block.x * block.y * block.z;
    if (n < 1 || n > kMaxThreads || block.z != 1 || grid.z != 1 || grid.y > 65535 || grid.x < 1 || grid.y < 1) {
        fprintf(stderr, "emu: invalid launch of %s: grid (%u, %u, %u), block (%u, %u, %u)\n", name, grid.x, grid.y,
                grid.z, block.x, block.y, block.z);
        exit(4);
    }
    auto allowed = max_dynamic_shared.find(entry);
    const size_t limit = allowed != max_dynamic_shared.end() && (size_t)allowed->second > kDefaultDynamicShared
                             ? (size_t)allowed->second
                             : kDefaultDynamicShared;
    if (shared > kDynamicShared || shared > limit) {
        fprintf(stderr, "emu: %s launched with %zu bytes of dynamic shared memory; its attribute allows %zu\n", name,
                shared, limit);
        exit(4);
    }
    launches++;
    launched.push_back(name);
    grid_dim = grid;
    block_dim = block;
    threads = (int)n;
    dynamic_bytes = shared;
    for (unsigned y = 0; y < grid.y; y++)
        for (unsigned x = 0; x < grid.x; x++) {
            block_idx = dim3(x, y, 1);
            run_block(kernel);
        }
}

inline uint3 thread_idx() {
    return uint3{(unsigned)current % block_dim.x, (unsigned)current / block_dim.x, 0};
}

} // namespace emu

#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::block_idx)
#define blockDim (::emu::block_dim)
#define gridDim (::emu::grid_dim)

inline void __syncthreads() { emu::wait(emu::block_barrier, emu::threads); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp_sync(); }
template <class T> inline T __shfl_xor_sync(unsigned, T v, int mask) { return emu::exchange(v, (emu::current % 32) ^ mask); }
template <class T> inline T __shfl_sync(unsigned, T v, int lane) { return emu::exchange(v, lane); }
template <class T> inline T __shfl_up_sync(unsigned, T v, unsigned delta) {
    const int lane = emu::current % 32;
    T other = emu::exchange(v, lane >= (int)delta ? lane - (int)delta : lane);
    return lane >= (int)delta ? other : v;
}
/* One OS thread: atomics are plain read-modify-writes. */
inline int atomicAdd(int* p, int v) {
    int old = *p;
    *p = old + v;
    return old;
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
    unsigned long long old = *p;
    if (v < old)
        *p = v;
    return old;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
/* cuda_runtime.h declares the typed overload for nvcc only. */
template <class T> inline cudaError_t cudaFuncSetAttribute(T* entry, enum cudaFuncAttribute attr, int value) {
    return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}

/* The emulated device: sm_80's instructions (emu_ptx.h), so the tensor-core kernels compile their bodies.
 * Defined after the CUDA headers, which must not see it. */
#define __CUDA_ARCH__ 800

#include "emu_ptx.h"
