/* test_sp8.c - sqz's sparse int8 format (formats/sp8.h) and its matrix-vector kernels
 * (kernels/sp8.h): packing keeps exactly the pruned matrix's nonzeros (zeros stay exact zeros,
 * the kept weights within half an int8 step of their block's scale); the stored bytes are 6 +
 * nonzeros per block; the reference kernel equals dense math on the stored weights and the
 * quantized activations; the VBMI2 kernel equals the reference (same integer sums, f32 order
 * aside); the bounds check refuses corrupt offsets and masks. */
#include "formats/blocks.h"
#include "formats/sp8.h"
#include "kernels/sp8.h"
#include "prune/pruner.h"
#include "test.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* A random matrix pruned to density d by magnitude (d = 0: 2:4), with an all-zero block and a
 * full block in row 0. */
static void make(float *W, int rows, int cols, double d) {
    for (int i = 0; i < rows * cols; i++) W[i] = (float)(urand() * 2 - 1) * (float)(0.1 + urand());
    const sqz_pruner *const *p = sqz_pruners();
    const sqz_prune_level lv = d > 0 ? (sqz_prune_level){ .density = d } : (sqz_prune_level){ .n = 2, .m = 4 };
    p[0]->prune(NULL, NULL, W, rows, cols, NULL, &lv); /* magnitude */
    for (int j = 0; j < 32; j++) W[j] = 0;
    for (int j = 32; j < 64; j++) W[j] = (float)(j - 48) / 16;
}

int main(void) {
    /* 256 columns: 8 blocks, whole pairs; 1184: 37 blocks, two chunks of 16 and an odd last
     * block (the VBMI2 tier's three paths) */
    enum { MAXC = 1184 };
    const double dens[] = { 0.5, 0.3, 0.9, 0, 0.5 };
    for (int di = 0; di < 5; di++) {
        const int cols = di < 4 ? 256 : MAXC;
        /* 64 rows: prefill's packed path (groups of 16); 67: the panels and the row tails */
        const int rows = di < 4 ? 64 : 67;
        float *W = malloc((size_t)rows * cols * sizeof *W), *U = malloc((size_t)rows * cols * sizeof *U);
        make(W, rows, cols, dens[di]);
        uint64_t *off = malloc((size_t)(rows + 1) * sizeof *off);
        sqz_sp8_pack(W, rows, cols, off, NULL);
        uint8_t *data = malloc(off[rows]); /* exactly: a kernel reading past it fails under ASan */
        sqz_sp8_pack(W, rows, cols, off, data);
        size_t nnz = 0;
        for (int i = 0; i < rows * cols; i++) nnz += W[i] != 0;
        CHECK(off[rows] == (size_t)rows * cols / 32 * 6 + nnz, "density %.1f: %llu bytes = 6 per block + %zu nonzeros",
              dens[di], (unsigned long long)off[rows], nnz);
        int zeros_ok = 1, close_ok = 1;
        for (int r = 0; r < rows; r++) {
            const size_t used = sqz_sp8_unpack_row(data + off[r], cols, U + (size_t)r * cols);
            zeros_ok &= used == off[r + 1] - off[r];
            for (int b = 0; b < cols; b += 32) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(W[r * cols + b + j]));
                for (int j = 0; j < 32; j++) {
                    const float w = W[r * cols + b + j], u = U[r * cols + b + j];
                    if (w == 0) zeros_ok &= u == 0;
                    else close_ok &= fabsf(u - w) <= amax / 127 * 0.5f * 1.01f + 1e-7f;
                }
            }
        }
        CHECK(zeros_ok, "density %.1f: the pruned weights unpack as exact zeros, rows use their offsets' bytes", dens[di]);
        CHECK(close_ok, "density %.1f: the kept weights within half an int8 step of their block's scale", dens[di]);
        CHECK(sqz_sp8_check(off, data, off[rows], rows, cols) == 0, "density %.1f: the stored matrix checks", dens[di]);
        /* x, its Q8_0 activations, and dense math on the stored weights and those activations */
        float x[MAXC], xd[MAXC], y_ref[67], y_v[67], y_mt[67];
        for (int j = 0; j < cols; j++) x[j] = (float)(urand() * 4 - 2);
        _Alignas(4) unsigned char xbuf[MAXC / 32 * 102 + 2];
        const block_q8_0 *xq = (const block_q8_0 *)(const void *)xbuf;
        CHECK(sqz_sp8_act_bytes(cols) == (size_t)cols / 32 * 102 + (cols / 32 % 2 ? 2 : 0), "the activations: Q8_0 blocks, their bytes, f32 scales, sums");
        sqz_sp8_act_quantize(x, xbuf, cols);
        { /* every tier's activations equal the reference's */
            unsigned char ref[sizeof xbuf];
            memcpy(ref, xbuf, sizeof ref);
            sqz_sp8_act_finish_ref(ref, cols);
            CHECK(!memcmp(ref, xbuf, sqz_sp8_act_bytes(cols)), "density %.1f: the activations' parts = the reference's", dens[di]);
        }
        for (int j = 0; j < cols; j++) xd[j] = sqz_f16_to_f32(xq[j / 32].d) * xq[j / 32].qs[j % 32];
        const sqz_sp8_tensor m = { off, data };
        sqz_sp8_matvec_ref(&m, cols, xq, y_ref, 0, rows);
        int dense_ok = 1;
        for (int r = 0; r < rows; r++) {
            double s = 0, sa = 0;
            for (int j = 0; j < cols; j++) {
                s += (double)U[r * cols + j] * xd[j];
                sa += fabs((double)U[r * cols + j] * xd[j]);
            }
            dense_ok &= fabs(y_ref[r] - s) <= 1e-6 * sa + 1e-7;
        }
        CHECK(dense_ok, "density %.1f: the reference kernel = dense math on the stored weights (f32 rounding aside)",
              dens[di]);
        if (sqz_isa_best() >= SQZ_ISA_AVX2) {
            for (int r = 0; r < rows; r++) y_v[r] = NAN;
            sqz_sp8_matvec_avx2(&m, cols, xq, y_v, 3, rows - 2);
            int ok = isnan(y_v[2]) && isnan(y_v[rows - 2]);
            for (int r = 3; r < rows - 2; r++) ok &= fabsf(y_v[r] - y_ref[r]) <= 1e-5f * (fabsf(y_ref[r]) + 1);
            CHECK(ok, "density %.1f: the AVX2 kernel = the reference on rows [3, %d) and writes nothing else", dens[di],
                  rows - 2);
        } else {
            SKIP("no AVX2 on this CPU");
        }
        if (sqz_sp8_has_vbmi2()) {
            for (int r = 0; r < rows; r++) y_v[r] = NAN;
            sqz_sp8_matvec_vbmi2(&m, cols, xq, y_v, 3, rows - 2); /* a row range */
            int ok = isnan(y_v[2]) && isnan(y_v[rows - 2]);
            for (int r = 3; r < rows - 2; r++) ok &= fabsf(y_v[r] - y_ref[r]) <= 1e-5f * (fabsf(y_ref[r]) + 1);
            CHECK(ok, "density %.1f: the VBMI2 kernel = the reference on rows [3, %d) and writes nothing else", dens[di],
                  rows - 2);
        } else {
            SKIP("no AVX512-VBMI2 on this CPU");
        }
        if (sqz_sp8_has_vbmi2()) {
            int same = 1;
            float *V = malloc((size_t)cols * sizeof *V);
            for (int r = 0; r < rows; r++) {
                sqz_sp8_unpack_row_vbmi2(data + off[r], cols, V);
                same &= !memcmp(V, U + (size_t)r * cols, (size_t)cols * sizeof *V);
            }
            free(V);
            CHECK(same, "density %.1f: the VBMI2 unpack = the reference's floats", dens[di]);
        }
        { /* a row as Q8_0 (prefill's blocks): the same d and q, 0 where pruned; both tiers */
            const size_t rs = sqz_type_row_size(SQZ_TYPE_Q8_0, cols);
            unsigned char *q8 = malloc(rs), *q8v = malloc(rs);
            float *D = malloc((size_t)cols * sizeof *D);
            int same = 1, vsame = 1;
            for (int r = 0; r < rows; r++) {
                sqz_sp8_unpack_row_q8_0(data + off[r], cols, q8);
                sqz_type_get(SQZ_TYPE_Q8_0)->to_float(q8, D, cols);
                same &= !memcmp(D, U + (size_t)r * cols, (size_t)cols * sizeof *D);
                if (sqz_sp8_has_vbmi2()) {
                    sqz_sp8_unpack_row_q8_0_vbmi2(data + off[r], cols, q8v);
                    vsame &= !memcmp(q8, q8v, rs);
                }
            }
            CHECK(same, "density %.1f: a row as Q8_0 dequantizes to the row's floats exactly", dens[di]);
            CHECK(vsame, "density %.1f: the VBMI2 Q8_0 unpack = the reference's bytes", dens[di]);
            free(q8), free(q8v), free(D);
        }
        { /* whole-matrix products through matmul.c (the type's ops): 40 tokens (prefill: Q8_0
           * blocks of rows) = the reference kernel token by token (the same integer sums), and
           * with 1 token within Q8_0's activation rounding of the f32 yardstick */
            enum { T = 40 };
            const sqz_tensor t = { .type = SQZ_TYPE_SP8, .rows = rows, .cols = cols, .data = &m };
            float *X = malloc((size_t)T * cols * sizeof *X), *Y = malloc((size_t)T * rows * sizeof *Y);
            float *YR = malloc((size_t)T * rows * sizeof *YR), *YK = malloc((size_t)T * rows * sizeof *YK);
            unsigned char *xa = malloc(sqz_sp8_act_bytes(cols));
            for (int i = 0; i < T * cols; i++) X[i] = (float)(urand() * 2 - 1);
            sqz_matmul(&t, X, T, Y, 2);
            sqz_matmul_ref(&t, X, T, YR);
            for (int k = 0; k < T; k++) {
                sqz_sp8_act_quantize(X + (size_t)k * cols, xa, cols);
                sqz_sp8_matvec_ref(&m, cols, xa, YK + (size_t)k * rows, 0, rows);
            }
            /* AVX-512 and rows in 16s: Q8_0 activations through the packed kernels, the same
             * integer sums as the reference kernel; else f32 panels, the yardstick's math */
            const int packed = sqz_isa_best() == SQZ_ISA_AVX512 && rows % 16 == 0;
            const float *want = packed ? YK : YR;
            int ok = 1;
            double worst = 0;
            for (int i = 0; i < T * rows; i++) {
                ok &= fabsf(Y[i] - want[i]) <= (packed ? 1e-5f : 1e-4f) * (fabsf(want[i]) + 1);
                worst = fmax(worst, fabs(Y[i] - YR[i]) / (fabs(YR[i]) + 1));
            }
            CHECK(ok, "density %.1f: sqz_matmul of %d tokens (%s) = %s", dens[di], T,
                  packed ? "packed Q8_0" : "f32 panels", packed ? "the reference kernel token by token" : "the yardstick");
            CHECK(worst < 0.2, "density %.1f: and within %.3f of the f32 yardstick", dens[di], worst);
            sqz_matmul(&t, X, 1, Y, 2);
            worst = 0;
            for (int r = 0; r < rows; r++) worst = fmax(worst, fabs(Y[r] - YR[r]) / (fabs(YR[r]) + 1));
            CHECK(worst < 0.05, "density %.1f: one token (Q8_0 activations) within %.3f of it", dens[di], worst);
            CHECK(sqz_matvec_rows_in_place(&t) && sqz_act_bytes(SQZ_TYPE_SP8, cols) == sqz_sp8_act_bytes(cols),
                  "the type's ops: rows in place, sp8's activations");
            free(X), free(Y), free(YR), free(YK), free(xa);
        }
        void *scratch = malloc(sizeof xbuf);
        sqz_sp8_matvec(&m, rows, cols, x, scratch, y_mt, 3);
        int mt_ok = 1;
        for (int r = 0; r < rows; r++) mt_ok &= fabsf(y_mt[r] - y_ref[r]) <= 1e-5f * (fabsf(y_ref[r]) + 1);
        CHECK(mt_ok, "density %.1f: the threaded product (x quantized inside) = the reference", dens[di]);
        free(scratch);
        /* corrupt offsets or masks are refused */
        off[5] += 1;
        CHECK(sqz_sp8_check(off, data, off[rows], rows, cols) != 0, "a shifted row offset is refused");
        off[5] -= 1;
        /* one more (or fewer) kept element in row 7's last block: the row no longer ends where
         * its offset says */
        data[off[7] + 4 * (cols / 32 - 1)] ^= 0x10;
        CHECK(sqz_sp8_check(off, data, off[rows], rows, cols) != 0, "a mask that disagrees with the row's bytes is refused");
        CHECK(sqz_sp8_check(off, data, off[rows] - 1, rows, cols) != 0, "a data length that disagrees is refused");
        free(W);
        free(U);
        free(off);
        free(data);
    }
    return test_done();
}
