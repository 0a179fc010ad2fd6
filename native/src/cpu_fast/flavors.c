/* Which CPU kernels a context gets: the flavours this build has, the features this CPU reports (cpuid, and
 * xgetbv for the register state the OS saves), and FAST resolved to the best of them. */
#include "internal.h"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define LLMK_X86 1
#include <cpuid.h>
#endif

extern const llmk_cpu_kernel_table llmk_cpu_portable_kernels;
#if LLMK_X86
extern const llmk_cpu_kernel_table llmk_cpu_avx2_kernels;
extern const llmk_cpu_kernel_table llmk_cpu_avx512_kernels;

/* The extended register state the OS enables (XCR0). */
static unsigned long long xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/* NULL when the CPU runs the flavour, else what it lacks. */
static const char* missing(int32_t kernels) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return "cpuid leaf 1 is not supported";
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!osxsave || !avx || (xcr0() & 0x6) != 0x6)
        return "no AVX (or the OS does not save the YMM registers)";
    if (!fma || !f16c)
        return "no FMA or no F16C";
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return "cpuid leaf 7 is not supported";
    if (!(b & (1u << 5)))
        return "no AVX2";
    if (kernels == LLMK_CPU_KERNELS_AVX2)
        return NULL;
    const bool f = b & (1u << 16), bw = b & (1u << 30), vl = b & (1u << 31);
    if (!f || !bw || !vl)
        return "no AVX-512 F, BW and VL";
    if ((xcr0() & 0xe6) != 0xe6)
        return "the OS does not save the AVX-512 registers";
    return NULL;
}
#endif

const char* llmk_cpu_kernels_name(int32_t kernels) {
    switch (kernels) {
    case LLMK_CPU_KERNELS_REFERENCE: return "reference";
    case LLMK_CPU_KERNELS_FAST: return "fast";
    case LLMK_CPU_KERNELS_PORTABLE: return "portable";
    case LLMK_CPU_KERNELS_AVX2: return "avx2";
    case LLMK_CPU_KERNELS_AVX512: return "avx512";
    default: return "unknown";
    }
}

llmk_status llmk_cpu_kernels_table(const char* fn, int32_t kernels, const llmk_cpu_kernel_table** out_table,
                                   int32_t* out_resolved) {
    if (kernels < 0 || kernels >= LLMK_CPU_KERNELS_COUNT)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: kernels = %d is not an llmk_cpu_kernels value", fn, (int)kernels);
    if (kernels == LLMK_CPU_KERNELS_FAST) {
#if LLMK_X86
        kernels = !missing(LLMK_CPU_KERNELS_AVX512) ? LLMK_CPU_KERNELS_AVX512
                  : !missing(LLMK_CPU_KERNELS_AVX2) ? LLMK_CPU_KERNELS_AVX2
                                                    : LLMK_CPU_KERNELS_PORTABLE;
#else
        kernels = LLMK_CPU_KERNELS_PORTABLE;
#endif
    }
    switch (kernels) {
    case LLMK_CPU_KERNELS_REFERENCE: *out_table = &llmk_cpu_reference_kernels; break;
    case LLMK_CPU_KERNELS_PORTABLE: *out_table = &llmk_cpu_portable_kernels; break;
    default: {
#if LLMK_X86
        const char* why = missing(kernels);
        if (why)
            return llmk_fail(LLMK_STATUS_UNAVAILABLE, "%s: this CPU cannot run the %s kernels: %s", fn,
                             llmk_cpu_kernels_name(kernels), why);
        *out_table = kernels == LLMK_CPU_KERNELS_AVX2 ? &llmk_cpu_avx2_kernels : &llmk_cpu_avx512_kernels;
#else
        return llmk_fail(LLMK_STATUS_UNAVAILABLE,
                         "%s: the %s kernels exist only in x86-64 builds of libllmk", fn,
                         llmk_cpu_kernels_name(kernels));
#endif
    }
    }
    *out_resolved = kernels;
    return LLMK_STATUS_OK;
}

llmk_status llmk_cpu_kernels_available(int32_t kernels) {
    const llmk_cpu_kernel_table* table;
    int32_t resolved;
    return llmk_cpu_kernels_table("llmk_cpu_kernels_available", kernels, &table, &resolved);
}
