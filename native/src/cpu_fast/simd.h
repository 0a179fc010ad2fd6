/* Vectors for one flavour of the fast CPU kernels. A flavour's translation unit defines LLMK_FAST_AVX512,
 * LLMK_FAST_AVX2 or neither (portable) and is compiled with that ISA's flags; everything below is GNU C
 * vectors, so one source serves every flavour and the compiler picks the instructions. */
#ifndef LLMK_FAST_SIMD_H
#define LLMK_FAST_SIMD_H

#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(LLMK_FAST_AVX512) || defined(LLMK_FAST_AVX2)
#include <immintrin.h>
#endif

#if defined(LLMK_FAST_AVX512)
#define VL 16 /* f32 lanes of a vector */
#else
#define VL 8
#endif

#define LLMK_INLINE static inline __attribute__((always_inline))

typedef float vfloat __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(VL * sizeof(int32_t))));
typedef uint32_t vuint __attribute__((vector_size(VL * sizeof(uint32_t))));
typedef uint16_t vhalf __attribute__((vector_size(VL * sizeof(uint16_t))));

LLMK_INLINE vfloat vsplat(float x) { return (vfloat){0} + x; }

LLMK_INLINE vfloat vload(const float* p) {
    vfloat v;
    memcpy(&v, p, sizeof v);
    return v;
}

LLMK_INLINE void vstore(float* p, vfloat v) { memcpy(p, &v, sizeof v); }

/* bf16 is the upper half of an f32: widen and shift (with intrinsics where GCC 12 would widen the GNU
 * vector in 128-bit halves). */
LLMK_INLINE vfloat vload_bf16(const uint16_t* p) {
#if defined(LLMK_FAST_AVX512)
    return (vfloat)_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16);
#elif defined(LLMK_FAST_AVX2)
    return (vfloat)_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16);
#else
    vhalf h;
    memcpy(&h, p, sizeof h);
    return (vfloat)(__builtin_convertvector(h, vuint) << 16);
#endif
}

LLMK_INLINE vfloat vload_f16(const uint16_t* p) {
#if defined(LLMK_FAST_AVX512)
    return (vfloat)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p));
#elif defined(LLMK_FAST_AVX2)
    return (vfloat)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p));
#else
    float lanes[VL];
    for (int i = 0; i < VL; i++)
        lanes[i] = llmk_f16_to_float(p[i]);
    return vload(lanes);
#endif
}

/* Lanes [k, k + VL) of a floating row of dtype (a compile-time constant where it is inlined). */
LLMK_INLINE vfloat vload_as(int32_t dtype, const void* row, int64_t k) {
    switch (dtype) {
    case LLMK_DTYPE_F32: return vload((const float*)row + k);
    case LLMK_DTYPE_BF16: return vload_bf16((const uint16_t*)row + k);
    default: return vload_f16((const uint16_t*)row + k);
    }
}

/* The sum of the lanes, always by the same pairwise tree. */
LLMK_INLINE float vsum(vfloat v) {
    float lanes[VL];
    memcpy(lanes, &v, sizeof lanes);
    for (int width = VL / 2; width > 0; width /= 2)
        for (int i = 0; i < width; i++)
            lanes[i] += lanes[i + width];
    return lanes[0];
}

LLMK_INLINE float vmax_lanes(vfloat v) {
    float lanes[VL];
    memcpy(lanes, &v, sizeof lanes);
    float m = lanes[0];
    for (int i = 1; i < VL; i++)
        m = lanes[i] > m ? lanes[i] : m;
    return m;
}

/* exp(x) lane by lane, within 2 ulp of expf over [-87.3, 88.3]; 0 below (so exp(-inf) = 0), +inf above.
 * Cody-Waite reduction x = n ln2 + r, then a degree-6 polynomial for exp(r) (the
 * Cephes coefficients) and 2^n from the exponent bits. */
LLMK_INLINE vfloat vexp(vfloat x) {
    const vint underflow = x < -87.33654f;
    x = (vfloat)(((vint)x & ~underflow) | ((vint)vsplat(-87.33654f) & underflow));
    const vint overflow = x > 88.3762626647949f;
    x = (vfloat)(((vint)x & ~overflow) | ((vint)vsplat(88.3762626647949f) & overflow));
    /* n = round(x / ln2): adding 1.5 * 2^23 rounds to an integer in the low mantissa bits. */
    const vfloat shifter = vsplat(12582912.0f);
    vfloat n = x * 1.44269504088896341f + shifter;
    n = n - shifter;
    vfloat r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vfloat p = vsplat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    /* n in [-126, 127] here, so 2^n is a normal number. */
    const vint bits = (__builtin_convertvector(n, vint) + 127) << 23;
    const vint result = (vint)(p * (vfloat)bits) & ~underflow;
    return (vfloat)((result & ~overflow) | ((vint)vsplat(INFINITY) & overflow));
}

#endif /* LLMK_FAST_SIMD_H */
