/* Host launcher of the sm80 path's tensor-core kernel (FlashPath<FlashArch::Sm80, D>::launch), and its
 * instantiation for every listed head dim: a file that defines LLMK_ATTN_FLASH_DTYPE before including this
 * one instantiates it for that dtype (attention_flash_f16.cu, attention_flash_bf16.cu: one file per dtype so
 * they compile in parallel). */
#ifndef LLMK_CUDA_ATTENTION_FLASH_LAUNCH_CUH
#define LLMK_CUDA_ATTENTION_FLASH_LAUNCH_CUH

#include "attention_flash.cuh"

namespace llmk_cu {
namespace attn {

template <class T, int D, bool Decode>
llmk_status launch_flash_sm80_shape(const Params& p, cudaStream_t stream, const char* llmk_fn) {
    using S = FlashShape<D, Decode>;
    const int64_t m_blocks = ((int64_t)p.q_len * p.group + S::BM - 1) / S::BM;
    const int64_t blocks = m_blocks * p.num_splits * p.kv_heads * p.batch;
    if (blocks > 0x7fffffff)
        return llmk_fail(LLMK_STATUS_UNSUPPORTED, "%s: %lld thread blocks exceed the grid limit", llmk_fn,
                         (long long)blocks);
    LLMK_CUDA_CHECK(cudaFuncSetAttribute(flash_kernel_sm80<T, D, Decode>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         S::kSmemBytes));
    flash_kernel_sm80<T, D, Decode><<<(unsigned)blocks, 128, S::kSmemBytes, stream>>>(p);
    LLMK_CUDA_LAUNCH_CHECK();
    return LLMK_STATUS_OK;
}

template <class T, int D>
llmk_status launch_flash_sm80(const Params& p, bool decode, cudaStream_t stream, const char* llmk_fn) {
    return decode ? launch_flash_sm80_shape<T, D, true>(p, stream, llmk_fn)
                  : launch_flash_sm80_shape<T, D, false>(p, stream, llmk_fn);
}

} // namespace attn
} // namespace llmk_cu

#endif /* LLMK_CUDA_ATTENTION_FLASH_LAUNCH_CUH */

#ifdef LLMK_ATTN_FLASH_DTYPE
namespace llmk_cu {
namespace attn {
#define LLMK_ATTN_INSTANTIATE_FLASH_(D) \
    template llmk_status launch_flash_sm80<LLMK_ATTN_FLASH_DTYPE, D>(const Params&, bool, cudaStream_t, const char*);
LLMK_ATTN_FLASH_HEAD_DIMS(LLMK_ATTN_INSTANTIATE_FLASH_)
#undef LLMK_ATTN_INSTANTIATE_FLASH_
} // namespace attn
} // namespace llmk_cu
#endif
