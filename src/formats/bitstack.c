/* bitstack.c - a BitStack matrix's blocks summed back into weights (formats/bitstack.h):
 * signs unpacked, the rank-r magnitude u_k v_k formed row by row in f32, the activation
 * scale divided out at the end. Rows are independent: OpenMP over rows. */
#include "formats/bitstack.h"

#include <stdlib.h>
#include <string.h>

#include "formats/types.h"

void sqz_bs_pack_signs(const float *x, int64_t n, uint8_t *bits) {
    for (int64_t c = 0; c < (n + 7) / 8; c++) {
        uint8_t b = 0;
        for (int e = 0; e < 8 && 8 * c + e < n; e++) b |= (uint8_t)((x[8 * c + e] < 0) << e);
        bits[c] = b;
    }
}

void sqz_bs_unpack_signs(const uint8_t *bits, int64_t n, float *out) {
    for (int64_t j = 0; j < n; j++) out[j] = (bits[j >> 3] >> (j & 7)) & 1 ? -1.0f : 1.0f;
}

/* v_k as f32 [r][cols] */
static float *block_v(const sqz_bs_tensor *b, int64_t cols, int64_t k) {
    const int64_t r = b->rank;
    float *v = malloc((size_t)(r * cols) * sizeof *v);
    if (!v) return NULL;
    const uint16_t *src = b->v + (size_t)(k * r * cols);
    for (int64_t i = 0; i < r * cols; i++) v[i] = sqz_f16_to_f32(src[i]);
    return v;
}

/* acc_row [cols] += sign (.) (u_row . v) */
static void add_row(const uint8_t *sign, const uint16_t *urow, const float *v, int64_t r, int64_t cols,
                    float *acc_row) {
    float u[64];
    for (int64_t t = 0; t < r && t < 64; t++) u[t] = sqz_f16_to_f32(urow[t]);
    for (int64_t j = 0; j < cols; j++) {
        float m = 0;
        for (int64_t t = 0; t < r; t++) m += u[t] * v[t * cols + j];
        acc_row[j] += (sign[j >> 3] >> (j & 7)) & 1 ? -m : m;
    }
}

int sqz_bs_add_block(const sqz_bs_tensor *b, int64_t rows, int64_t cols, int64_t k, float *acc) {
    const int64_t r = b->rank;
    float *v = block_v(b, cols, k);
    if (!v) return -1;
    const int64_t rb = sqz_bs_row_bytes(cols);
    const uint8_t *sign = b->sign + (size_t)(k * rows * rb);
    const uint16_t *u = b->u + (size_t)(k * rows * r);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++)
        add_row(sign + (size_t)(i * rb), u + (size_t)(i * r), v, r, cols, acc + (size_t)(i * cols));
    free(v);
    return 0;
}

void sqz_bs_row(const sqz_bs_tensor *b, int64_t rows, int64_t cols, int64_t i, float *out) {
    const int64_t r = b->rank;
    memset(out, 0, (size_t)cols * sizeof *out);
    for (int64_t k = 0; k < b->n_use; k++) {
        float *v = block_v(b, cols, k);
        if (!v) {
            for (int64_t j = 0; j < cols; j++) out[j] = 0.0f / 0.0f;
            return;
        }
        add_row(b->sign + (size_t)((k * rows + i) * sqz_bs_row_bytes(cols)), b->u + (size_t)((k * rows + i) * r), v, r, cols, out);
        free(v);
    }
    for (int64_t j = 0; j < cols; j++) out[j] /= b->scale[j];
}

int sqz_bs_reconstruct(const sqz_bs_tensor *b, int64_t rows, int64_t cols, int64_t n, float *out) {
    memset(out, 0, (size_t)(rows * cols) * sizeof *out);
    for (int64_t k = 0; k < n; k++)
        if (sqz_bs_add_block(b, rows, cols, k, out)) return -1;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) out[i * cols + j] /= b->scale[j];
    return 0;
}
