/* The tensor-core attention kernels for f16, every listed head dim (see attention_flash_launch.cuh); one
 * file per dtype so the instantiations compile in parallel. */
#define LLMK_ATTN_FLASH_DTYPE __half
#include "attention_flash_launch.cuh"
