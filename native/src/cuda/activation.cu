/* Gated activations: out = act(gate) * up (vLLM's silu_and_mul / gelu_tanh_and_mul). The fused
 * [rows, 2d] form reaches this op as two strided views, so rows are addressed by their own strides.
 * Grid: x over the N-element chunks of a row, y over rows; 16-byte accesses when every row is aligned. */
#include "common.cuh"

namespace llmk_cu {
namespace {

/* Same formulas as the CPU reference (expf, tanhf: the accurate versions, no fast-math). */
__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

__device__ __forceinline__ float gelu_tanh(float g) {
    const float sqrt_2_over_pi = 0.7978845608028654f;
    return 0.5f * g * (1.0f + tanhf(sqrt_2_over_pi * (g + 0.044715f * g * g * g)));
}

struct GatedRows {
    int64_t rows, chunks; /* chunks of N elements per row */
    int64_t gate_stride, up_stride, out_stride;
};

template <class T, int N, bool Silu>
__global__ void gated_kernel(const T* gate, const T* up, T* out, GatedRows p) {
    for (int64_t row = blockIdx.y; row < p.rows; row += gridDim.y) {
        const T* g = gate + row * p.gate_stride;
        const T* u = up + row * p.up_stride;
        T* o = out + row * p.out_stride;
        for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < p.chunks;
             c += (int64_t)gridDim.x * blockDim.x) {
            float gv[N], uv[N], ov[N];
            load_floats<T, N>(g + c * N, gv);
            load_floats<T, N>(u + c * N, uv);
#pragma unroll
            for (int i = 0; i < N; i++)
                ov[i] = (Silu ? silu(gv[i]) : gelu_tanh(gv[i])) * uv[i];
            store_floats<T, N>(o + c * N, ov);
        }
    }
}

template <class T, int N>
llmk_status launch(llmk_cuda_state* st, const char* llmk_fn, bool is_silu, const llmk_tensor* gate,
                   const llmk_tensor* up, llmk_tensor* out) {
    GatedRows p;
    p.rows = gate->shape[0];
    p.chunks = gate->shape[1] / N;
    p.gate_stride = gate->strides[0];
    p.up_stride = up->strides[0];
    p.out_stride = out->strides[0];
    const int block = 256;
    /* Enough blocks in x to cover a row; rows beyond the y limit are looped over. */
    int64_t bx = (p.chunks + block - 1) / block;
    int64_t by = p.rows < 65535 ? p.rows : 65535;
    int64_t cap = (int64_t)st->sm_count * 64;
    if (bx * by > cap && bx > 1)
        bx = cap / by > 1 ? cap / by : 1;
    dim3 grid((unsigned)(bx < 1 ? 1 : bx), (unsigned)by);
    if (is_silu)
        gated_kernel<T, N, true><<<grid, block, 0, st->stream>>>(static_cast<const T*>(gate->data),
            static_cast<const T*>(up->data), static_cast<T*>(out->data), p);
    else
        gated_kernel<T, N, false><<<grid, block, 0, st->stream>>>(static_cast<const T*>(gate->data),
            static_cast<const T*>(up->data), static_cast<T*>(out->data), p);
    LLMK_CUDA_LAUNCH_CHECK();
    return LLMK_STATUS_OK;
}

} // namespace
} // namespace llmk_cu

extern "C" llmk_status llmk_cuda_gated_activation_split(llmk_context* ctx, int32_t activation,
                                                        const llmk_tensor* gate, const llmk_tensor* up,
                                                        llmk_tensor* out) {
    LLMK_CUDA_ENTRY("llmk_gated_activation_split", ctx) {
        using namespace llmk_cu;
        const int64_t rows = gate->shape[0], d = gate->shape[1];
        if (rows == 0 || d == 0)
            return LLMK_STATUS_OK;
        const bool is_silu = activation == LLMK_ACTIVATION_SILU;
        LLMK_DISPATCH_FLOAT(gate->dtype, T,
            bool vector = rows_aligned16(gate, 0, d) && rows_aligned16(up, 0, d) && rows_aligned16(out, 0, d);
            return vector ? launch<T, Vec<T>::N>(st, llmk_fn, is_silu, gate, up, out)
                          : launch<T, 1>(st, llmk_fn, is_silu, gate, up, out);)
        return LLMK_STATUS_OK;
    });
}
