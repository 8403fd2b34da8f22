/* fuzz_safetensors.c - libFuzzer target for the safetensors header parser: any byte string
 * must either be refused with an error message or give a table whose every tensor lies inside
 * the input (touching each one's first and last byte lets ASan catch one that does not). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/ctx.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sqz_ctx *ctx = sqz_ctx_new();
    if (!ctx) return 0;
    sqz_safetensors *st = NULL;
    if (sqz_st_open_mem(ctx, data, size, "fuzz", &st) == SQZ_OK) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < sqz_st_count(st); i++) {
            const sqz_st_tensor *t = sqz_st_get(st, i);
            if (sqz_st_find(st, t->name) != t) __builtin_trap(); /* lookup must find it */
            if (t->nbytes) {
                const uint8_t *p = t->data;
                if (p < data || p + t->nbytes > data + size) __builtin_trap();
                sink ^= p[0];
                sink ^= p[t->nbytes - 1];
            }
        }
        (void)sink;
        sqz_st_close(st);
    } else if (sqz_ctx_error(ctx)[0] == 0) {
        __builtin_trap(); /* every failure must say why */
    }
    sqz_ctx_free(ctx);
    return 0;
}
