/* The fast kernels in portable GNU C vectors: any CPU the compiler targets. */
#include "kernels.h"

LLMK_FAST_TABLE(llmk_cpu_portable_kernels)
