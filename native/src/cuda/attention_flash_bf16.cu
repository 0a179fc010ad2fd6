/* The tensor-core attention kernel for bf16 (see attention_flash.cuh); one file per dtype so the
 * instantiations compile in parallel. */
#include "attention_flash_launch.cuh"

LLMK_ATTN_INSTANTIATE_FLASH(__nv_bfloat16)
