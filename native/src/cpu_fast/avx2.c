/* The fast kernels for x86-64 with AVX2, FMA and F16C (compiled with -mavx2 -mfma -mf16c). */
#if defined(__x86_64__) || defined(_M_X64)
#define LLMK_FAST_AVX2
#include "kernels.h"

LLMK_FAST_TABLE(llmk_cpu_avx2_kernels)
#endif
