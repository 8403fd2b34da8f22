/* bitstack_fit.c - a BitStack model at a memory size (include/sqz.h: sqz_model_bitstack_fit):
 * the blocks of every BitStack matrix (formats/bitstack.h) put in the file's universal order,
 * the longest prefix of that order whose bytes, with everything the model holds whatever the
 * size (token embedding, head, norms, each matrix's scale and order), fit the budget, and each
 * matrix summed from its blocks in that prefix into f32 weights the kernels run.
 * The order is increasing within a matrix (checked at load), so a prefix of it takes a prefix
 * of every matrix's stack: block k never without blocks 0..k-1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "sqz.h"

sqz_status sqz_model_add_bs(sqz_ctx *ctx, sqz_model *m, const char *name, sqz_tensor *t, const sqz_bs_tensor *view) {
    if (m->n_bs == m->cap_bs) {
        const int cap = m->cap_bs ? 2 * m->cap_bs : 64;
        sqz_bs_slot *s = realloc(m->bs, (size_t)cap * sizeof *s);
        if (!s) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        m->bs = s;
        m->cap_bs = cap;
    }
    sqz_bs_slot *s = &m->bs[m->n_bs++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->t = t;
    s->view = *view;
    return SQZ_OK;
}

void sqz_model_free_bs(sqz_model *m) {
    for (int i = 0; i < m->n_bs; i++) free(m->bs[i].dense);
    free(m->bs);
    m->bs = NULL;
    m->n_bs = m->cap_bs = 0;
}

int sqz_model_is_bitstack(const sqz_model *m) { return m && m->n_bs > 0; }

static int is_slot(const sqz_model *m, const sqz_tensor *t) {
    for (int i = 0; i < m->n_bs; i++)
        if (m->bs[i].t == t) return 1;
    return 0;
}

/* Bytes of every weight that is not a BitStack matrix, plus each matrix's fixed part. */
static uint64_t fixed_bytes(const sqz_model *m) {
    uint64_t b = sqz_tensor_nbytes(&m->tok_embd) + sqz_tensor_nbytes(&m->out_norm);
    if (!m->cfg.tied_embeddings) b += sqz_tensor_nbytes(&m->output);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const sqz_tensor *ts[SQZ_LAYER_N_TENSORS];
        sqz_layer_tensors(&m->layers[l], ts);
        for (int i = 0; i < SQZ_LAYER_N_TENSORS; i++)
            if (!is_slot(m, ts[i])) b += sqz_tensor_nbytes(ts[i]);
    }
    for (int i = 0; i < m->n_bs; i++) b += sqz_bs_fixed_bytes(m->bs[i].t->cols, m->bs[i].view.n_blocks);
    return b;
}

typedef struct blk {
    int32_t pos;
    int slot, k;
} blk;

static int blk_cmp(const void *a, const void *b) {
    const blk *x = a, *y = b;
    if (x->pos != y->pos) return x->pos < y->pos ? -1 : 1;
    if (x->slot != y->slot) return x->slot < y->slot ? -1 : 1;
    return (x->k > y->k) - (x->k < y->k);
}

sqz_status sqz_model_bitstack_fit(sqz_ctx *ctx, sqz_model *m, uint64_t memory, sqz_bitstack_fit_info *info) {
    if (info) memset(info, 0, sizeof *info);
    if (!m || !m->n_bs) return sqz_fail(ctx, SQZ_ERR_ARG, "--memory: the model is not a BitStack file (sqz bitstack)");
    if (m->run_owner == m)
        return sqz_fail(ctx, SQZ_ERR_ARG, "bitstack: the memory size must be set before the model's first session");
    const uint64_t fixed = fixed_bytes(m);
    size_t n = 0;
    uint64_t all = fixed, min = fixed;
    for (int i = 0; i < m->n_bs; i++) {
        const uint64_t bb = sqz_bs_block_bytes(m->bs[i].t->rows, m->bs[i].t->cols, m->bs[i].view.rank);
        n += (size_t)m->bs[i].view.n_blocks;
        all += (uint64_t)m->bs[i].view.n_blocks * bb;
        min += bb;
    }
    if (memory && memory < min)
        return sqz_fail(ctx, SQZ_ERR_RANGE,
                        "--memory %llu bytes is below the smallest size, %llu bytes (every matrix's first block, "
                        "embeddings, norms, scales)",
                        (unsigned long long)memory, (unsigned long long)min);
    blk *b = malloc((n ? n : 1) * sizeof *b);
    int *take = calloc((size_t)(unsigned)m->n_bs, sizeof *take);
    if (!b || !take) {
        free(b), free(take);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    size_t j = 0;
    for (int i = 0; i < m->n_bs; i++)
        for (int k = 0; k < m->bs[i].view.n_blocks; k++) b[j++] = (blk){ m->bs[i].view.order[k], i, k };
    qsort(b, n, sizeof *b, blk_cmp);
    uint64_t used = fixed;
    int n_loaded = 0;
    for (size_t i = 0; i < n; i++) {
        const sqz_bs_slot *s = &m->bs[b[i].slot];
        const uint64_t bb = sqz_bs_block_bytes(s->t->rows, s->t->cols, s->view.rank);
        if (memory && used + bb > memory) break; /* a prefix: the first block that does not fit ends it */
        used += bb;
        take[b[i].slot]++;
        n_loaded++;
    }
    free(b);
    sqz_status st = SQZ_OK;
    sqz_progress(ctx, "bitstack", 0, (uint64_t)m->n_bs);
    for (int i = 0; i < m->n_bs && !st; i++) {
        sqz_bs_slot *s = &m->bs[i];
        const int64_t rows = s->t->rows, cols = s->t->cols;
        if (!s->dense && !(s->dense = malloc((size_t)(rows * cols) * sizeof *s->dense))) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for %s", s->name);
            break;
        }
        if (sqz_bs_reconstruct(&s->view, rows, cols, take[i], s->dense)) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for %s", s->name);
            break;
        }
        s->view.n_use = take[i];
        *s->t = (sqz_tensor){ .type = SQZ_TYPE_F32, .rows = rows, .cols = cols, .data = s->dense };
        sqz_progress(ctx, "bitstack", (uint64_t)i + 1, (uint64_t)m->n_bs);
    }
    free(take);
    if (st) return st;
    m->bs_bytes = used;
    if (info) *info = (sqz_bitstack_fit_info){ .memory = memory, .bytes = used, .fixed_bytes = fixed, .min_bytes = min, .all_bytes = all,
                                               .n_blocks = (int)n, .n_loaded = n_loaded };
    return SQZ_OK;
}
