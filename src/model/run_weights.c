/* run_weights.c - the weight views sessions compute with: the model's own, with the matrices
 * the kernels run faster repacked (kernels/x16.h: Q4_0 and Q8_0 in 16-row groups on AVX-512).
 * The file format and the model's views are unchanged (convert and quantize read those); the
 * packed copies are made once, by the first session, in one buffer the model frees. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/x16.h"
#include "model/model.h"

static pthread_mutex_t prepare_lock = PTHREAD_MUTEX_INITIALIZER;

static int run_valid(const sqz_model *m) { return m->run_owner == m && m->run_layers; }

const sqz_layer_weights *sqz_model_run_layers(const sqz_model *m) {
    return run_valid(m) ? m->run_layers : m->layers;
}

const sqz_tensor *sqz_model_run_output(const sqz_model *m) {
    return run_valid(m) ? &m->run_output : &m->output;
}

static size_t packed_bytes(const sqz_tensor *t) {
    if (!t->data || !sqz_x16_worth_it(t->type, t->rows, t->cols)) return 0;
    return (sqz_x16_bytes(sqz_x16_type_of(t->type), t->rows, t->cols) + 63) & ~(size_t)63;
}

/* t -> its packed copy at *at (advanced by bytes; 0: t stays as it is); with m, the file's
 * pages it was read from are given back (they reload from the file if convert or an embedding
 * lookup reads them again), so a run holds the weights once, not twice */
static void pack_into(const sqz_model *m, sqz_tensor *t, size_t bytes, char **at) {
    if (!bytes) return;
    sqz_x16_pack(t->type, t->data, t->rows, t->cols, *at);
    if (m) sqz_model_release(m, t->data, sqz_type_row_size(t->type, t->cols) * (size_t)t->rows);
    t->type = sqz_x16_type_of(t->type);
    t->data = *at;
    *at += bytes;
}

#define MATRICES(w) { &(w).wq, &(w).wk, &(w).wv, &(w).wo, &(w).w_gate, &(w).w_up, &(w).w_down }
enum { N_MATRICES = 7 };

sqz_status sqz_model_prepare_run(sqz_ctx *ctx, sqz_model *m) {
    /* a struct copy (quantization's working models) runs its own views as they are */
    if (m->self != m) return SQZ_OK;
    pthread_mutex_lock(&prepare_lock);
    sqz_status st = SQZ_OK;
    if (run_valid(m)) goto done;
    const int L = m->cfg.n_layers;
    size_t total = packed_bytes(&m->output);
    for (int l = 0; l < L; l++) {
        sqz_tensor *mats[N_MATRICES] = MATRICES(m->layers[l]);
        for (int i = 0; i < N_MATRICES; i++) total += packed_bytes(mats[i]);
    }
    if (!total) goto done; /* nothing to repack: sessions use the model's views */
    sqz_layer_weights *run = malloc((size_t)L * sizeof *run);
    char *mem = aligned_alloc(64, total);
    if (!run || !mem) {
        free(run);
        free(mem);
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the repacked weights (%.0f MB)", total / 1e6);
        goto done;
    }
    memcpy(run, m->layers, (size_t)L * sizeof *run);
    char *at = mem;
    for (int l = 0; l < L; l++) {
        sqz_tensor *mats[N_MATRICES] = MATRICES(run[l]);
        for (int i = 0; i < N_MATRICES; i++) pack_into(m, mats[i], packed_bytes(mats[i]), &at);
    }
    m->run_output = m->output;
    pack_into(m, &m->run_output, packed_bytes(&m->run_output), &at);
    m->run_layers = run;
    m->run_mem = mem;
    m->run_owner = m;
done:
    pthread_mutex_unlock(&prepare_lock);
    return st;
}

/* the packed types whose products equal their unpacked type's bit for bit (test_x16) */
static size_t kquant_packed_bytes(const sqz_tensor *t) {
    const sqz_type pt = sqz_x16_type_of(t->type);
    return pt == SQZ_TYPE_Q4_0X16 || pt == SQZ_TYPE_Q8_0X16 ? 0 : packed_bytes(t);
}

sqz_status sqz_layer_pack_kquants(sqz_ctx *ctx, const sqz_layer_weights *w, sqz_layer_weights *out, void **mem) {
    *out = *w;
    *mem = NULL;
    sqz_tensor *mats[N_MATRICES] = MATRICES(*out);
    size_t total = 0;
    for (int i = 0; i < N_MATRICES; i++) total += kquant_packed_bytes(mats[i]);
    if (!total) return SQZ_OK;
    char *at = aligned_alloc(64, total);
    if (!at) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for a packed layer (%.0f MB)", total / 1e6);
    *mem = at;
    for (int i = 0; i < N_MATRICES; i++) pack_into(NULL, mats[i], kquant_packed_bytes(mats[i]), &at);
    return SQZ_OK;
}
