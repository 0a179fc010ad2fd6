/* Smoke test of the Windows build (llmk.dll), run under Wine by scripts/pack.sh when Wine is installed:
 * version, a CPU context, RMSNorm against the formula, and a refused argument whose message is read back
 * through the thread-local llmk_last_error (the part most likely to differ under mingw). Exit code 0 = pass. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "llmk.h"

static llmk_tensor view(float* data, int32_t rank, int64_t d0, int64_t d1) {
    llmk_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = LLMK_DTYPE_F32;
    t.rank = rank;
    t.shape[0] = d0;
    t.shape[1] = d1;
    if (rank == 2) { t.strides[0] = d1; t.strides[1] = 1; } else { t.strides[0] = 1; }
    t.device_type = LLMK_DEVICE_TYPE_CPU;
    return t;
}

int main(void) {
    printf("llmk.dll %s\n", llmk_version());
    llmk_context* ctx = NULL;
    if (llmk_context_create_cpu(0, &ctx) != LLMK_STATUS_OK) { printf("FAIL: context: %s\n", llmk_last_error()); return 1; }

    float x[2 * 5] = {1, 2, 3, 4, 5, -2, 0.5f, 3, 1, -4};
    float w[5] = {0.5f, 1, 2, -1, 0.25f};
    float y[2 * 5];
    for (int i = 0; i < 10; i++) y[i] = NAN;
    llmk_tensor xs = view(x, 2, 2, 5), ws = view(w, 1, 5, 0), ys = view(y, 2, 2, 5);
    if (llmk_rms_norm(ctx, &xs, &ws, 1e-5f, 0, &ys) != LLMK_STATUS_OK) { printf("FAIL: rms_norm: %s\n", llmk_last_error()); return 1; }
    for (int r = 0; r < 2; r++) {
        double ms = 0;
        for (int j = 0; j < 5; j++) ms += (double)x[r * 5 + j] * x[r * 5 + j] / 5;
        for (int j = 0; j < 5; j++) {
            double expected = x[r * 5 + j] / sqrt(ms + 1e-5) * w[j];
            if (!(fabs(y[r * 5 + j] - expected) <= 1e-6 + 1e-5 * fabs(expected))) {
                printf("FAIL: y[%d] = %g, expected %g\n", r * 5 + j, y[r * 5 + j], expected);
                return 1;
            }
        }
    }
    printf("ok: rms_norm matches the formula\n");

    llmk_tensor short_w = view(w, 1, 4, 0);
    llmk_status status = llmk_rms_norm(ctx, &xs, &short_w, 1e-5f, 0, &ys);
    if (status != LLMK_STATUS_SHAPE_MISMATCH || !strstr(llmk_last_error(), "weight")) {
        printf("FAIL: a short weight gave %s: \"%s\"\n", llmk_status_string(status), llmk_last_error());
        return 1;
    }
    printf("ok: refused with \"%s\"\n", llmk_last_error());
    llmk_context_destroy(ctx);
    printf("llmk.dll smoke test passed\n");
    return 0;
}
