/* Aliasing checks between tensor views, for kernels whose outputs may (or may not) share memory with their
 * inputs. Used by the API layer only; the arguments have already passed llmk_check_tensor. */
#ifndef LLMK_VIEWS_H
#define LLMK_VIEWS_H

#include "internal.h"

/* Same data pointer, dtype, rank, shape and strides: an exact alias, safe for elementwise in-place work. */
bool llmk_same_view(const llmk_tensor* a, const llmk_tensor* b);

/* Whether a and b may share an element. Exact: disjoint byte ranges, or row-interleaved views with the same
 * outer stride whose rows occupy disjoint bytes (e.g. the q and k slices of a fused qkv buffer), are
 * reported as not overlapping; anything else that intersects is treated as overlapping. */
bool llmk_views_overlap(const llmk_tensor* a, const llmk_tensor* b);

/* Fails with LLMK_STATUS_INVALID_ARGUMENT when b overlaps a; with alias_ok, b may be a exactly. */
llmk_status llmk_check_no_overlap(const char* fn, const char* name_a, const llmk_tensor* a, const char* name_b,
                                  const llmk_tensor* b, bool alias_ok);

#endif /* LLMK_VIEWS_H */
