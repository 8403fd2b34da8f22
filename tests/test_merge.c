/* test_merge.c - the safetensors writer, the HF folder export, every merge method against a
 * naive reference on small random tensors, the driver on tiny models written by the export
 * (weights (1, 0, 0) give model 1 bit for bit, a GGUF input with its Q/K rows permuted merges
 * with HF ones, seeded determinism, incompatible inputs refused with nothing written), and the
 * acceptance check: the linear merge of ../shared/models/merge's three fine-tunes reproduces
 * merge_baselines.json's perplexity on one domain within 0.1 %. */
#include <dirent.h>
#include <sys/stat.h>

#include "test.h"

#include "io/safetensors.h"
#include "merge/gta.h"
#include "merge/method.h"
#include "merge/opcm.h"
#include "model/export_hf.h"
#include "sqz.h"

static char tmp_root[256];

/* Entries in folder d (not . and ..). */
static int count_entries(const char *d) {
    DIR *dir = opendir(d);
    if (!dir) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(dir);
    return n;
}

static uint64_t rng_state = 12345;
static float frand(void) { return (float)(merge_rng_uniform(&rng_state) * 2.0 - 1.0); }

static void rm_tree(const char *p) { /* only our own temporary tree */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) printf("# could not remove %s\n", p);
}

/* ------------------------------------------------------------------ safetensors writer */

static void test_st_writer(sqz_ctx *ctx) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/st", tmp_root);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    sqz_st_writer *w;
    CHECK(sqz_st_writer_new(ctx, &w) == SQZ_OK, "st writer: new");
    const int64_t s1[2] = { 2, 3 }, s2[1] = { 5 }, s3[2] = { 2, 2 }, s4[1] = { 0 };
    size_t nb = 0;
    CHECK(sqz_st_writer_declare(w, "a.f32", SQZ_TYPE_F32, 2, s1, &nb) == SQZ_OK && nb == 24, "declare f32 [2,3]: 24 bytes");
    CHECK(sqz_st_writer_declare(w, "b.f16", SQZ_TYPE_F16, 1, s2, &nb) == SQZ_OK && nb == 10, "declare f16 [5]");
    CHECK(sqz_st_writer_declare(w, "c.empty", SQZ_TYPE_F32, 1, s4, NULL) == SQZ_OK, "declare an empty tensor");
    CHECK(sqz_st_writer_declare(w, "d.bf16", SQZ_TYPE_BF16, 2, s3, NULL) == SQZ_OK, "declare bf16 [2,2]");
    CHECK(sqz_st_writer_declare(w, "a.f32", SQZ_TYPE_F32, 1, s2, NULL) == SQZ_ERR_ARG, "a name twice is refused");
    CHECK(sqz_st_writer_declare(w, "q", SQZ_TYPE_Q4_0, 1, s2, NULL) == SQZ_ERR_ARG, "a quantized type is refused");
    float v[15];
    for (int i = 0; i < 15; i++) v[i] = frand() * 3;
    CHECK(sqz_st_writer_begin(w, path) == SQZ_OK, "begin");
    /* pieces that cross tensor boundaries */
    CHECK(sqz_st_writer_put_f32(w, v, 4) == SQZ_OK && sqz_st_writer_put_f32(w, v + 4, 7) == SQZ_OK &&
          sqz_st_writer_put_f32(w, v + 11, 4) == SQZ_OK, "put_f32 in pieces across tensors");
    CHECK(sqz_st_writer_finish(w) == SQZ_OK, "finish");
    CHECK(count_entries(dir) == 1, "only the file is left (no temporary)");
    sqz_safetensors *st = NULL;
    CHECK(sqz_st_open(ctx, path, &st) == SQZ_OK, "sqz's reader opens it: %s", sqz_ctx_error(ctx));
    if (st) {
        CHECK(sqz_st_count(st) == 4, "4 tensors");
        const sqz_st_tensor *a = sqz_st_find(st, "a.f32"), *b = sqz_st_find(st, "b.f16"),
                            *c = sqz_st_find(st, "c.empty"), *d = sqz_st_find(st, "d.bf16");
        CHECK(a && b && c && d, "all found by name");
        if (a && b && c && d) {
            CHECK(a->type == SQZ_TYPE_F32 && a->n_dims == 2 && a->shape[0] == 2 && a->shape[1] == 3,
                  "a: F32 [2, 3]");
            CHECK(b->type == SQZ_TYPE_F16 && b->n_dims == 1 && b->shape[0] == 5, "b: F16 [5]");
            CHECK(c->nbytes == 0 && d->type == SQZ_TYPE_BF16, "c empty, d BF16");
            float fa[6];
            memcpy(fa, a->data, sizeof fa);
            int ok = !memcmp(fa, v, sizeof fa);
            for (int i = 0; i < 5; i++) {
                uint16_t h;
                memcpy(&h, (const char *)b->data + 2 * i, 2);
                ok &= h == sqz_f32_to_f16(v[6 + i]);
            }
            for (int i = 0; i < 4; i++) {
                uint16_t h;
                memcpy(&h, (const char *)d->data + 2 * i, 2);
                ok &= h == sqz_f32_to_bf16(v[11 + i]);
            }
            CHECK(ok, "every value round-trips (f16/bf16 rounded to nearest even)");
        }
        sqz_st_close(st);
    }
    /* failures leave nothing behind */
    sqz_st_writer *w2;
    sqz_st_writer_new(ctx, &w2);
    sqz_st_writer_declare(w2, "x", SQZ_TYPE_F32, 1, s2, NULL);
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/folder/x.safetensors", dir);
    CHECK(sqz_st_writer_begin(w2, bad) == SQZ_ERR_IO, "begin in a missing folder: SQZ_ERR_IO");
    snprintf(bad, sizeof bad, "%s/b.safetensors", dir);
    CHECK(sqz_st_writer_begin(w2, bad) == SQZ_OK && sqz_st_writer_put_f32(w2, v, 3) == SQZ_OK,
          "a second file begun");
    CHECK(sqz_st_writer_finish(w2) == SQZ_ERR_ARG, "finish with 3 of 5 values: SQZ_ERR_ARG");
    CHECK(count_entries(dir) == 1, "nothing left by the short file");
    CHECK(sqz_st_writer_begin(w2, bad) == SQZ_OK, "begun again");
    CHECK(sqz_st_writer_put_f32(w2, v, 6) == SQZ_ERR_ARG, "a put past the last tensor: SQZ_ERR_ARG");
    CHECK(count_entries(dir) == 1, "nothing left by the long put");
    CHECK(sqz_st_writer_begin(w2, bad) == SQZ_OK && sqz_st_writer_put_f32(w2, v, 2) == SQZ_OK,
          "begun a third time");
    sqz_st_writer_free(w2);
    CHECK(count_entries(dir) == 1, "freeing an unfinished writer removes its temporary file");
    sqz_st_writer_free(w);
}

/* ------------------------------------------------------------------ tiny HF models */

typedef struct tiny_spec {
    int dim, hidden, layers, heads, kv_heads, vocab;
} tiny_spec;

static const tiny_spec TINY = { 32, 64, 2, 2, 1, 4096 }; /* rows of 32: q8_0 blocks */

/* Writes a tiny Llama HF folder with random weights (seeded), tokenizer tok (may be NULL). */
static sqz_status write_tiny(sqz_ctx *ctx, const char *dir, tiny_spec s, uint64_t seed,
                             const char *tok) {
    sqz_hf_export *e;
    sqz_status st = sqz_hf_export_new(ctx, dir, &e);
    if (st) return st;
    const int hd = s.dim / s.heads;
    const sqz_config c = { .arch = SQZ_ARCH_LLAMA, .dim = s.dim, .hidden_dim = s.hidden,
                           .n_layers = s.layers, .n_heads = s.heads, .n_kv_heads = s.kv_heads,
                           .head_dim = hd, .vocab_size = s.vocab, .max_seq_len = 64,
                           .rope_theta = 10000, .norm_eps = 1e-5f, .tied_embeddings = 1,
                           .bos_id = -1, .eos_id = -1 };
    sqz_hf_export_config(e, &c);
    if (tok) sqz_hf_export_tokenizer(e, tok);
    int64_t n_total = 0;
    char name[128];
    int64_t sh[2] = { s.vocab, s.dim };
    st = sqz_hf_export_declare(e, "model.embed_tokens.weight", SQZ_TYPE_F16, 2, sh);
    n_total += sh[0] * sh[1];
    const struct { const char *n; int64_t r, c; } L[] = {
        { "input_layernorm.weight", 0, s.dim },
        { "self_attn.q_proj.weight", s.heads * hd, s.dim },
        { "self_attn.k_proj.weight", s.kv_heads * hd, s.dim },
        { "self_attn.v_proj.weight", s.kv_heads * hd, s.dim },
        { "self_attn.o_proj.weight", s.dim, s.heads * hd },
        { "post_attention_layernorm.weight", 0, s.dim },
        { "mlp.gate_proj.weight", s.hidden, s.dim },
        { "mlp.up_proj.weight", s.hidden, s.dim },
        { "mlp.down_proj.weight", s.dim, s.hidden },
    };
    for (int l = 0; l < s.layers && !st; l++)
        for (size_t k = 0; k < sizeof L / sizeof *L && !st; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, L[k].n);
            const int64_t shape[2] = { L[k].r, L[k].c };
            st = L[k].r ? sqz_hf_export_declare(e, name, SQZ_TYPE_F16, 2, shape)
                        : sqz_hf_export_declare(e, name, SQZ_TYPE_F16, 1, shape + 1);
            n_total += (L[k].r ? L[k].r : 1) * L[k].c;
        }
    const int64_t nd = s.dim;
    if (!st) st = sqz_hf_export_declare(e, "model.norm.weight", SQZ_TYPE_F16, 1, &nd);
    n_total += nd;
    if (!st) st = sqz_hf_export_begin(e);
    uint64_t r = seed;
    for (int64_t i = 0; i < n_total && !st; i++) {
        const float x = (float)(merge_rng_uniform(&r) - 0.5);
        st = sqz_hf_export_put_f32(e, &x, 1);
    }
    if (!st) st = sqz_hf_export_finish(e);
    sqz_hf_export_free(e);
    return st;
}

/* The bytes of tensor name in the folder's model.safetensors, malloc'ed; NULL if absent. */
static void *tensor_bytes(sqz_ctx *ctx, const char *dir, const char *name, size_t *n, char *dtype) {
    sqz_safetensors *st;
    if (sqz_st_open(ctx, dir, &st)) return NULL;
    const sqz_st_tensor *t = sqz_st_find(st, name);
    void *b = t ? malloc(t->nbytes ? t->nbytes : 1) : NULL;
    if (b) {
        memcpy(b, t->data, t->nbytes);
        *n = t->nbytes;
        if (dtype) snprintf(dtype, 8, "%s", t->dtype);
    }
    sqz_st_close(st);
    return b;
}

/* Every tensor of a's model.safetensors byte-identical in b's (the first that differs is
 * printed unless quiet). */
static int same_tensors_q(sqz_ctx *ctx, const char *a, const char *b, int quiet) {
    sqz_safetensors *sa, *sb;
    if (sqz_st_open(ctx, a, &sa)) return 0;
    if (sqz_st_open(ctx, b, &sb)) { sqz_st_close(sa); return 0; }
    int ok = sqz_st_count(sa) == sqz_st_count(sb);
    for (size_t i = 0; ok && i < sqz_st_count(sa); i++) {
        const sqz_st_tensor *x = sqz_st_get(sa, i), *y = sqz_st_find(sb, x->name);
        ok = y && x->nbytes == y->nbytes && !strcmp(x->dtype, y->dtype) && !memcmp(x->data, y->data, x->nbytes);
        if (!ok && !quiet) printf("# %s differs\n", x->name);
    }
    sqz_st_close(sa);
    sqz_st_close(sb);
    return ok;
}

static int same_tensors(sqz_ctx *ctx, const char *a, const char *b) { return same_tensors_q(ctx, a, b, 0); }

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_export(sqz_ctx *ctx, const char *tok) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/tiny0", tmp_root);
    CHECK(write_tiny(ctx, dir, TINY, 1, tok) == SQZ_OK, "export: a tiny model written: %s", sqz_ctx_error(ctx));
    CHECK(count_entries(dir) == (tok ? 4 : 3), "the folder holds config.json, model.safetensors, README.md%s",
          tok ? ", tokenizer.json" : "");
    CHECK(count_entries(tmp_root) >= 1, "no temporary folder beside it");
    { /* without a card from the caller the folder still says who wrote it */
        char card[600], text[400] = "";
        snprintf(card, sizeof card, "%s/README.md", dir);
        FILE *f = fopen(card, "r");
        const size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
        if (f) fclose(f);
        text[n] = 0;
        CHECK(!strncmp(text, "---\nlibrary_name: sqz\ntags:\n- sqz\n---\n\n# tiny0\n", 46),
              "its README.md: front matter with library_name: sqz, the folder's name as title");
    }
    sqz_model *m = NULL;
    CHECK(sqz_model_load(ctx, dir, NULL, &m) == SQZ_OK, "sqz loads the exported folder: %s", sqz_ctx_error(ctx));
    if (m) {
        sqz_model_info info;
        sqz_model_get_info(m, &info);
        CHECK(info.dim == 32 && info.n_layers == 2 && info.n_kv_heads == 1 && info.tied_embeddings,
              "its config reads back");
        CHECK(!strcmp(info.weight_type, "f16"), "weights f16 (got %s)", info.weight_type);
        sqz_model_free(m);
    }
    /* an existing non-empty folder is refused before anything is written */
    sqz_hf_export *e = NULL;
    CHECK(sqz_hf_export_new(ctx, dir, &e) == SQZ_ERR_IO && !e, "a non-empty output folder is refused");
    snprintf(path, sizeof path, "%s/missing/deeper", tmp_root);
    CHECK(sqz_hf_export_new(ctx, path, &e) == SQZ_ERR_IO, "a missing parent folder is refused");
    /* an export freed halfway leaves nothing */
    snprintf(path, sizeof path, "%s/half", tmp_root);
    const int before = count_entries(tmp_root);
    CHECK(sqz_hf_export_new(ctx, path, &e) == SQZ_OK, "export begun");
    const int64_t sh = 4;
    const sqz_config c = { .arch = SQZ_ARCH_LLAMA, .dim = 4, .hidden_dim = 4, .n_layers = 1,
                           .n_heads = 1, .n_kv_heads = 1, .head_dim = 4, .vocab_size = 4 };
    sqz_hf_export_config(e, &c);
    sqz_hf_export_declare(e, "x", SQZ_TYPE_F32, 1, &sh);
    CHECK(sqz_hf_export_begin(e) == SQZ_OK && count_entries(tmp_root) == before + 1, "a temporary folder exists");
    sqz_hf_export_free(e);
    CHECK(count_entries(tmp_root) == before, "freed unfinished: the temporary folder is gone");
}

/* ------------------------------------------------------------------ methods vs references */

enum { RN = 3, RROWS = 4, RCOLS = 8, RNN = RROWS * RCOLS };

typedef struct ref_case {
    float base[RNN], x[RN][RNN], xs[RN][RNN];
    double mp[RN][SQZ_MP_COUNT], g[SQZ_MP_COUNT];
} ref_case;

static void ref_init(ref_case *c) {
    memset(c, 0, sizeof *c);
    for (int j = 0; j < RNN; j++) c->base[j] = frand();
    for (int m = 0; m < RN; m++)
        for (int j = 0; j < RNN; j++) c->x[m][j] = c->base[j] + 0.3f * frand();
    c->x[0][5] = c->base[5] + 0.25f; /* equal magnitudes: ties broken by index */
    c->x[0][9] = c->base[9] - 0.25f;
}

static sqz_status run_method(const sqz_merge_method *me, ref_case *c, uint64_t seed, float *out) {
    float *xp[RN];
    for (int m = 0; m < RN; m++) {
        memcpy(c->xs[m], c->x[m], sizeof c->x[m]);
        xp[m] = c->xs[m];
    }
    const int n = me->max_models ? me->max_models : RN;
    sqz_merge_job job = { .name = "t", .rows = RROWS, .cols = RCOLS, .base = me->takes_base ? c->base : NULL,
                          .x = xp, .n_models = n, .mp = (const double (*)[SQZ_MP_COUNT])c->mp, .g = c->g,
                          .seed = seed };
    return me->merge(NULL, &job, out);
}

/* Naive rank: values below, or equal with a lower index. */
static int naive_rank(const double *v, int n, int i) {
    int r = 0;
    for (int j = 0; j < n; j++)
        if (fabs(v[j]) < fabs(v[i]) || (fabs(v[j]) == fabs(v[i]) && j < i)) r++;
    return r;
}

/* Reference GTA with a deterministic keep rule (magnitude or outliers). */
static void ref_gta(const ref_case *c, int outliers, int consensus, double *out) {
    double tau[RN][RNN];
    for (int m = 0; m < RN; m++) {
        for (int j = 0; j < RNN; j++) tau[m][j] = (double)c->x[m][j] - c->base[j];
        const double d = c->mp[m][SQZ_MP_DENSITY];
        if (d >= 1) continue;
        int lo = RNN - (int)(d * RNN), hi = RNN;
        if (outliers) {
            int top = (int)(c->mp[m][SQZ_MP_GAMMA] * RNN), bot = RNN - (int)(d * RNN) - top;
            if (bot < 0) top += bot, bot = 0;
            lo = bot, hi = RNN - top;
        }
        double keep[RNN];
        for (int j = 0; j < RNN; j++) {
            const int r = naive_rank(tau[m], RNN, j);
            keep[j] = r >= lo && r < hi ? tau[m][j] : 0;
        }
        memcpy(tau[m], keep, sizeof keep);
    }
    for (int j = 0; j < RNN; j++) {
        double s = 0, wsum = 0, mixed = 0;
        for (int m = 0; m < RN; m++) s += c->mp[m][SQZ_MP_WEIGHT] * tau[m][j];
        for (int m = 0; m < RN; m++) {
            const double w = c->mp[m][SQZ_MP_WEIGHT], d = w * tau[m][j];
            if (!consensus || (s >= 0 ? d > 0 : d < 0)) mixed += d, wsum += w;
        }
        if (consensus ? wsum == 0 : fabs(wsum) < 1e-8) wsum = 1;
        if (c->g[SQZ_MP_NORMALIZE] != 0) mixed /= wsum;
        out[j] = c->base[j] + c->g[SQZ_MP_LAMBDA] * mixed;
    }
}

static int close_all(const float *got, const double *want, int n, double tol) {
    for (int j = 0; j < n; j++)
        if (!(fabs(got[j] - want[j]) <= tol * (1 + fabs(want[j])))) {
            printf("#   [%d] got %.9g want %.9g\n", j, got[j], want[j]);
            return 0;
        }
    return 1;
}

/* merge_rank_keep (a selection) against naive ranks, on values with many equal magnitudes. */
static void test_rank_keep(void) {
    enum { RK = 301 };
    float v[RK];
    double dv[RK];
    uint8_t keep[RK];
    int ok = 1, cases = 0;
    for (int trial = 0; trial < 40 && ok; trial++) {
        const int levels = 1 + trial % 7;
        for (int j = 0; j < RK; j++) v[j] = (float)((int)(frand() * levels)) * (frand() < 0 ? -1 : 1), dv[j] = v[j];
        const int64_t lo = (int64_t)((frand() + 1) * 0.5 * RK), hi = lo + (int64_t)((frand() + 1) * 0.5 * (RK - lo));
        merge_rank_keep(v, RK, lo, hi, keep);
        for (int j = 0; j < RK && ok; j++) {
            const int r = naive_rank(dv, RK, j);
            ok = keep[j] == (r >= lo && r < hi);
            if (!ok) printf("#   trial %d: value %d (rank %d) kept %d for [%lld, %lld)\n", trial, j, r, keep[j],
                            (long long)lo, (long long)hi);
        }
        cases++;
    }
    CHECK(ok, "merge_rank_keep = ranks by |v| then index, on %d arrays with repeated magnitudes", cases);
}

static void test_methods(void) {
    test_rank_keep();
    ref_case c;
    float out[RNN], out2[RNN];
    double want[RNN];
    const double W[RN] = { 0.5, 1.0, 0.7 };

    /* linear */
    ref_init(&c);
    for (int m = 0; m < RN; m++) c.mp[m][SQZ_MP_WEIGHT] = W[m];
    c.g[SQZ_MP_NORMALIZE] = 1;
    run_method(&sqz_merge_linear, &c, 0, out);
    for (int j = 0; j < RNN; j++) {
        double s = 0;
        for (int m = 0; m < RN; m++) s += W[m] * c.x[m][j];
        want[j] = s / (W[0] + W[1] + W[2]);
    }
    CHECK(close_all(out, want, RNN, 1e-6), "linear = sum w x / sum w");
    c.mp[0][SQZ_MP_WEIGHT] = 1, c.mp[1][SQZ_MP_WEIGHT] = 0, c.mp[2][SQZ_MP_WEIGHT] = 0;
    c.x[0][3] = -0.0f;
    c.x[1][3] = INFINITY; /* a zero weight's model contributes nothing at all */
    run_method(&sqz_merge_linear, &c, 0, out);
    CHECK(!memcmp(out, c.x[0], sizeof out), "linear (1, 0, 0) = model 1 bit for bit (-0 and inf included)");

    /* task arithmetic, with and without normalize */
    ref_init(&c);
    for (int m = 0; m < RN; m++) c.mp[m][SQZ_MP_WEIGHT] = W[m], c.mp[m][SQZ_MP_DENSITY] = 1;
    c.g[SQZ_MP_LAMBDA] = 0.3;
    run_method(&sqz_merge_task_arithmetic, &c, 0, out);
    ref_gta(&c, 0, 0, want);
    CHECK(close_all(out, want, RNN, 1e-6), "task_arithmetic = base + lambda sum w tau");
    c.g[SQZ_MP_NORMALIZE] = 1;
    run_method(&sqz_merge_task_arithmetic, &c, 0, out);
    ref_gta(&c, 0, 0, want);
    CHECK(close_all(out, want, RNN, 1e-6), "task_arithmetic normalized");

    /* ties */
    ref_init(&c);
    const double D[RN] = { 0.3, 0.5, 0.9 };
    for (int m = 0; m < RN; m++) c.mp[m][SQZ_MP_WEIGHT] = W[m], c.mp[m][SQZ_MP_DENSITY] = D[m];
    c.g[SQZ_MP_LAMBDA] = 0.8, c.g[SQZ_MP_NORMALIZE] = 1;
    run_method(&sqz_merge_ties, &c, 0, out);
    ref_gta(&c, 0, 1, want);
    CHECK(close_all(out, want, RNN, 1e-6), "ties = trim, elect, disjoint mean (naive reference)");
    c.g[SQZ_MP_NORMALIZE] = 0;
    run_method(&sqz_merge_ties, &c, 0, out);
    ref_gta(&c, 0, 1, want);
    CHECK(close_all(out, want, RNN, 1e-6), "ties without normalize");

    /* breadcrumbs and breadcrumbs_ties */
    for (int m = 0; m < RN; m++) c.mp[m][SQZ_MP_GAMMA] = m == 2 ? 0.2 : 0.1; /* model 2: bot < 0 */
    c.g[SQZ_MP_NORMALIZE] = 0;
    run_method(&sqz_merge_breadcrumbs, &c, 0, out);
    ref_gta(&c, 1, 0, want);
    CHECK(close_all(out, want, RNN, 1e-6), "breadcrumbs = drop outliers and small values (naive reference)");
    run_method(&sqz_merge_breadcrumbs_ties, &c, 0, out);
    ref_gta(&c, 1, 1, want);
    CHECK(close_all(out, want, RNN, 1e-6), "breadcrumbs_ties");

    /* dare: density 1 is task arithmetic; seeded; kept values are tau / density */
    ref_init(&c);
    for (int m = 0; m < RN; m++) c.mp[m][SQZ_MP_WEIGHT] = W[m], c.mp[m][SQZ_MP_DENSITY] = 1;
    c.g[SQZ_MP_LAMBDA] = 1, c.g[SQZ_MP_RESCALE] = 1;
    run_method(&sqz_merge_dare_linear, &c, 7, out);
    ref_gta(&c, 0, 0, want);
    CHECK(close_all(out, want, RNN, 1e-6), "dare_linear at density 1 = task arithmetic");
    for (int m = 0; m < RN; m++) c.mp[m][SQZ_MP_DENSITY] = 0.5;
    run_method(&sqz_merge_dare_linear, &c, 7, out);
    run_method(&sqz_merge_dare_linear, &c, 7, out2);
    CHECK(!memcmp(out, out2, sizeof out), "dare_linear: the same seed, the same result");
    {
        int ok = 1, kept = 0;
        for (int m = 0; m < RN; m++)
            for (int j = 0; j < RNN; j++) {
                const float tau = c.x[m][j] - c.base[j];
                kept += c.xs[m][j] != 0;
                ok &= c.xs[m][j] == 0 || c.xs[m][j] == (float)(tau / 0.5);
            }
        CHECK(ok && kept > 0 && kept < RN * RNN, "dare: each value dropped or divided by density (%d of %d kept)",
              kept, RN * RNN);
    }
    run_method(&sqz_merge_dare_linear, &c, 8, out2);
    CHECK(memcmp(out, out2, sizeof out) != 0, "dare_linear: another seed, another result");
    run_method(&sqz_merge_dare_ties, &c, 7, out2);
    CHECK(memcmp(out, out2, sizeof out) != 0, "dare_ties differs from dare_linear (sign consensus)");
    /* the keep rate on a large tensor */
    {
        enum { BIG = 20000 };
        float *b = calloc(BIG, sizeof *b), *x = malloc(BIG * sizeof *x), *o = malloc(BIG * sizeof *o);
        for (int j = 0; j < BIG; j++) x[j] = 1.0f + (float)j / BIG;
        double mp[1][SQZ_MP_COUNT] = { { [SQZ_MP_WEIGHT] = 1, [SQZ_MP_DENSITY] = 0.3 } }, g[SQZ_MP_COUNT] = { 0 };
        g[SQZ_MP_LAMBDA] = 1, g[SQZ_MP_RESCALE] = 1;
        float *xp[1] = { x };
        sqz_merge_job job = { .name = "big", .rows = 1, .cols = BIG, .base = b, .x = xp, .n_models = 1,
                              .mp = (const double (*)[SQZ_MP_COUNT])mp, .g = g, .seed = 3 };
        sqz_merge_dare_linear.merge(NULL, &job, o);
        int kept = 0;
        for (int j = 0; j < BIG; j++) kept += o[j] != 0;
        CHECK(fabs(kept / (double)BIG - 0.3) < 0.02, "dare keeps ~density of the values (%.3f)", kept / (double)BIG);
        /* della: keep probability rises with the magnitude rank, from 0.1 to 0.5 */
        for (int j = 0; j < BIG; j++) x[j] = 1.0f + (float)j / BIG;
        mp[0][SQZ_MP_EPSILON] = 0.2;
        g[SQZ_MP_NORMALIZE] = 1;
        sqz_merge_della.merge(NULL, &job, o);
        int lo = 0, hi = 0, ok = 1;
        for (int j = 0; j < BIG; j++) {
            const double p = 0.1 + 0.4 * j / (BIG - 1.0);
            lo += j < BIG / 4 && o[j] != 0;
            hi += j >= 3 * BIG / 4 && o[j] != 0;
            ok &= o[j] == 0 || fabs(o[j] - (1.0 + (double)j / BIG) / p) < 1e-5 * (1.0 + (double)j / BIG) / p;
        }
        CHECK(ok, "della: kept values divided by their keep probability");
        CHECK(fabs(lo / (BIG / 4.0) - 0.15) < 0.03 && fabs(hi / (BIG / 4.0) - 0.45) < 0.03,
              "della: keep rates 0.15 / 0.45 in the lowest / highest quarter (%.3f / %.3f)",
              lo / (BIG / 4.0), hi / (BIG / 4.0));
        mp[0][SQZ_MP_EPSILON] = 0.35;
        CHECK(sqz_merge_della.merge(NULL, &job, o) == SQZ_ERR_ARG, "della: density - epsilon <= 0 refused");
        free(b), free(x), free(o);
    }

    /* slerp */
    ref_init(&c);
    c.g[SQZ_MP_T] = 0.3;
    run_method(&sqz_merge_slerp, &c, 0, out);
    {
        double na = 0, nb = 0, d = 0;
        for (int j = 0; j < RNN; j++)
            na += (double)c.base[j] * c.base[j], nb += (double)c.x[0][j] * c.x[0][j], d += (double)c.base[j] * c.x[0][j];
        const double th = acos(d / sqrt(na * nb));
        for (int j = 0; j < RNN; j++)
            want[j] = (sin(0.7 * th) * c.base[j] + sin(0.3 * th) * c.x[0][j]) / sin(th);
    }
    CHECK(close_all(out, want, RNN, 1e-6), "slerp t=0.3 = sin((1-t)th)/sin th b + sin(t th)/sin th x");
    c.g[SQZ_MP_T] = 0;
    run_method(&sqz_merge_slerp, &c, 0, out);
    for (int j = 0; j < RNN; j++) want[j] = c.base[j];
    CHECK(close_all(out, want, RNN, 1e-7), "slerp t=0 = base");
    for (int j = 0; j < RNN; j++) c.x[0][j] = 2 * c.base[j];
    c.g[SQZ_MP_T] = 0.25;
    run_method(&sqz_merge_slerp, &c, 0, out);
    for (int j = 0; j < RNN; j++) want[j] = 1.25 * c.base[j];
    CHECK(close_all(out, want, RNN, 1e-6), "slerp of colinear tensors = lerp");

    /* model_stock */
    ref_init(&c);
    for (int fw = 0; fw < 2; fw++) {
        c.g[SQZ_MP_FILTER_WISE] = fw;
        run_method(&sqz_merge_model_stock, &c, 0, out);
        const int span = fw ? RCOLS : RNN;
        for (int j0 = 0; j0 < RNN; j0 += span) {
            double cs = 0;
            for (int p = 0; p < RN; p++)
                for (int q = p + 1; q < RN; q++) {
                    double a = 0, b = 0, d = 0;
                    for (int j = j0; j < j0 + span; j++) {
                        const double u = c.x[p][j] - c.base[j], v = c.x[q][j] - c.base[j];
                        a += u * u, b += v * v, d += u * v;
                    }
                    cs += d / sqrt(a * b);
                }
            cs /= 3;
            const double t = 3 * cs / (1 + 2 * cs);
            for (int j = j0; j < j0 + span; j++)
                want[j] = t * (c.x[0][j] + c.x[1][j] + c.x[2][j]) / 3 + (1 - t) * c.base[j];
        }
        CHECK(close_all(out, want, RNN, 1e-6), "model_stock%s (naive reference)", fw ? " filter_wise" : "");
    }

    /* consensus: TALL masks voted over the tasks */
    ref_init(&c);
    const double ML[RN] = { 0.2, 0.4, 0.6 };
    for (int m = 0; m < RN; m++) c.mp[m][SQZ_MP_WEIGHT] = W[m], c.mp[m][SQZ_MP_MASK_LAMBDA] = ML[m];
    c.g[SQZ_MP_LAMBDA] = 0.7;
    int kept_by[4] = { 0 };
    for (int k = 1; k <= 3; k++) {
        c.g[SQZ_MP_K] = k;
        run_method(&sqz_merge_consensus, &c, 0, out);
        for (int j = 0; j < RNN; j++) {
            double t[RN], mtl = 0;
            for (int m = 0; m < RN; m++) mtl += t[m] = W[m] * ((double)c.x[m][j] - c.base[j]);
            int votes = 0;
            for (int m = 0; m < RN; m++) votes += fabs(t[m]) >= ML[m] * fabs(mtl - t[m]);
            want[j] = c.base[j] + (votes >= k ? 0.7 * mtl : 0);
            kept_by[k] += votes >= k;
        }
        CHECK(close_all(out, want, RNN, 1e-6), "consensus k=%d (naive reference; %d of %d weights kept)", k,
              kept_by[k], RNN);
    }
    CHECK(kept_by[1] > kept_by[2] && kept_by[2] > kept_by[3], "a larger k keeps fewer weights");

    /* tall_masks: task arithmetic, and each task's mask */
    c.g[SQZ_MP_LAMBDA] = 0.7;
    run_method(&sqz_merge_tall_masks, &c, 0, out);
    uint8_t b0[RNN / 8], b1[RNN / 8], b2[RNN / 8];
    uint8_t *bits[RN] = { b0, b1, b2 };
    float *xp[RN] = { c.xs[0], c.xs[1], c.xs[2] };
    const sqz_merge_job job = { .name = "t", .rows = RROWS, .cols = RCOLS, .base = c.base, .x = xp, .n_models = RN,
                                .mp = (const double (*)[SQZ_MP_COUNT])c.mp, .g = c.g };
    sqz_merge_tall_masks.masks(NULL, &job, bits);
    int ok = 1, ones = 0;
    for (int j = 0; j < RNN; j++) {
        double t[RN], mtl = 0;
        for (int m = 0; m < RN; m++) mtl += t[m] = W[m] * ((double)c.x[m][j] - c.base[j]);
        ok &= fabs(out[j] - (c.base[j] + 0.7 * mtl)) <= 1e-6;
        for (int m = 0; m < RN; m++) {
            const int want_bit = fabs(t[m]) >= ML[m] * fabs(mtl - t[m]), got = bits[m][j / 8] >> (j % 8) & 1;
            ok &= want_bit == got;
            ones += got;
        }
    }
    CHECK(ok && ones > 0 && ones < RN * RNN, "tall_masks: task arithmetic and each task's mask bits (%d of %d set)",
          ones, RN * RNN);

    /* tall_masks with use_ties: tau_MTL is TIES' (trimmed, elected signs, disjoint mean), the
     * masks compare the untrimmed task vectors with it */
    const double TD[RN] = { 0.5, 0.7, 1.0 };
    for (int m = 0; m < RN; m++) c.mp[m][SQZ_MP_DENSITY] = TD[m];
    c.g[SQZ_MP_USE_TIES] = 1, c.g[SQZ_MP_NORMALIZE] = 1;
    double ties_want[RNN];
    ref_gta(&c, 0, 1, ties_want);
    run_method(&sqz_merge_tall_masks, &c, 0, out);
    sqz_merge_tall_masks.masks(NULL, &job, bits);
    ok = close_all(out, ties_want, RNN, 1e-6);
    int ones_ties = 0, differs = 0;
    for (int j = 0; j < RNN; j++) {
        const double mtl = (ties_want[j] - c.base[j]) / 0.7;
        double ta = 0;
        for (int m = 0; m < RN; m++) ta += W[m] * ((double)c.x[m][j] - c.base[j]);
        differs += fabs(mtl - ta) > 1e-6;
        for (int m = 0; m < RN; m++) {
            const double t = W[m] * ((double)c.x[m][j] - c.base[j]);
            const int want_bit = fabs(t) >= ML[m] * fabs(mtl - t), got = bits[m][j / 8] >> (j % 8) & 1;
            /* values where |t| and the threshold tie within rounding are not checked */
            if (fabs(fabs(t) - ML[m] * fabs(mtl - t)) > 1e-9) ok &= want_bit == got;
            ones_ties += got;
        }
    }
    CHECK(ok && differs > 0 && ones_ties > 0 && ones_ties < RN * RNN,
          "tall_masks use_ties: TIES' merge and masks against it (%d values differ from task arithmetic, %d bits set)",
          differs, ones_ties);
    c.g[SQZ_MP_USE_TIES] = 0, c.g[SQZ_MP_NORMALIZE] = 0;
    for (int m = 0; m < RN; m++) c.mp[m][SQZ_MP_DENSITY] = 1;
}

/* ------------------------------------------------------------------ the driver */

static sqz_status merge_yaml(sqz_ctx *ctx, const char *yaml, const char *out, const char *type, uint64_t seed) {
    char path[600];
    snprintf(path, sizeof path, "%s/cfg.yaml", tmp_root);
    write_text(path, yaml);
    const sqz_merge_opts o = { .type = type, .seed = seed };
    sqz_merge_result r;
    return sqz_merge_models(ctx, path, out, &o, &r);
}

static void test_driver(sqz_ctx *ctx, const char *tok) {
    char m[3][512], out[512], out2[512], yaml[4096], path[600];
    for (int i = 0; i < 3; i++) {
        snprintf(m[i], sizeof m[i], "%s/in%d", tmp_root, i);
        write_tiny(ctx, m[i], TINY, 100 + (uint64_t)i, tok);
    }
    /* weights (1, 0, 0), f16 out from f16 in: model 1 byte for byte */
    snprintf(out, sizeof out, "%s/w100", tmp_root);
    snprintf(yaml, sizeof yaml,
             "merge_method: linear\nmodels:\n  - model: in0\n    parameters: {weight: 1}\n"
             "  - model: in1\n    parameters: {weight: 0}\n  - model: in2\n    parameters:\n      weight: 0.0\n"
             "dtype: float16\n");
    CHECK(merge_yaml(ctx, yaml, out, NULL, 0) == SQZ_OK, "linear (1,0,0) merge (paths relative to the config): %s",
          sqz_ctx_error(ctx));
    CHECK(same_tensors(ctx, m[0], out), "weights (1, 0, 0) reproduce model 1 bit for bit");

    /* a GGUF input: Q/K rows permuted in the file, put back for the merge */
    if (tok) {
        snprintf(path, sizeof path, "%s/in0.gguf", tmp_root);
        sqz_model *mm = NULL;
        sqz_convert_opts co = { .type = "f32" };
        int ok = sqz_model_load(ctx, m[0], NULL, &mm) == SQZ_OK && sqz_convert(ctx, mm, path, &co, NULL) == SQZ_OK;
        sqz_model_free(mm);
        CHECK(ok, "model 1 as an f32 GGUF file: %s", sqz_ctx_error(ctx));
        snprintf(out, sizeof out, "%s/w100g", tmp_root);
        snprintf(yaml, sizeof yaml,
                 "merge_method: linear\nmodels:\n  - model: in0.gguf\n    parameters: {weight: 1}\n"
                 "  - model: in1\n    parameters: {weight: 0}\ndtype: float16\ntokenizer_source: in0\n");
        CHECK(merge_yaml(ctx, yaml, out, NULL, 0) == SQZ_OK, "a GGUF and an HF input merge: %s", sqz_ctx_error(ctx));
        CHECK(same_tensors(ctx, m[0], out), "GGUF input with weight 1: model 1 bit for bit (RoPE rows restored)");
        /* a quantized GGUF input is dequantized block by block */
        snprintf(path, sizeof path, "%s/in0-q8.gguf", tmp_root);
        co.type = "q8_0";
        ok = sqz_model_load(ctx, m[0], NULL, &mm) == SQZ_OK && sqz_convert(ctx, mm, path, &co, NULL) == SQZ_OK;
        sqz_model_free(mm);
        snprintf(out, sizeof out, "%s/w100q", tmp_root);
        snprintf(yaml, sizeof yaml,
                 "merge_method: linear\nmodels:\n  - model: in0-q8.gguf\n    parameters: {weight: 1}\n"
                 "  - model: in1\n    parameters: {weight: 0}\ntokenizer_source: in0\n");
        CHECK(ok && merge_yaml(ctx, yaml, out, NULL, 0) == SQZ_OK, "a q8_0 GGUF input merges: %s", sqz_ctx_error(ctx));
        const char *names[] = { "model.layers.1.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                                "model.layers.1.mlp.down_proj.weight", "model.embed_tokens.weight" };
        double worst = 0;
        int exact = 1;
        for (int k = 0; k < 4; k++) {
            size_t na = 0, nb = 0;
            float *a = tensor_bytes(ctx, out, names[k], &na, NULL);
            uint16_t *b = tensor_bytes(ctx, m[0], names[k], &nb, NULL);
            for (size_t j = 0; a && b && na == 2 * nb && j < nb / 2; j++) {
                const double d = fabs(a[j] - sqz_f16_to_f32(b[j]));
                worst = d > worst ? d : worst;
                exact &= d == 0;
            }
            if (!a || !b || na != 2 * nb) worst = INFINITY;
            free(a), free(b);
        }
        /* values in [-0.5, 0.5): a q8_0 step is at most 0.5 / 127 (half a step, and the f16 scale's rounding) */
        CHECK(worst <= 0.5 / 127 && !exact, "q8_0 input: model 1 within a q8_0 step (worst %.5f), "
              "Q/K rows in HF order", worst);
    } else {
        SKIP("GGUF input: needs ../shared's tokenizer.json (a GGUF carries one)");
    }

    /* seeded determinism through the driver */
    snprintf(yaml, sizeof yaml,
             "merge_method: dare_ties\nbase_model: in0\nmodels:\n  - model: in1\n  - model: in2\n"
             "parameters:\n  weight: [0.2, 1.0]\n  density:\n    - filter: mlp\n      value: 0.3\n    - value: 0.7\n");
    snprintf(out, sizeof out, "%s/dare1", tmp_root);
    snprintf(out2, sizeof out2, "%s/dare2", tmp_root);
    CHECK(merge_yaml(ctx, yaml, out, NULL, 5) == SQZ_OK && merge_yaml(ctx, yaml, out2, NULL, 5) == SQZ_OK,
          "dare_ties twice with seed 5 (gradients, filters): %s", sqz_ctx_error(ctx));
    CHECK(same_tensors(ctx, out, out2), "the same seed, the same model");
    rm_tree(out2);
    CHECK(merge_yaml(ctx, yaml, out2, NULL, 6) == SQZ_OK && !same_tensors_q(ctx, out, out2, 1),
          "another seed, another model");

    /* a gradient over the layers: linear weights [1, 0] / [0, 1] give layer 0 of model 1 and
     * the last layer of model 2 */
    snprintf(out, sizeof out, "%s/grad", tmp_root);
    snprintf(yaml, sizeof yaml,
             "merge_method: linear\nmodels:\n  - model: in0\n    parameters: {weight: [1, 0]}\n"
             "  - model: in1\n    parameters: {weight: [0, 1]}\ndtype: float16\n");
    CHECK(merge_yaml(ctx, yaml, out, NULL, 0) == SQZ_OK, "a layer gradient: %s", sqz_ctx_error(ctx));
    {
        size_t na = 0, nb = 0, nc = 0, nd = 0;
        void *a = tensor_bytes(ctx, out, "model.layers.0.mlp.up_proj.weight", &na, NULL);
        void *b = tensor_bytes(ctx, m[0], "model.layers.0.mlp.up_proj.weight", &nb, NULL);
        void *cc = tensor_bytes(ctx, out, "model.layers.1.mlp.up_proj.weight", &nc, NULL);
        void *d = tensor_bytes(ctx, m[1], "model.layers.1.mlp.up_proj.weight", &nd, NULL);
        CHECK(a && b && cc && d && na == nb && nc == nd && !memcmp(a, b, na) && !memcmp(cc, d, nc),
              "layer 0 from model 1, layer 1 (t = 1) from model 2");
        free(a), free(b), free(cc), free(d);
    }

    /* tall_masks: one task is rebuilt exactly as that model (its mask is all ones) */
    snprintf(out, sizeof out, "%s/tall1", tmp_root);
    snprintf(yaml, sizeof yaml, "merge_method: tall_masks\nbase_model: in0\nmodels:\n  - model: in1\n"
             "parameters: {lambda: 0.5}\n");
    CHECK(merge_yaml(ctx, yaml, out, NULL, 0) == SQZ_OK, "tall_masks of one task: %s", sqz_ctx_error(ctx));
    snprintf(path, sizeof path, "%s/cfg.yaml", tmp_root);
    snprintf(out2, sizeof out2, "%s/tall1-x", tmp_root);
    const sqz_merge_opts f16 = { .type = "f16" };
    CHECK(sqz_merge_extract(ctx, path, out, 0, out2, &f16, NULL) == SQZ_OK, "--extract 0: %s", sqz_ctx_error(ctx));
    CHECK(same_tensors(ctx, m[1], out2), "the extracted task, in f16, is its model byte for byte");
    CHECK(sqz_merge_extract(ctx, path, out, 1, out2, &f16, NULL) == SQZ_ERR_ARG, "task 1 of 1 task refused");
    /* three tasks: the masks as stored, and a task rebuilt from them */
    snprintf(out, sizeof out, "%s/tall3", tmp_root);
    snprintf(yaml, sizeof yaml, "merge_method: tall_masks\nbase_model: in0\nmodels:\n  - model: in1\n"
             "  - model: in2\n    parameters: {mask_lambda: 0.3}\n  - model: wide0\nparameters: {lambda: 0.8}\n");
    char third[512];
    snprintf(third, sizeof third, "%s/wide0", tmp_root);
    write_tiny(ctx, third, TINY, 77, tok);
    CHECK(merge_yaml(ctx, yaml, out, NULL, 0) == SQZ_OK, "tall_masks of three tasks: %s", sqz_ctx_error(ctx));
    snprintf(out2, sizeof out2, "%s/tall3-x", tmp_root);
    CHECK(sqz_merge_extract(ctx, path, out, 1, out2, NULL, NULL) == SQZ_OK, "--extract 1: %s", sqz_ctx_error(ctx));
    {
        const char *tn = "model.layers.1.mlp.down_proj.weight";
        size_t n0, n1, n2, n3, nb, nx;
        uint16_t *b = tensor_bytes(ctx, m[0], tn, &n0, NULL), *x1 = tensor_bytes(ctx, m[1], tn, &n1, NULL),
                 *x2 = tensor_bytes(ctx, m[2], tn, &n2, NULL), *x3 = tensor_bytes(ctx, third, tn, &n3, NULL);
        char mn[160];
        snprintf(mn, sizeof mn, "tall_mask.1.%s", tn);
        uint8_t *bits = tensor_bytes(ctx, out, mn, &nb, NULL);
        float *ext = tensor_bytes(ctx, out2, tn, &nx, NULL);
        int ok = b && x1 && x2 && x3 && bits && ext && nx == n0 * 2 && nb == (n0 / 2 + 7) / 8, ones = 0;
        for (size_t j = 0; ok && j < n0 / 2; j++) {
            const double t1 = sqz_f16_to_f32(x1[j]) - (double)sqz_f16_to_f32(b[j]),
                         t2 = sqz_f16_to_f32(x2[j]) - (double)sqz_f16_to_f32(b[j]),
                         t3 = sqz_f16_to_f32(x3[j]) - (double)sqz_f16_to_f32(b[j]), mtl = t1 + t2 + t3;
            const int bit = fabs(t2) >= 0.3 * fabs(mtl - t2);
            ok &= (bits[j / 8] >> (j % 8) & 1) == bit;
            ones += bit;
            const double want = sqz_f16_to_f32(b[j]) + (bit ? mtl : 0);
            ok &= fabs(ext[j] - want) <= 1e-5;
        }
        CHECK(ok && ones > 0 && ones < (int)(n0 / 2), "task 1's stored mask (mask_lambda 0.3) and its rebuilt "
              "tensor = base + mask * tau_MTL (%d of %zu set)", ones, n0 / 2);
        free(b), free(x1), free(x2), free(x3), free(bits), free(ext);
    }
    CHECK(sqz_merge_extract(ctx, path, m[1], 0, out2, NULL, NULL) != SQZ_OK && strstr(sqz_ctx_error(ctx), "tall_mask"),
          "extracting from a folder without masks is refused: %s", sqz_ctx_error(ctx));
    rm_tree(out), rm_tree(out2), rm_tree(third);
    snprintf(out, sizeof out, "%s/tall1", tmp_root), rm_tree(out);
    snprintf(out, sizeof out, "%s/tall1-x", tmp_root), rm_tree(out);

    /* errors: one message, nothing written */
    const int before = count_entries(tmp_root);
    char other[512];
    snprintf(other, sizeof other, "%s/wide", tmp_root);
    tiny_spec wide = TINY;
    wide.hidden = 96;
    write_tiny(ctx, other, wide, 9, tok);
    snprintf(out, sizeof out, "%s/bad", tmp_root);
    const struct { const char *yaml; sqz_status st; const char *msg; } bad[] = {
        { "merge_method: ties\nbase_model: in0\nmodels:\n  - model: in1\n  - model: wide\n"
          "parameters: {weight: 1}\n", SQZ_ERR_FORMAT, "FFN size" },
        { "merge_method: linear\nmodels:\n  - model: in0\n  - model: in1\n", SQZ_ERR_ARG, "no weight" },
        { "merge_method: frankenmerge\nmodels:\n  - model: in0\n", SQZ_ERR_UNSUPPORTED, "unknown merge_method" },
        { "merge_method: slerp\nbase_model: in0\nmodels:\n  - model: in1\n  - model: in2\nparameters: {t: 0.5}\n",
          SQZ_ERR_ARG, "exactly 1" },
        { "merge_method: ties\nmodels:\n  - model: in1\nparameters: {weight: 1}\n", SQZ_ERR_ARG, "needs a base_model" },
        { "merge_method: linear\nmodels:\n  - model: in0\n    parameters: {weight: 1, t: 2}\n", SQZ_ERR_ARG,
          "does not take parameter t" },
        { "merge_method: linear\nmodels:\n  - model: in0\n    parameters: {wieght: 1}\n", SQZ_ERR_FORMAT,
          "unknown parameter 'wieght'" },
        { "merge_method: linear\nmodels: [\n", SQZ_ERR_FORMAT, "cfg.yaml:" },
        { "merge_method: della\nbase_model: in0\nmodels:\n  - model: in1\n"
          "parameters: {weight: 1, density: 0.5, epsilon: 0.5}\n", SQZ_ERR_ARG, "della needs" },
        { "merge_method: ties\nbase_model: in0\nmodels:\n  - model: in1\n"
          "parameters: {weight: 1, density: [1, 1.5]}\n", SQZ_ERR_ARG, "density = 1.5" },
        { "merge_method: linear\nmodels:\n  - model: in0\n    parameters: {weight: 1}\nmystery: 3\n", SQZ_ERR_FORMAT,
          "unsupported key 'mystery'" },
        { "merge_method: linear\nmodels:\n  - model: in0\n    parameters: {weight: 1}\n  - model: nowhere\n"
          "    parameters: {weight: 1}\n", SQZ_ERR_IO, "nowhere" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const sqz_status st = merge_yaml(ctx, bad[i].yaml, out, NULL, 0);
        CHECK(st == bad[i].st && strstr(sqz_ctx_error(ctx), bad[i].msg), "refused: %s (%s)", bad[i].msg,
              sqz_ctx_error(ctx));
    }
    CHECK(merge_yaml(ctx, "merge_method: linear\nmodels:\n  - model: in0\n    parameters: {weight: 1}\n",
                     out, "q4_0", 0) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "f32, f16 or bf16"),
          "a quantized type for a folder is refused: %s", sqz_ctx_error(ctx));
    CHECK(count_entries(tmp_root) == before + 1 && count_entries(out) == -1, "no output, no temporary left");
    /* an existing output is not touched */
    snprintf(yaml, sizeof yaml, "merge_method: linear\nmodels:\n  - model: in0\n    parameters: {weight: 1}\n");
    CHECK(merge_yaml(ctx, yaml, m[1], NULL, 0) == SQZ_ERR_IO && count_entries(m[1]) == (tok ? 4 : 3),
          "a non-empty output folder is refused and left as it was");
    if (tok) {
        snprintf(out, sizeof out, "%s/q.gguf", tmp_root);
        CHECK(merge_yaml(ctx, yaml, out, "q8_0", 0) == SQZ_OK, "merge straight to a q8_0 GGUF: %s", sqz_ctx_error(ctx));
        sqz_model *g = NULL;
        CHECK(sqz_model_load(ctx, out, NULL, &g) == SQZ_OK, "it loads");
        sqz_model_info info;
        if (g) sqz_model_get_info(g, &info);
        CHECK(g && !strcmp(info.weight_type, "q8_0"), "its weights are q8_0");
        sqz_model_free(g);
        CHECK(count_entries(tmp_root) == before + 2, "the f32 folder it went through is gone");
    }
}

/* ------------------------------------------------------------------ acceptance */

/* ------------------------------------------------------------------ opcm */

/* OPCM's projection: the thin-SVD version against the plain full-SVD reference, and the
 * split rank by hand. */
static void test_opcm_project(void) {
    const double s1[] = { 3, 1 }, s2[] = { 1, 1, 1, 1 }, s0[] = { 0, 0 };
    CHECK(merge_opcm_split_rank(s1, 2, 0.5) == 0 && merge_opcm_split_rank(s2, 4, 0.5) == 2 &&
          merge_opcm_split_rank(s2, 4, 0.6) == 2 && merge_opcm_split_rank(s2, 4, 0.8) == 3 &&
          merge_opcm_split_rank(s0, 2, 0.5) == 0 && merge_opcm_split_rank(s2, 4, 1.0) == 0,
          "opcm split rank: leading values whose cumulative share is <= alpha");
    const int shapes[][2] = { { 7, 5 }, { 5, 7 }, { 6, 6 }, { 9, 3 }, { 1, 4 } };
    const double alphas[] = { 0, 0.3, 0.5, 0.8, 1 };
    double worst = 0, moved = 0;
    int ok = 1;
    for (size_t a = 0; a < sizeof shapes / sizeof *shapes; a++)
        for (size_t b = 0; b < sizeof alphas / sizeof *alphas; b++) {
            const int m = shapes[a][0], n = shapes[a][1];
            float d[81], t[81], t1[81], t2[81];
            for (int j = 0; j < m * n; j++) d[j] = frand(), t[j] = frand(), t1[j] = t2[j] = t[j];
            ok &= merge_opcm_project(NULL, "x", d, t1, m, n, alphas[b]) == SQZ_OK &&
                  merge_opcm_project_ref(NULL, "x", d, t2, m, n, alphas[b]) == SQZ_OK;
            for (int j = 0; j < m * n; j++) {
                if (fabs(t1[j] - t2[j]) > worst) worst = fabs(t1[j] - t2[j]);
                if (fabs(t1[j] - t[j]) > moved) moved = fabs(t1[j] - t[j]);
            }
        }
    CHECK(ok && worst < 1e-5 && moved > 0.1, "opcm projection (thin SVD) = the full-SVD reference "
          "on 25 shapes x alphas (worst %.2g; it moves tau by up to %.2f)", worst, moved);
}

static float half_to_float(uint16_t h) {
    const uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, f = h & 1023;
    uint32_t u;
    if (e == 0) { /* zero or subnormal */
        const float v = (float)f * (1.0f / 16777216.0f);
        return s ? -v : v;
    }
    u = e == 31 ? s | 0x7f800000u | (f << 13) : s | ((e + 112) << 23) | (f << 13);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

/* ||a - b|| over every tensor of two folders' model.safetensors (F16 or F32 each). */
static double folder_dist(sqz_ctx *ctx, const char *a, const char *b) {
    sqz_safetensors *sa, *sb;
    if (sqz_st_open(ctx, a, &sa)) return -1;
    if (sqz_st_open(ctx, b, &sb)) { sqz_st_close(sa); return -1; }
    double sq = 0;
    for (size_t i = 0; i < sqz_st_count(sa); i++) {
        const sqz_st_tensor *x = sqz_st_get(sa, i), *y = sqz_st_find(sb, x->name);
        if (!y) { sq = -1; break; }
        const size_t n = x->nbytes / (strcmp(x->dtype, "F16") ? 4 : 2);
        for (size_t j = 0; j < n; j++) {
            const double u = !strcmp(x->dtype, "F16") ? half_to_float(((const uint16_t *)x->data)[j]) : ((const float *)x->data)[j];
            const double v = !strcmp(y->dtype, "F16") ? half_to_float(((const uint16_t *)y->data)[j]) : ((const float *)y->data)[j];
            sq += (u - v) * (u - v);
        }
    }
    sqz_st_close(sa);
    sqz_st_close(sb);
    return sq < 0 ? -1 : sqrt(sq);
}

/* The continual driver on tiny models: one model is itself; the config's three in order and
 * the same three added one at a time by sqz_merge_continual give the same bytes; the merged
 * task vector's norm is the mean of the task vectors' (the paper's rescaling); a folder that
 * is no state, and a model of another shape, are refused with the state unchanged. */
static void test_opcm_driver(sqz_ctx *ctx, const char *tok) {
    char m[4][512], out[512], st[512], yaml[4096], path[600], json[700];
    const char *names[4] = { "in0", "in1", "in2", "opcm-x3" };
    for (int i = 0; i < 4; i++) snprintf(m[i], sizeof m[i], "%s/%s", tmp_root, names[i]);
    write_tiny(ctx, m[3], TINY, 78, tok);
    snprintf(out, sizeof out, "%s/opcm1", tmp_root);
    snprintf(yaml, sizeof yaml, "merge_method: opcm\nbase_model: in0\nmodels:\n  - model: in1\ndtype: float16\n");
    CHECK(merge_yaml(ctx, yaml, out, NULL, 0) == SQZ_OK, "opcm of one model: %s", sqz_ctx_error(ctx));
    CHECK(same_tensors(ctx, m[1], out), "opcm of one model is that model byte for byte");
    snprintf(out, sizeof out, "%s/opcm3", tmp_root);
    snprintf(yaml, sizeof yaml, "merge_method: opcm\nbase_model: in0\nmodels:\n  - model: in1\n  - model: in2\n"
             "  - model: opcm-x3\nparameters: {alpha: 0.4}\n");
    CHECK(merge_yaml(ctx, yaml, out, NULL, 0) == SQZ_OK, "opcm of three models (alpha 0.4): %s", sqz_ctx_error(ctx));
    snprintf(st, sizeof st, "%s/opcm-state", tmp_root);
    snprintf(yaml, sizeof yaml, "merge_method: opcm\nbase_model: in0\nmodels:\n  - model: in1\nparameters: {alpha: 0.4}\n");
    sqz_merge_result r = { 0 };
    int ok = merge_yaml(ctx, yaml, st, NULL, 0) == SQZ_OK;
    ok = ok && sqz_merge_continual(ctx, st, m[2], NULL, &r) == SQZ_OK && r.n_models == 2;
    ok = ok && sqz_merge_continual(ctx, st, m[3], NULL, &r) == SQZ_OK && r.n_models == 3;
    CHECK(ok, "a state of one model, then two added by sqz_merge_continual: %s", sqz_ctx_error(ctx));
    CHECK(same_tensors(ctx, out, st), "... the same bytes as the config's three in order");
    const double want = (folder_dist(ctx, m[1], m[0]) + folder_dist(ctx, m[2], m[0]) + folder_dist(ctx, m[3], m[0])) / 3;
    const double got = folder_dist(ctx, st, m[0]);
    CHECK(want > 0 && fabs(got - want) < 1e-5 * want, "the merged task vector's norm %.6f is the mean task "
          "vector norm %.6f", got, want);
    const double lin = folder_dist(ctx, out, m[1]);
    CHECK(lin > 0.01 * want, "... and the merge is not model 1 (distance %.3f)", lin);
    /* refusals, the state unchanged */
    const int entries = count_entries(tmp_root);
    CHECK(sqz_merge_continual(ctx, m[1], m[2], NULL, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "opcm.json"),
          "--continual on a folder that is no running merge: %s", sqz_ctx_error(ctx));
    char other[512];
    snprintf(other, sizeof other, "%s/other-shape", tmp_root);
    const tiny_spec WIDE = { 32, 96, 2, 2, 1, 4096 };
    write_tiny(ctx, other, WIDE, 9, tok);
    CHECK(sqz_merge_continual(ctx, st, other, NULL, NULL) != SQZ_OK && strstr(sqz_ctx_error(ctx), "FFN size"),
          "a model of another shape refused: %s", sqz_ctx_error(ctx));
    CHECK(same_tensors(ctx, out, st) && count_entries(tmp_root) == entries + 1, "... the state unchanged, "
          "nothing left beside it");
    snprintf(json, sizeof json, "%s/opcm.json", st);
    size_t len = 0;
    char *text = (char *)test_read_file(json, &len);
    CHECK(text && strstr(text, "\"n_models\":\t3") && strstr(text, "opcm-x3"), "opcm.json: 3 models, their paths");
    free(text);
    (void)path;
    rm_tree(other);
}

/* tall_masks' mask_lambda tuned per task: each task's chosen value is the grid's best by the
 * perplexities reported, and the task extracted from the stored merge and mask (--extract)
 * has the perplexity the tuning measured for that value. */
static void test_tall_tune(sqz_ctx *ctx, const char *tok) {
    if (!tok) {
        SKIP("tall_masks tuning: needs ../shared's tokenizer.json");
        return;
    }
    char m[4][512], out[512], x[512], yaml[4096], cfg[600], txt[600];
    const char *names[4] = { "in0", "in1", "in2", "tune-x3" };
    for (int i = 0; i < 4; i++) snprintf(m[i], sizeof m[i], "%s/%s", tmp_root, names[i]);
    write_tiny(ctx, m[3], TINY, 79, tok);
    snprintf(txt, sizeof txt, "%s/train.txt", tmp_root);
    write_text(txt, "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst "
                    "of times, it was the age of wisdom, it was the age of foolishness. In the beginning "
                    "God created the heaven and the earth. Return the value of the attribute.\n");
    snprintf(yaml, sizeof yaml, "merge_method: tall_masks\nbase_model: in0\nmodels:\n  - model: in1\n"
             "  - model: in2\n  - model: tune-x3\nparameters: {lambda: 0.5}\n");
    snprintf(cfg, sizeof cfg, "%s/tune.yaml", tmp_root);
    write_text(cfg, yaml);
    snprintf(out, sizeof out, "%s/tall-tuned", tmp_root);
    const char *dom[2] = { "in1", "x3" }, *text[2] = { txt, txt };
    const sqz_merge_opts o = { .n_tune = 2, .tune_domain = dom, .tune_text = text, .tune_ctx = 16 };
    sqz_merge_result r;
    CHECK(sqz_merge_models(ctx, cfg, out, &o, &r) == SQZ_OK, "tall_masks with --tune for tasks 0 and 2: %s",
          sqz_ctx_error(ctx));
    int ok = r.n_tuned == 3 && r.n_tune_grid == 5 && isnan(r.tuned_mask_lambda[1]);
    for (int t = 0; t < 3 && ok; t += 2) {
        int best = 0;
        for (int k = 1; k < r.n_tune_grid; k++) best = r.tune_ppl[t][k] < r.tune_ppl[t][best] ? k : best;
        ok = r.tuned_mask_lambda[t] == r.tune_grid[best] && r.tune_ppl[t][best] > 1;
    }
    CHECK(ok, "each tuned task's mask_lambda is the grid's lowest perplexity (task 0: %g, task 2: %g); "
          "task 1 (no text) untouched", r.tuned_mask_lambda[0], r.tuned_mask_lambda[2]);
    /* task 2 rebuilt from the stored merge and mask: the perplexity the tuning measured */
    snprintf(x, sizeof x, "%s/tall-tuned-x", tmp_root);
    sqz_model *mm = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0, len = 0;
    uint8_t *t = test_read_file(txt, &len);
    double ppl = 0;
    if (sqz_merge_extract(ctx, cfg, out, 2, x, NULL, NULL) == SQZ_OK && sqz_model_load(ctx, x, NULL, &mm) == SQZ_OK &&
        t && sqz_tokenize(ctx, mm, (const char *)t, len, 0, &ids, &n_ids) == SQZ_OK) {
        const sqz_ppl_opts po = { .n_ctx = 16 };
        sqz_ppl_result pr;
        if (sqz_perplexity(ctx, mm, ids, n_ids, &po, &pr) == SQZ_OK) ppl = pr.ppl;
    }
    int k2 = 0;
    for (int k = 0; k < r.n_tune_grid; k++)
        if (r.tune_grid[k] == r.tuned_mask_lambda[2]) k2 = k;
    CHECK(ppl > 0 && fabs(ppl - r.tune_ppl[2][k2]) < 1e-4 * ppl, "task 2 extracted from the stored mask: ppl "
          "%.5f, as tuned %.5f", ppl, r.tune_ppl[2][k2]);
    sqz_free(ids);
    free(t);
    sqz_model_free(mm);
    rm_tree(x), rm_tree(out), rm_tree(m[3]);
}

static void test_acceptance(sqz_ctx *ctx) {
    const char *dir = test_shared("models/merge/ft-shakespeare/config.json");
    if (!dir || getenv("SQZ_QUICK")) {
        SKIP("linear merge vs merge_baselines.json: needs ../shared (and not SQZ_QUICK)");
        return;
    }
    char root[1024], yaml[4096], cfg[600], out[600];
    snprintf(root, sizeof root, "%s", test_shared("models/merge"));
    snprintf(yaml, sizeof yaml,
             "merge_method: linear\nmodels:\n  - model: %s/ft-shakespeare\n  - model: %s/ft-bible\n"
             "  - model: %s/ft-pydoc\nparameters:\n  weight: 1.0\ndtype: float32\n", root, root, root);
    snprintf(cfg, sizeof cfg, "%s/linear.yaml", tmp_root);
    snprintf(out, sizeof out, "%s/linear-ft", tmp_root);
    write_text(cfg, yaml);
    sqz_merge_result r;
    const sqz_merge_opts o = { 0 };
    CHECK(sqz_merge_models(ctx, cfg, out, &o, &r) == SQZ_OK, "linear merge of the three fine-tunes: %s",
          sqz_ctx_error(ctx));
    CHECK(r.n_tensors == 74 && r.n_models == 3, "74 tensors of 3 models");
    sqz_model *m = NULL;
    char text_path[1100];
    snprintf(text_path, sizeof text_path, "%s/shakespeare.test.txt", root);
    size_t len = 0;
    uint8_t *text = test_read_file(text_path, &len);
    if (sqz_model_load(ctx, out, NULL, &m) || !text) {
        CHECK(0, "load the merge and the text: %s", sqz_ctx_error(ctx));
        free(text);
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    sqz_tokenize(ctx, m, (const char *)text, len, 0, &ids, &n);
    sqz_ppl_opts po = { .n_ctx = 256, .max_tokens = 30000 };
    sqz_ppl_result pr;
    CHECK(sqz_perplexity(ctx, m, ids, n, &po, &pr) == SQZ_OK, "perplexity on shakespeare");
    /* merge_baselines.json: "linear (mean of fine-tunes)" shakespeare */
    CHECK_CLOSE(pr.ppl, 42.3234, 0, 1e-3, "linear merge ppl on shakespeare within 0.1 %% of PyTorch's 42.3234 (%.4f)",
                pr.ppl);
    sqz_free(ids);
    free(text);
    sqz_model_free(m);
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/sqz-test-merge-XXXXXX");
    if (!mkdtemp(tmp_root)) {
        printf("not ok - mkdtemp\n");
        return 1;
    }
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_ctx_set_threads(ctx, 2);
    const char *tok = test_shared("models/sqz-llama-14m/tokenizer.json");
    char tokbuf[1024] = "";
    if (tok) snprintf(tokbuf, sizeof tokbuf, "%s", tok);
    test_st_writer(ctx);
    test_export(ctx, tok ? tokbuf : NULL);
    test_methods();
    test_driver(ctx, tok ? tokbuf : NULL);
    test_opcm_project();
    test_opcm_driver(ctx, tok ? tokbuf : NULL);
    test_tall_tune(ctx, tok ? tokbuf : NULL);
    test_acceptance(ctx);
    sqz_ctx_free(ctx);
    rm_tree(tmp_root);
    return test_done();
}
