/* fuzz_gguf.c - libFuzzer target for the GGUF reader (which also reads sqz's container sqzf,
 * docs/sqzf.md; its seeds are fuzz/corpus/gguf/sqzf-*): any byte string must either be refused
 * with an error message or give a file whose every metadata value and tensor lies inside the
 * input. Every entry is touched (keys, strings and string-array elements byte by byte, numeric
 * arrays' first and last bytes, nested arrays' raw bytes) and every tensor's first and last
 * byte, so ASan catches anything that points outside; lookups must find what they index. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/ctx.h"
#include "io/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const void *p, size_t n, const uint8_t *data, size_t size) {
    const uint8_t *b = p;
    return b >= data && n <= size && (size_t)(b - data) <= size - n;
}

static uint8_t touch(const void *p, size_t n) {
    const uint8_t *b = p;
    return n ? (uint8_t)(b[0] ^ b[n - 1]) : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sqz_ctx *ctx = sqz_ctx_new();
    if (!ctx) return 0;
    sqz_gguf *g = NULL;
    if (sqz_gguf_open_mem(ctx, data, size, "fuzz", &g) == SQZ_OK) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < sqz_gguf_n_kv(g); i++) {
            const char *key = sqz_gguf_kv_key(g, i);
            if (!key || sqz_gguf_find_key(g, key) != (int64_t)i) __builtin_trap();
            sink ^= touch(key, strlen(key) + 1);
            size_t raw_len = 0;
            const void *raw = sqz_gguf_kv_raw(g, i, &raw_len);
            if (!inside(raw, raw_len, data, size) || raw_len < 5) __builtin_trap();
            sink ^= touch(raw, raw_len);
            int type = sqz_gguf_kv_type(g, i);
            int64_t iv;
            double fv;
            sink ^= (uint8_t)sqz_gguf_kv_int(g, i, &iv);
            sink ^= (uint8_t)sqz_gguf_kv_f64(g, i, &fv);
            size_t len = 0;
            if (type == SQZ_GGUF_STRING) {
                const char *s = sqz_gguf_kv_str(g, i, 0, &len);
                if (!s || !inside(s, len, data, size)) __builtin_trap();
                for (size_t k = 0; k < len; k++) sink ^= (uint8_t)s[k];
                const char *s2;
                size_t l2;
                if (sqz_gguf_get_str(ctx, g, key, &s2, &l2) != SQZ_OK || s2 != s || l2 != len)
                    __builtin_trap();
            } else if (type == SQZ_GGUF_ARRAY) {
                int et = -1;
                uint64_t n = 0;
                const void *d = NULL;
                if (!sqz_gguf_kv_arr(g, i, &et, &n, &d)) __builtin_trap();
                size_t es = sqz_gguf_type_size(et);
                if (et == SQZ_GGUF_STRING) {
                    for (uint64_t j = 0; j < n; j++) {
                        const char *s = sqz_gguf_arr_str(g, key, j, &len);
                        if (!s || !inside(s, len, data, size)) __builtin_trap();
                        sink ^= touch(s, len);
                    }
                    if (sqz_gguf_arr_str(g, key, n, &len)) __builtin_trap();
                } else if (es) {
                    if (n && !inside(d, (size_t)n * es, data, size)) __builtin_trap();
                    sink ^= touch(d, (size_t)n * es);
                }
            } else {
                uint32_t u32;
                float f;
                int b;
                sink ^= (uint8_t)sqz_gguf_get_u32(ctx, g, key, &u32);
                sink ^= (uint8_t)sqz_gguf_get_f32(ctx, g, key, &f);
                sink ^= (uint8_t)sqz_gguf_get_bool(ctx, g, key, &b);
            }
        }
        for (size_t i = 0; i < sqz_gguf_n_tensors(g); i++) {
            const sqz_gguf_tensor *t = sqz_gguf_get_tensor(g, i);
            if (!t || t->index != i || sqz_gguf_find_tensor(g, t->name) != t) __builtin_trap();
            if (t->nbytes == 0 || !inside(t->data, t->nbytes, data, size)) __builtin_trap();
            if (t->offset % sqz_gguf_alignment(g) != 0) __builtin_trap();
            sink ^= touch(t->data, t->nbytes);
            const sqz_gguf_tensor *r = NULL;
            sink ^= (uint8_t)sqz_gguf_require_tensor(ctx, g, t->name, &r);
        }
        (void)sink;
        sqz_gguf_close(g);
    } else if (sqz_ctx_error(ctx)[0] == 0 || !strstr(sqz_ctx_error(ctx), "fuzz")) {
        __builtin_trap(); /* every failure must say why, naming the input */
    }
    sqz_ctx_free(ctx);
    return 0;
}
