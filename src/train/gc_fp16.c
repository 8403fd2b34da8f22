/* gc_fp16.c - the mean gradient with every value on the wire in IEEE half precision: 2 bytes a
 * value, half of none's traffic (the ring of gc_none with f16 payloads). */
#include <stdlib.h>

#include "train/gc_impl.h"

static sqz_status create(const sqz_gc_env *env, const sqz_gc_args *a, void **state) {
    return sqz_gc_dense_new(env, 1, state);
}

const sqz_gc_method sqz_gcm_fp16 = {
    .name = "fp16", .params = "", .create = create, .exchange = sqz_gc_dense_exchange, .destroy = free,
};
