/* Host launcher of the tensor-core attention kernel, and the macro that instantiates it for a dtype
 * (attention_flash_f16.cu, attention_flash_bf16.cu: one file per dtype so they compile in parallel). */
#ifndef LLMK_CUDA_ATTENTION_FLASH_LAUNCH_CUH
#define LLMK_CUDA_ATTENTION_FLASH_LAUNCH_CUH

#include "attention_flash.cuh"

namespace llmk_cu {
namespace attn {

template <class T, int D>
llmk_status launch_flash(const Params& p, bool decode, cudaStream_t stream, const char* llmk_fn) {
    const int bm = flash_block_m(decode);
    const int64_t m_blocks = ((int64_t)p.q_len * p.group + bm - 1) / bm;
    const int64_t blocks = m_blocks * p.num_splits * p.kv_heads * p.batch;
    if (blocks > 0x7fffffff)
        return llmk_fail(LLMK_STATUS_UNSUPPORTED, "%s: %lld thread blocks exceed the grid limit", llmk_fn,
                         (long long)blocks);
    auto kernel = decode ? flash_kernel<T, D, true> : flash_kernel<T, D, false>;
    const int smem = (int)flash_smem_bytes(D, decode);
    LLMK_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    kernel<<<(unsigned)blocks, 128, smem, stream>>>(p);
    LLMK_CUDA_LAUNCH_CHECK();
    return LLMK_STATUS_OK;
}

} // namespace attn
} // namespace llmk_cu

#define LLMK_ATTN_INSTANTIATE_FLASH(T)                                                                         \
    namespace llmk_cu {                                                                                         \
    namespace attn {                                                                                            \
    template llmk_status launch_flash<T, 64>(const Params&, bool, cudaStream_t, const char*);                  \
    template llmk_status launch_flash<T, 128>(const Params&, bool, cudaStream_t, const char*);                 \
    template llmk_status launch_flash<T, 256>(const Params&, bool, cudaStream_t, const char*);                 \
    }                                                                                                           \
    }

#endif /* LLMK_CUDA_ATTENTION_FLASH_LAUNCH_CUH */
