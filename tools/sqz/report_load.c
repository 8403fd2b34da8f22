/* report_load.c - the inputs of sqz report: each file's JSON values, sorted by what printed
 * them (ppl, quantize, convert, kvbench, bench/vs_llamacpp.py), then joined: a ppl run whose
 * model is the output of a quantize or convert run gets that run's method, type and size. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report.h"

/* Grows *arr (of *n elements of size sz) by one zeroed element; NULL when out of memory. */
static void *grow(void **arr, int *n, size_t sz) {
    void *p = realloc(*arr, (size_t)(*n + 1) * sz);
    if (!p) return NULL;
    *arr = p;
    memset((char *)p + (size_t)*n * sz, 0, sz);
    return (char *)p + (size_t)(*n)++ * sz;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The number at key, else dflt. */
static double num(const cJSON *o, const char *key, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* s cut to cap - 1 bytes (a label, not a path to open) */
static void copy(char *dst, size_t cap, const char *s) {
    const size_t n = s ? strnlen(s, cap - 1) : 0;
    memcpy(dst, s ? s : "", n);
    dst[n] = 0;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

/* ---- one object of each kind */

static int add_ppl(rp_data *d, const cJSON *o) {
    rp_model *m = grow((void **)&d->models, &d->n_models, sizeof *m);
    if (!m) return 0;
    copy(m->model, sizeof m->model, str(o, "model"));
    copy(m->eval, sizeof m->eval, str(o, "file") ? base_name(str(o, "file")) : "");
    copy(m->kv, sizeof m->kv, str(o, "kv") ? str(o, "kv") : "f32");
    m->ppl = num(o, "ppl", 0);
    m->ppl_stderr = num(o, "ppl_stderr", 0);
    m->bytes = num(o, "file_bytes", 0);
    m->bpw = num(o, "bits_per_weight", 0);
    m->tps = num(o, "tokens_per_s", 0);
    m->has_kld = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "kld"));
    m->kld = num(o, "kld", 0);
    m->kld_p99 = num(o, "kld_p99", 0);
    m->top1 = num(o, "top1_agree", 0);
    m->kv_ratio = num(o, "kv_ratio_vs_f16", 0);
    return 1;
}

static int add_artifact(rp_data *d, const cJSON *o) {
    struct rp_artifact *a = grow((void **)&d->arts, &d->n_arts, sizeof *a);
    if (!a) return 0;
    copy(a->out, sizeof a->out, str(o, "out"));
    /* convert writes by round-to-nearest: its "method" is the type alone */
    copy(a->method, sizeof a->method, str(o, "method") ? str(o, "method") : "convert");
    copy(a->type, sizeof a->type, str(o, "type"));
    copy(a->calib, sizeof a->calib, str(o, "calib") ? base_name(str(o, "calib")) : "");
    a->bytes = num(o, "file_bytes", 0);
    a->bpw = num(o, "bits_per_weight", 0);
    return 1;
}

static int add_kvbench(rp_data *d, const cJSON *o) {
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(o, "rows")) {
        rp_kv *k = grow((void **)&d->kvs, &d->n_kvs, sizeof *k);
        if (!k) return 0;
        copy(k->policy, sizeof k->policy, str(row, "policy"));
        copy(k->model, sizeof k->model, str(o, "model"));
        copy(k->eval, sizeof k->eval, str(o, "file") ? base_name(str(o, "file")) : "");
        k->ratio = num(row, "ratio_vs_f16", 0);
        k->ppl = num(row, "ppl", 0);
        k->kld = num(row, "kld", 0);
    }
    return 1;
}

/* A speed figure of one tool: {"decode_tps", "prefill_tps"} or {"tokens_per_s"} (decode). */
static void tool_speed(const cJSON *t, double *prefill, double *decode) {
    *prefill = num(t, "prefill_tps", -1);
    *decode = num(t, "decode_tps", num(t, "tokens_per_s", -1));
}

static int add_speed(rp_data *d, const char *name, const cJSON *e) {
    rp_speed *s = grow((void **)&d->speeds, &d->n_speeds, sizeof *s);
    if (!s) return 0;
    copy(s->name, sizeof s->name, name);
    tool_speed(cJSON_GetObjectItemCaseSensitive(e, "sqz"), &s->sqz_prefill, &s->sqz_decode);
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(e, "llama_cpp");
    if (!l) l = cJSON_GetObjectItemCaseSensitive(e, "llama.cpp");
    tool_speed(l, &s->llama_prefill, &s->llama_decode);
    return 1;
}

/* What printed o; 0 when unknown, -1 out of memory. */
static int add_object(rp_data *d, const cJSON *o, const char *path) {
    if (!cJSON_IsObject(o)) return 0;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files");
    if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "rows"))) return add_kvbench(d, o) ? 1 : -1;
    if (cJSON_IsObject(files)) { /* bench/vs_llamacpp.py: per model file, both tools */
        const cJSON *e;
        cJSON_ArrayForEach(e, files) if (!add_speed(d, e->string, e)) return -1;
        return 1;
    }
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "sqz")))
        return add_speed(d, str(o, "name") ? str(o, "name") : base_name(path), o) ? 1 : -1;
    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "ppl"))) return add_ppl(d, o) ? 1 : -1;
    if (str(o, "out") && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "file_bytes")))
        return add_artifact(d, o) ? 1 : -1;
    return 0;
}

/* 1-based line of byte offset off in s. */
static int line_of(const char *s, size_t off) {
    int line = 1;
    for (size_t i = 0; i < off && s[i]; i++) line += s[i] == '\n';
    return line;
}

static int load_file(rp_data *d, const char *path) {
    size_t len;
    char *text = cli_read_file(path, &len);
    if (!text) return 1;
    const char *p = text;
    int n_values = 0, rc = 0;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
        if (!*p) break;
        const char *end = NULL;
        cJSON *v = cJSON_ParseWithOpts(p, &end, 0);
        if (!v) {
            const char *at = end && end >= p ? end : p;
            if (*at) rc = cli_die("report: %s: not valid JSON (line %d, near \"%.20s\")", path,
                                  line_of(text, (size_t)(at - text)), at);
            else rc = cli_die("report: %s: not valid JSON (line %d: it ends inside a value)", path,
                              line_of(text, (size_t)(at - text)));
            break;
        }
        n_values++;
        const cJSON *e;
        int k = 0;
        if (cJSON_IsArray(v)) {
            cJSON_ArrayForEach(e, v) if ((k = add_object(d, e, path)) <= 0) break;
            if (!cJSON_GetArraySize(v)) k = 0;
        } else {
            k = add_object(d, v, path);
        }
        cJSON_Delete(v);
        if (k < 0) { rc = cli_die("out of memory"); break; }
        if (!k) {
            rc = cli_die("report: %s: value %d is not a result sqz report reads (the --json of sqz "
                         "ppl, quantize, convert or kvbench, or bench/vs_llamacpp.py's)", path, n_values);
            break;
        }
        p = end;
    }
    if (!rc && !n_values) rc = cli_die("report: %s: empty (no JSON in it)", path);
    free(text);
    return rc;
}

/* ---- joining */

static const struct rp_artifact *artifact_of(const rp_data *d, const char *model) {
    for (int i = d->n_arts - 1; i >= 0; i--) /* the latest run that wrote it */
        if (!strcmp(d->arts[i].out, model)) return &d->arts[i];
    return NULL;
}

/* Returns 1; 0 out of memory. */
static int join(rp_data *d) {
    for (int i = 0; i < d->n_models; i++) {
        rp_model *m = &d->models[i];
        const struct rp_artifact *a = artifact_of(d, m->model);
        if (a) {
            copy(m->method, sizeof m->method, a->method);
            copy(m->type, sizeof m->type, a->type);
            copy(m->calib, sizeof m->calib, a->calib);
            if (!m->bytes) m->bytes = a->bytes;
            if (!m->bpw) m->bpw = a->bpw;
            snprintf(m->name, sizeof m->name, "%.63s %.31s", a->method, a->type);
        } else {
            copy(m->name, sizeof m->name, base_name(m->model));
        }
        if (strcmp(m->kv, "f32")) snprintf(m->label, sizeof m->label, "%s + KV %s", m->name, m->kv);
        else copy(m->label, sizeof m->label, m->name);
    }
    /* a ppl run with a KV policy is a point of the KV plot too, measured from the same model's
     * run with the exact cache on the same text */
    for (int i = 0, n = d->n_models; i < n; i++) {
        const rp_model *m = &d->models[i];
        if (!(m->kv_ratio > 0) || !strcmp(m->kv, "f32")) continue;
        rp_kv *k = grow((void **)&d->kvs, &d->n_kvs, sizeof *k);
        if (!k) return 0;
        m = &d->models[i];
        copy(k->policy, sizeof k->policy, m->kv);
        copy(k->model, sizeof k->model, m->model);
        copy(k->eval, sizeof k->eval, m->eval);
        k->ratio = m->kv_ratio, k->ppl = m->ppl, k->kld = -1;
        for (int j = 0; j < d->n_models && !k->base_ppl; j++)
            if (!strcmp(d->models[j].model, m->model) && !strcmp(d->models[j].kv, "f32") &&
                !strcmp(d->models[j].eval, m->eval))
                k->base_ppl = d->models[j].ppl, copy(k->base, sizeof k->base, "f32 cache (ppl run)");
    }
    /* a KV policy's change is measured from the same model's cache at full precision: the
     * kvbench's own f16 row (the same windows; its KL to f32 is ~1e-6), else a ppl run of the
     * model on the same text with the exact cache (its windows may differ: noted) */
    for (int i = 0; i < d->n_kvs; i++) {
        rp_kv *k = &d->kvs[i];
        for (int j = 0; j < d->n_kvs && !k->base_ppl; j++)
            if (!strcmp(d->kvs[j].model, k->model) && !strcmp(d->kvs[j].policy, "f16"))
                k->base_ppl = d->kvs[j].ppl, copy(k->base, sizeof k->base, "f16 cache");
        for (int j = 0; j < d->n_models && !k->base_ppl; j++)
            if (!strcmp(d->models[j].model, k->model) && !strcmp(d->models[j].kv, "f32") &&
                !strcmp(d->models[j].eval, k->eval))
                k->base_ppl = d->models[j].ppl, copy(k->base, sizeof k->base, "f32 cache (ppl run)");
    }
    return 1;
}

int rp_load(rp_data *d, const char *const *paths, int n) {
    memset(d, 0, sizeof *d);
    d->inputs = (const char **)paths;
    d->n_inputs = n;
    for (int i = 0; i < n; i++)
        if (load_file(d, paths[i])) return 1;
    return join(d) ? 0 : cli_die("out of memory");
}

void rp_free(rp_data *d) {
    free(d->models);
    free(d->kvs);
    free(d->speeds);
    free(d->arts);
    memset(d, 0, sizeof *d);
}
