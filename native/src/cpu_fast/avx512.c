/* The fast kernels for x86-64 with AVX-512 F, BW and VL (compiled with -mavx512f -mavx512bw -mavx512vl
 * -mfma -mf16c). */
#if defined(__x86_64__) || defined(_M_X64)
#define LLMK_FAST_AVX512
#include "kernels.h"

LLMK_FAST_TABLE(llmk_cpu_avx512_kernels)
#endif
