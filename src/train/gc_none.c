/* gc_none.c - no compression: the mean gradient by a ring allreduce of f32 values (each rank
 * sends 2 (N - 1) / N of the gradient: 4 n bytes a step at N = 2). */
#include <stdlib.h>

#include "train/gc_impl.h"

static sqz_status create(const sqz_gc_env *env, const sqz_gc_args *a, void **state) {
    return sqz_gc_dense_new(env, 0, state);
}

const sqz_gc_method sqz_gcm_none = {
    .name = "none", .params = "", .create = create, .exchange = sqz_gc_dense_exchange, .destroy = free,
};
