/* test_drop_sub.c - sqz_drop of attention / MLP sub-blocks on the embedded model (stories260K,
 * 5 layers; docs/drop-subblocks.md):
 *   - a model written without layer 1's attention and layer 3's MLP gives exactly (bit for bit)
 *     the logits of the full model (the same f32 file) with layer 1's wo and layer 3's w_down
 *     set to zeros, on prefill and on token-by-token decode, at one thread (the batch path) and
 *     two (the decode team), with the f32 cache and with a policy without store_attend_heads
 *     (q8); its KV cache has 4 layers, not 5;
 *   - a layer without both is the whole block dropped (same logits as --block-list);
 *   - the ranking (n_sub) equals a naive recomputation: every window from the embeddings, each
 *     sub-block's 1 - cos computed with the other sub-block's output matrix zeroed;
 *   - the file round-trips: converted again it has the same sub-blocks and the same ppl;
 *     quantization (rtn, gptq) runs on it;
 *   - bad counts, lists, paths and files are refused with one error and no file;
 *   - search --levels depth with sub-blocks as the units: EvoPress finds the brute-force optimum
 *     for 2 of the 10 sub-blocks, and the sqzf it writes lacks them. */
#include <string.h>
#include <unistd.h>

#include "io/gguf.h"
#include "kv/kv.h"
#include "model/model.h"
#include "model/session.h"
#include "sqz.h"
#include "test.h"

enum { T = 48, C = 128 };

/* logits of tokens[0..T) : all at once (prefill), or one token per call (decode) */
static int run_logits(sqz_ctx *ctx, const sqz_model *m, const char *kv, const int32_t *tok, int decode, float *out) {
    sqz_session *s;
    if (sqz_session_new_kv(ctx, m, T, kv, &s)) return -1;
    const int V = m->cfg.vocab_size;
    sqz_status st = SQZ_OK;
    if (!decode) st = sqz_session_eval(s, tok, T, out, 1);
    for (int t = 0; decode && t < T && !st; t++) st = sqz_session_eval(s, tok + t, 1, out + (size_t)t * V, 0);
    sqz_session_free(s);
    return st ? -1 : 0;
}

/* 1 when a and b give bit-identical logits for every path (threads 1 / 2, prefill / decode,
 * f32 / q8 cache) */
static int same_logits(sqz_ctx *ctx, const sqz_model *a, const sqz_model *b, const int32_t *tok, char *what, size_t cap) {
    const int V = a->cfg.vocab_size;
    float *la = malloc((size_t)T * V * sizeof *la), *lb = malloc((size_t)T * V * sizeof *lb);
    int ok = 1;
    const char *kvs[2] = { "f32", "q8" };
    for (int threads = 1; threads <= 2 && ok; threads++)
        for (int decode = 0; decode < 2 && ok; decode++)
            for (int k = 0; k < 2 && ok; k++) {
                sqz_ctx_set_threads(ctx, threads);
                ok = !run_logits(ctx, a, kvs[k], tok, decode, la) && !run_logits(ctx, b, kvs[k], tok, decode, lb) &&
                     !memcmp(la, lb, (size_t)T * V * sizeof *la);
                if (!ok) snprintf(what, cap, "threads %d, %s, kv %s", threads, decode ? "decode" : "prefill", kvs[k]);
            }
    sqz_ctx_set_threads(ctx, 1);
    free(la), free(lb);
    return ok;
}

static double one_minus_cos(const float *a, const float *b, int D) {
    double ab = 0, aa = 0, bb = 0;
    for (int j = 0; j < D; j++) ab += (double)a[j] * b[j], aa += (double)a[j] * a[j], bb += (double)b[j] * b[j];
    return aa > 0 && bb > 0 ? 1 - ab / sqrt(aa * bb) : 0;
}

static double ppl_of(sqz_ctx *ctx, const sqz_model *m, const int32_t *ids, size_t n) {
    const sqz_ppl_opts po = { .n_ctx = C, .max_tokens = 4 * C + 1 };
    sqz_ppl_result pr;
    return sqz_perplexity(ctx, m, ids, n, &po, &pr) ? -1 : pr.ppl;
}

/* the bytes of file path, or NULL */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(*n);
    if (p && fread(p, 1, *n, f) != *n) free(p), p = NULL;
    fclose(f);
    return p;
}

/* a copy of the file at `from` with sqz.subblocks' entry i set to v, written to `to` */
static int patch_subblocks(const char *from, const char *to, int i, int32_t v) {
    size_t n;
    unsigned char *p = slurp(from, &n);
    if (!p) return -1;
    const char *key = SQZ_KEY_SUBBLOCKS;
    const size_t kl = strlen(key);
    unsigned char *at = NULL;
    for (size_t k = 0; k + kl < n && !at; k++)
        if (!memcmp(p + k, key, kl)) at = p + k + kl;
    /* key, then u32 type (array), u32 element type, u64 count, the entries */
    if (at) memcpy(at + 4 + 4 + 8 + 4 * (size_t)i, &v, 4);
    FILE *f = fopen(to, "wb");
    const int ok = at && f && fwrite(p, 1, n, f) == n;
    if (f) fclose(f);
    free(p);
    return ok ? 0 : -1;
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_ctx_set_threads(ctx, 1);
    sqz_model *m;
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", NULL, &m)) {
        CHECK(0, "load: %s", sqz_ctx_error(ctx));
        return test_done();
    }
    const int L = m->cfg.n_layers, D = m->cfg.dim;
    FILE *f = fopen("assets/tinystories-valid-slice.txt", "rb");
    static char text[40000];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    int32_t *ids;
    size_t n;
    sqz_tokenize(ctx, m, text, len, 0, &ids, &n);
    char dir[] = "/tmp/sqz-test-drop-sub-XXXXXX";
    if (!mkdtemp(dir)) return test_done();
    char full[600], sub[600], both[600], blk[600], again[600], bad[600], patched[600], q[600];
    snprintf(full, sizeof full, "%s/full.gguf", dir);
    snprintf(sub, sizeof sub, "%s/sub.sqzf", dir);
    snprintf(both, sizeof both, "%s/both.sqzf", dir);
    snprintf(blk, sizeof blk, "%s/blk.gguf", dir);
    snprintf(again, sizeof again, "%s/again.sqzf", dir);
    snprintf(bad, sizeof bad, "%s/bad.sqzf", dir);
    snprintf(patched, sizeof patched, "%s/patched.sqzf", dir);
    snprintf(q, sizeof q, "%s/q.sqzf", dir);

    /* the reference: the full model as the same f32 file, later with zeros in wo / w_down */
    const sqz_convert_opts co = { .type = "f32" };
    CHECK(sqz_convert(ctx, m, full, &co, NULL) == SQZ_OK, "full model as f32 GGUF (%s)", sqz_ctx_error(ctx));
    static sqz_drop_result r;
    const int a1[1] = { 1 }, m3[1] = { 3 };
    const sqz_drop_opts o = { .type = "f32", .sub = 1, .attn_list = a1, .n_attn_list = 1, .mlp_list = m3, .n_mlp_list = 1 };
    CHECK(sqz_drop(ctx, m, sub, &o, &r) == SQZ_OK && r.sqzf && r.n_layers_out == L && r.n_attn_dropped == 1 &&
              r.n_mlp_dropped == 1 && r.attn_dropped[1] == 1 && r.mlp_dropped[3] == 1 && r.attn_influence[0] == -1,
          "attention 1 and MLP 3 dropped without calibration: sqzf, %d layers (%s)", r.n_layers_out, sqz_ctx_error(ctx));
    sqz_model *g = NULL, *d = NULL;
    CHECK(sqz_model_load(ctx, full, NULL, &g) == SQZ_OK && sqz_model_load(ctx, sub, NULL, &d) == SQZ_OK,
          "both load (%s)", sqz_ctx_error(ctx));
    if (!g || !d) return test_done();
    int absent_ok = 1;
    for (int l = 0; l < L; l++)
        absent_ok &= sqz_layer_has_attn(&d->layers[l]) == (l != 1) && sqz_layer_has_ffn(&d->layers[l]) == (l != 3);
    absent_ok &= !d->layers[1].attn_norm.data && !d->layers[1].wq.data && !d->layers[3].ffn_norm.data &&
                 !d->layers[3].w_gate.data && d->layers[1].ffn_norm.data && d->layers[3].attn_norm.data;
    CHECK(absent_ok && sqz_model_n_absent_subblocks(d) == 2, "the loaded model lacks exactly those sub-blocks' tensors");
    {
        sqz_session *s;
        CHECK(sqz_session_new(ctx, d, 16, &s) == SQZ_OK && s->kv->shape.n_layers == L - 1 && s->kv_layer[1] == -1 &&
                  s->kv_layer[2] == 1,
              "its KV cache has %d layers (layer 1 none)", L - 1);
        sqz_session_free(s);
    }
    float *zo = calloc((size_t)g->layers[1].wo.rows * g->layers[1].wo.cols, sizeof *zo);
    float *zd = calloc((size_t)g->layers[3].w_down.rows * g->layers[3].w_down.cols, sizeof *zd);
    CHECK(g->layers[1].wo.type == SQZ_TYPE_F32 && g->layers[3].w_down.type == SQZ_TYPE_F32, "the reference is f32");
    g->layers[1].wo.data = zo; /* before any session: the run views copy these */
    g->layers[3].w_down.data = zd;
    char what[128] = "";
    CHECK(same_logits(ctx, d, g, ids, what, sizeof what), "dropped = zeroed, bit for bit, prefill and decode, 1 and 2 threads, f32 and q8 caches %s", what);

    /* both sub-blocks of a layer = the whole block */
    const int two[1] = { 2 };
    const sqz_drop_opts ob = { .type = "f32", .sub = 1, .attn_list = two, .n_attn_list = 1, .mlp_list = two, .n_mlp_list = 1 };
    const sqz_drop_opts ok_blk = { .type = "f32", .blocks = two, .n_blocks = 1 };
    sqz_model *b1 = NULL, *b2 = NULL;
    CHECK(sqz_drop(ctx, m, both, &ob, &r) == SQZ_OK && !r.sqzf && r.n_layers_out == L - 1 && r.dropped[2] &&
              sqz_drop(ctx, m, blk, &ok_blk, NULL) == SQZ_OK && sqz_model_load(ctx, both, NULL, &b1) == SQZ_OK &&
              sqz_model_load(ctx, blk, NULL, &b2) == SQZ_OK,
          "attn:2,mlp:2 removes block 2 (a plain GGUF) (%s)", sqz_ctx_error(ctx));
    if (b1 && b2) CHECK(same_logits(ctx, b1, b2, ids, what, sizeof what), "it runs exactly as --block-list 2 %s", what);
    sqz_model_free(b1), sqz_model_free(b2);

    /* ranking: n_sub = 3 of the 10, against a naive recomputation */
    const sqz_drop_opts orank = { .type = "f32", .sub = 1, .n_sub = 3, .calib = ids, .n_calib = n, .calib_ctx = C };
    char ranked[600];
    snprintf(ranked, sizeof ranked, "%s/ranked.sqzf", dir);
    CHECK(sqz_drop(ctx, m, ranked, &orank, &r) == SQZ_OK && r.n_attn_dropped + r.n_mlp_dropped == 3 &&
              r.calib_tokens == n / C * C,
          "3 sub-blocks of least influence dropped (%d attention, %d MLP) (%s)", r.n_attn_dropped, r.n_mlp_dropped,
          sqz_ctx_error(ctx));
    {
        /* naive: per window, layer by layer; the attention alone = the layer with w_down zeros,
         * the MLP alone = the layer with wo zeros (no absent-sub-block path involved) */
        double *na = calloc((size_t)L, sizeof *na), *nm = calloc((size_t)L, sizeof *nm), *nb = calloc((size_t)L, sizeof *nb);
        float *x = malloc((size_t)C * D * sizeof *x), *h = malloc((size_t)C * D * sizeof *h);
        sqz_session *s;
        sqz_session_new(ctx, m, C, &s);
        const size_t nw = n / C;
        for (size_t w = 0; w < nw; w++) {
            for (int t = 0; t < C; t++) sqz_tensor_row_f32(&m->tok_embd, ids[w * C + t], x + (size_t)t * D);
            sqz_session_reset(s);
            for (int l = 0; l < L; l++) {
                sqz_layer_weights wa = m->layers[l], wf = m->layers[l];
                float *z1 = calloc((size_t)wa.w_down.rows * wa.w_down.cols, sizeof *z1);
                float *z2 = calloc((size_t)wf.wo.rows * wf.wo.cols, sizeof *z2);
                wa.w_down.data = z1, wa.w_down.type = SQZ_TYPE_F32;
                wf.wo.data = z2, wf.wo.type = SQZ_TYPE_F32;
                memcpy(s->x, x, (size_t)C * D * sizeof *x);
                sqz_session_layer(s, &wa, l, C, NULL, NULL);
                memcpy(h, s->x, (size_t)C * D * sizeof *h);
                sqz_session_layer(s, &wf, l, C, NULL, NULL); /* (stores layer l's KV again: same rows) */
                for (int t = 0; t < C; t++) {
                    na[l] += one_minus_cos(x + (size_t)t * D, h + (size_t)t * D, D);
                    nm[l] += one_minus_cos(h + (size_t)t * D, s->x + (size_t)t * D, D);
                    nb[l] += one_minus_cos(x + (size_t)t * D, s->x + (size_t)t * D, D);
                }
                memcpy(x, s->x, (size_t)C * D * sizeof *x);
                free(z1), free(z2);
            }
        }
        sqz_session_free(s);
        int close = 1, least = 1;
        for (int l = 0; l < L; l++) {
            na[l] /= (double)(nw * C), nm[l] /= (double)(nw * C), nb[l] /= (double)(nw * C);
            close &= fabs(na[l] - r.attn_influence[l]) <= 1e-6 + 1e-4 * na[l] &&
                     fabs(nm[l] - r.mlp_influence[l]) <= 1e-6 + 1e-4 * nm[l] &&
                     fabs(nb[l] - r.influence[l]) <= 1e-6 + 1e-4 * nb[l];
        }
        for (int i = 0; i < 2 * L; i++) /* every dropped one below every kept one (naive values) */
            for (int k = 0; k < 2 * L; k++) {
                const int di = i % 2 ? r.mlp_dropped[i / 2] : r.attn_dropped[i / 2];
                const int dk = k % 2 ? r.mlp_dropped[k / 2] : r.attn_dropped[k / 2];
                const double vi = i % 2 ? nm[i / 2] : na[i / 2], vk = k % 2 ? nm[k / 2] : na[k / 2];
                if (di && !dk) least &= vi <= vk;
            }
        CHECK(close, "attention, MLP and block influence = the naive recomputation (attn %.4f %.4f %.4f %.4f %.4f, "
                     "mlp %.4f %.4f %.4f %.4f %.4f)",
              na[0], na[1], na[2], na[3], na[4], nm[0], nm[1], nm[2], nm[3], nm[4]);
        CHECK(least, "the dropped sub-blocks are the 3 of least naive influence");
        free(na), free(nm), free(nb), free(x), free(h);
    }
    /* by kind: the 2 attention and 1 MLP of least influence; the block influence as whole-block mode's */
    {
        static sqz_drop_result rk, rb;
        const sqz_drop_opts ok2 = { .type = "f32", .sub = 1, .n_attn = 2, .n_mlp = 1, .calib = ids, .n_calib = n, .calib_ctx = C };
        const sqz_drop_opts ob1 = { .type = "f32", .n_drop = 1, .calib = ids, .n_calib = n, .calib_ctx = C };
        CHECK(sqz_drop(ctx, m, ranked, &ok2, &rk) == SQZ_OK && sqz_drop(ctx, m, blk, &ob1, &rb) == SQZ_OK &&
                  rk.n_attn_dropped == 2 && rk.n_mlp_dropped == 1,
              "--attn 2 --mlp 1 (%s)", sqz_ctx_error(ctx));
        int ok = 1;
        for (int l = 0; l < L; l++) {
            ok &= rk.influence[l] == rb.influence[l]; /* the two halves compute the whole layer exactly */
            for (int k = 0; k < L; k++) {
                if (rk.attn_dropped[l] && !rk.attn_dropped[k]) ok &= rk.attn_influence[l] <= rk.attn_influence[k];
                if (rk.mlp_dropped[l] && !rk.mlp_dropped[k]) ok &= rk.mlp_influence[l] <= rk.mlp_influence[k];
            }
        }
        CHECK(ok, "each kind's least influence dropped; block influence bit-identical to whole-block ranking");
    }

    /* round trip: the sub-dropped model converted again, same sub-blocks, same ppl */
    sqz_model *d2 = NULL;
    CHECK(sqz_convert(ctx, d, again, &co, NULL) == SQZ_OK && sqz_model_load(ctx, again, NULL, &d2) == SQZ_OK,
          "the sqzf model converts to another (%s)", sqz_ctx_error(ctx));
    if (d2) {
        int same = 1;
        for (int l = 0; l < L; l++)
            same &= sqz_layer_has_attn(&d2->layers[l]) == sqz_layer_has_attn(&d->layers[l]) &&
                    sqz_layer_has_ffn(&d2->layers[l]) == sqz_layer_has_ffn(&d->layers[l]);
        const double p1 = ppl_of(ctx, d, ids, n), p2 = ppl_of(ctx, d2, ids, n), p0 = ppl_of(ctx, g, ids, n);
        CHECK(same && p1 > 0 && p1 == p2 && p1 == p0, "round trip: same sub-blocks, ppl %.6f = %.6f (zeroed full: %.6f)",
              p1, p2, p0);
        sqz_model_free(d2);
    }
    /* quantization runs on it (the absent matrices skipped) */
    {
        const char *methods[2] = { "rtn", "gptq" };
        for (int i = 0; i < 2; i++) {
            const sqz_quantize_opts qo = { .type = "q8_0", .method = methods[i], .calib = ids, .n_calib = n, .calib_ctx = C };
            sqz_model *dq = NULL;
            const int ok = sqz_quantize(ctx, d, q, &qo, NULL) == SQZ_OK && sqz_model_load(ctx, q, NULL, &dq) == SQZ_OK &&
                           sqz_model_n_absent_subblocks(dq) == 2 && !sqz_layer_has_attn(&dq->layers[1]) &&
                           !sqz_layer_has_ffn(&dq->layers[3]);
            const double pq = ok ? ppl_of(ctx, dq, ids, n) : -1, pd = ppl_of(ctx, d, ids, n);
            CHECK(ok && fabs(pq - pd) < 0.05 * pd, "quantize %s q8_0: same sub-blocks, ppl %.4f (f32 %.4f) (%s)", methods[i],
                  pq, pd, ok ? "" : sqz_ctx_error(ctx));
            sqz_model_free(dq);
            unlink(q);
        }
    }

    /* refusals: one error, no file */
    const int rep[2] = { 2, 2 }, oob[1] = { 5 }, neg[1] = { -1 }, all[5] = { 0, 1, 2, 3, 4 };
    struct { sqz_drop_opts o; const char *path, *want; } cases[] = {
        { { .sub = 1, .n_attn = -1, .calib = ids, .n_calib = n, .calib_ctx = C }, bad, "negative" },
        { { .sub = 1, .n_mlp = -2, .calib = ids, .n_calib = n, .calib_ctx = C }, bad, "negative" },
        { { .sub = 1, .n_attn = 6, .calib = ids, .n_calib = n, .calib_ctx = C }, bad, "6 attention sub-blocks of 5" },
        { { .sub = 1, .n_mlp = 6, .calib = ids, .n_calib = n, .calib_ctx = C }, bad, "6 MLP sub-blocks of 5" },
        { { .sub = 1, .n_attn = 5, .n_mlp = 5, .calib = ids, .n_calib = n, .calib_ctx = C }, bad, "at least one must stay" },
        { { .sub = 1, .n_sub = 10, .calib = ids, .n_calib = n, .calib_ctx = C }, bad, "at least one must stay" },
        { { .sub = 1, .n_sub = 2 }, bad, "needs calibration" },
        { { .sub = 1, .n_attn = 1, .n_sub = 1, .calib = ids, .n_calib = n, .calib_ctx = C }, bad, "one of them" },
        { { .sub = 1, .n_attn = 1, .n_drop = 1, .calib = ids, .n_calib = n, .calib_ctx = C }, bad, "not both" },
        { { .sub = 1 }, bad, "one of them" },
        { { .sub = 1, .attn_list = rep, .n_attn_list = 2 }, bad, "listed twice" },
        { { .sub = 1, .mlp_list = oob, .n_mlp_list = 1 }, bad, "does not exist" },
        { { .sub = 1, .attn_list = neg, .n_attn_list = 1 }, bad, "does not exist" },
        { { .sub = 1, .attn_list = all, .n_attn_list = 5, .mlp_list = all, .n_mlp_list = 5 }, bad, "at least one must stay" },
        { { .sub = 1, .attn_list = a1, .n_attn_list = 1 }, full, ".gguf" },
        { { .sub = 1, .attn_list = a1, .n_attn_list = 1, .type = "q9" }, bad, "unknown type" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = cases[i].path == full ? blk : bad;
        char gg[600];
        if (cases[i].path == full) snprintf(gg, sizeof gg, "%s/x.gguf", dir), path = gg;
        const sqz_status st = sqz_drop(ctx, m, path, &cases[i].o, NULL);
        CHECK(st != SQZ_OK && strstr(sqz_ctx_error(ctx), cases[i].want) && access(path, F_OK) != 0, "refused: %s",
              sqz_ctx_error(ctx));
    }
    /* an already absent sub-block cannot be dropped again */
    CHECK(sqz_drop(ctx, d, bad, &o, NULL) != SQZ_OK && strstr(sqz_ctx_error(ctx), "has no attention") &&
              access(bad, F_OK) != 0,
          "refused: %s", sqz_ctx_error(ctx));
    /* loader: sqz.subblocks out of range, or saying a present sub-block is absent */
    sqz_model *x = NULL;
    CHECK(patch_subblocks(sub, patched, 0, 7) == 0 && sqz_model_load(ctx, patched, NULL, &x) != SQZ_OK &&
              strstr(sqz_ctx_error(ctx), "want 0..3"),
          "load refused: %s", sqz_ctx_error(ctx));
    CHECK(patch_subblocks(sub, patched, 0, 1) == 0 && sqz_model_load(ctx, patched, NULL, &x) != SQZ_OK &&
              strstr(sqz_ctx_error(ctx), "blk.0.ffn_norm.weight is present"),
          "load refused: %s", sqz_ctx_error(ctx));
    CHECK(patch_subblocks(sub, patched, 1, 3) == 0 && sqz_model_load(ctx, patched, NULL, &x) != SQZ_OK &&
              strstr(sqz_ctx_error(ctx), "blk.1.attn_norm.weight"),
          "load refused (a missing tensor): %s", sqz_ctx_error(ctx));

    /* the depth search over sub-blocks (as test_search.c's over blocks) */
    {
        const int V = m->cfg.vocab_size;
        int32_t tok[6 * 64];
        uint64_t rs = 5;
        for (int i = 0; i < 6 * 64; i++) rs = rs * 6364136223846793005ull + 1442695040888963407ull, tok[i] = 1 + (int)((rs >> 33) % (uint64_t)(V - 1));
        char so[600];
        snprintf(so, sizeof so, "%s/search.sqzf", dir);
        sqz_search_opts sopt = { .space = "depth", .sub = 1, .n_drop = 2, .calib = tok, .n_calib = 6 * 64, .calib_ctx = 64,
                                 .pool_windows = 6, .generations = 16, .offspring = 6, .stages = "2x2,1x6", .seed = 3,
                                 .brute_force = 1 };
        static sqz_search_result bf, ev;
        CHECK(sqz_search(ctx, m, so, &sopt, &bf) == SQZ_OK && bf.evaluations == 45, "2 of 10 sub-blocks by brute force: %ld subsets", bf.evaluations);
        sopt.brute_force = 0;
        CHECK(sqz_search(ctx, m, so, &sopt, &ev) == SQZ_OK, "by EvoPress");
        int same = ev.n_dropped_attn == bf.n_dropped_attn && ev.n_dropped_mlp == bf.n_dropped_mlp &&
                   ev.n_dropped_attn + ev.n_dropped_mlp == 2;
        for (int i = 0; same && i < ev.n_dropped_attn; i++) same &= ev.dropped_attn[i] == bf.dropped_attn[i];
        for (int i = 0; same && i < ev.n_dropped_mlp; i++) same &= ev.dropped_mlp[i] == bf.dropped_mlp[i];
        CHECK(same && ev.best_kl == bf.best_kl, "EvoPress finds the brute-force optimum: KL %.6f = %.6f (%d attention, %d MLP)",
              ev.best_kl, bf.best_kl, ev.n_dropped_attn, ev.n_dropped_mlp);
        sqz_model *sm = NULL;
        CHECK(sqz_model_load(ctx, so, NULL, &sm) == SQZ_OK &&
                  sqz_model_n_absent_subblocks(sm) + 2 * (L - sm->cfg.n_layers) == 2,
              "its sqzf lacks those 2 sub-blocks");
        if (sm) { /* the written model's KL is the search's */
            const sqz_ppl_opts po = { .n_ctx = 64, .kld_base = m };
            sqz_ppl_result pr;
            CHECK(sqz_perplexity(ctx, sm, tok, 6 * 64, &po, &pr) == SQZ_OK && pr.has_kld, "it runs");
            CHECK_CLOSE(pr.kld, ev.best_kl, 0, 0.01, "its KL to the original on the pool's tokens = the search's (f16 written)");
        }
        sqz_model_free(sm);
        char gg[600];
        snprintf(gg, sizeof gg, "%s/search.gguf", dir);
        CHECK(sqz_search(ctx, m, gg, &sopt, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), ".sqzf"), "search to .gguf refused: %s",
              sqz_ctx_error(ctx));
        sopt.n_drop = 10;
        CHECK(sqz_search(ctx, m, so, &sopt, NULL) == SQZ_ERR_ARG, "10 of 10 refused: %s", sqz_ctx_error(ctx));
        unlink(so);
        snprintf(gg, sizeof gg, "%s/search.sqzf.json", dir);
        unlink(gg);
    }
    unlink(full), unlink(sub), unlink(both), unlink(blk), unlink(again), unlink(ranked), unlink(patched);
    rmdir(dir);
    free(zo), free(zd);
    sqz_model_free(g);
    sqz_model_free(d);
    sqz_free(ids);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
    return test_done();
}
