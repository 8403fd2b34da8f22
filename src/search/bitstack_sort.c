/* bitstack_sort.c - BitStack's universal order of residual blocks (Wang et al. 2024, section
 * "sorting residual blocks"; the authors' "average" strategy), search/bitstack.h.
 *
 * Every matrix i has a stack of K blocks, loaded in stack order. Level 0 (the first block of
 * every matrix) comes first: without it a matrix is zero. Then for each level b = 1..K-1 the
 * model is set with every matrix at b blocks (the reference), and each matrix i in turn is
 * raised to b + 1 blocks alone; its score is the mean KL divergence from the original model on
 * the calibration windows (the paper scores perplexity; KL to the original ranks alike and
 * needs no labels). Level b's blocks follow level b - 1's, smallest score first. A memory size
 * then takes a prefix of this order: the model rises level by level, each level's most useful
 * blocks first.
 * Cost: (K - 1) x n_mats KL measures; each runs from the changed matrix's layer on, from the
 * reference's cached states (quant/kl_probe.h). Memory: two f32 copies of every matrix (the
 * level's running sum in the scaled space and the reference's weights). */
#include <stdlib.h>
#include <string.h>

#include "quant/kl_probe.h"
#include "quant/mixllm.h"
#include "search/bitstack.h"

typedef struct scored {
    double kl;
    int i;
} scored;

static int scored_cmp(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->kl != y->kl) return x->kl < y->kl ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* out = acc / s column-wise */
static void unscale(const float *acc, const float *s, int64_t m, int64_t n, float *out) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) out[i * n + j] = acc[i * n + j] / s[j];
}

sqz_status sqz_bs_sort(sqz_ctx *ctx, const sqz_model *model, const sqz_tensor *const *mats, const int *layer,
                       const int *kind, int n_mats, const int32_t *tokens, size_t n_win, int C,
                       int32_t *const *order) {
    const int64_t K = ((const sqz_bs_tensor *)mats[0]->data)->n_blocks;
    for (int i = 0; i < n_mats; i++) order[i][0] = i;
    if (K == 1) return SQZ_OK;
    const int L = model->cfg.n_layers;
    sqz_kl_probe *probe = NULL;
    sqz_model ref = *model, chg = *model;
    ref.owned = chg.owned = NULL;
    ref.n_owned = ref.cap_owned = chg.n_owned = chg.cap_owned = 0;
    ref.layers = malloc((size_t)L * sizeof *ref.layers);
    chg.layers = malloc((size_t)L * sizeof *chg.layers);
    float **acc = calloc((size_t)n_mats, sizeof *acc), **dense = calloc((size_t)n_mats, sizeof *dense);
    scored *sc = malloc((size_t)n_mats * sizeof *sc);
    int *win = malloc(n_win * sizeof *win);
    int64_t big = 0;
    for (int i = 0; i < n_mats; i++)
        if (mats[i]->rows * mats[i]->cols > big) big = mats[i]->rows * mats[i]->cols;
    float *tmp = malloc((size_t)big * sizeof *tmp);
    sqz_status st = SQZ_OK;
    int ok = ref.layers && chg.layers && acc && dense && sc && win && tmp;
    for (int i = 0; ok && i < n_mats; i++) {
        const size_t mn = (size_t)(mats[i]->rows * mats[i]->cols);
        ok = (acc[i] = calloc(mn, sizeof **acc)) && (dense[i] = malloc(mn * sizeof **dense));
    }
    if (!ok) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "bitstack: out of memory for the sort");
        goto done;
    }
    memcpy(ref.layers, model->layers, (size_t)L * sizeof *ref.layers);
    for (size_t w = 0; w < n_win; w++) win[w] = (int)w;
    if ((st = sqz_kl_probe_new(ctx, model, tokens, n_win, C, &probe))) goto done;
    const uint64_t total = (uint64_t)(K - 1) * (uint64_t)n_mats;
    sqz_progress(ctx, "bitstack sort", 0, total);
    for (int64_t b = 1; b < K && !st; b++) {
        /* the reference: every matrix at b blocks */
        for (int i = 0; i < n_mats && !st; i++) {
            const sqz_bs_tensor *v = mats[i]->data;
            const int64_t m = mats[i]->rows, n = mats[i]->cols;
            if (sqz_bs_add_block(v, m, n, b - 1, acc[i])) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
            unscale(acc[i], v->scale, m, n, dense[i]);
            *sqz_mixllm_matrix(&ref.layers[layer[i]], kind[i], NULL) =
                (sqz_tensor){ .type = SQZ_TYPE_F32, .rows = m, .cols = n, .data = dense[i] };
        }
        if (st || (st = sqz_kl_probe_set_ref(probe, &ref))) break;
        memcpy(chg.layers, ref.layers, (size_t)L * sizeof *chg.layers);
        for (int i = 0; i < n_mats && !st; i++) { /* matrix i alone at b + 1 blocks */
            const sqz_bs_tensor *v = mats[i]->data;
            const int64_t m = mats[i]->rows, n = mats[i]->cols;
            memcpy(tmp, acc[i], (size_t)(m * n) * sizeof *tmp);
            if (sqz_bs_add_block(v, m, n, b, tmp)) {
                st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
                break;
            }
            unscale(tmp, v->scale, m, n, tmp);
            sqz_tensor *t = sqz_mixllm_matrix(&chg.layers[layer[i]], kind[i], NULL);
            const sqz_tensor keep = *t;
            *t = (sqz_tensor){ .type = SQZ_TYPE_F32, .rows = m, .cols = n, .data = tmp };
            sc[i].i = i;
            st = sqz_kl_probe_measure_windows(probe, &chg, layer[i], win, (int)n_win, &sc[i].kl);
            *t = keep;
            sqz_progress(ctx, "bitstack sort", (uint64_t)(b - 1) * (uint64_t)n_mats + (uint64_t)i + 1, total);
        }
        if (st) break;
        qsort(sc, (size_t)n_mats, sizeof *sc, scored_cmp);
        for (int r = 0; r < n_mats; r++) order[sc[r].i][b] = (int32_t)(b * n_mats + r);
    }
done:
    sqz_kl_probe_free(probe);
    for (int i = 0; acc && dense && i < n_mats; i++) free(acc[i]), free(dense[i]);
    free(acc), free(dense), free(sc), free(win), free(tmp);
    free(ref.layers), free(chg.layers);
    return st;
}
