/* card.c - model cards: README.md text, a description line, GGUF general.* keys (card.h). */
#include "model/card.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growing string; on out of memory it stops growing and is freed by the end. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        const int w = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) { b->oom = 1; return; }
        if (b->p && b->n + (size_t)w < b->cap) { b->n += (size_t)w; return; }
        const size_t cap = (b->cap + (size_t)w + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p, b->cap = cap;
    }
}

/* s as a YAML double-quoted scalar */
static void put_yaml_str(sbuf *b, const char *s) {
    put(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') put(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) put(b, "\\x%02x", (unsigned char)*s);
        else put(b, "%c", *s);
    }
    put(b, "\"");
}

/* The method's name, the part of its spec before ':' (a tag), into buf. */
static const char *method_name(const char *method, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", method ? method : "");
    char *colon = strchr(buf, ':');
    if (colon) *colon = 0;
    return buf;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    while (s && !s[1] && s > p) { /* "dir/": the folder's name */
        const char *e = s;
        while (s > p && s[-1] != '/') s--;
        static char buf[256];
        snprintf(buf, sizeof buf, "%.*s", (int)(e - s), s);
        return buf;
    }
    return s ? s + 1 : p;
}

char *sqz_card_readme(const sqz_model_card *c, const char *name) {
    sbuf b = { 0 };
    char tag[64];
    method_name(c->method, tag, sizeof tag);
    put(&b, "---\n");
    if (c->base_model && *c->base_model) {
        put(&b, "base_model: ");
        put_yaml_str(&b, c->base_model);
        put(&b, "\n");
    }
    put(&b, "library_name: sqz\ntags:\n- sqz\n");
    if (*tag) {
        put(&b, "- ");
        put_yaml_str(&b, tag);
        put(&b, "\n");
    }
    put(&b, "---\n\n# %s\n\nWritten by sqz %s", name && *name ? name : "model", SQZ_VERSION);
    if (c->base_model && *c->base_model) put(&b, " from `%s`", c->base_model);
    put(&b, ".\n\n| | |\n|---|---|\n");
    if (c->method && *c->method) put(&b, "| method | `%s` |\n", c->method);
    if (c->parameters && *c->parameters) put(&b, "| parameters | %s |\n", c->parameters);
    if (c->calib && *c->calib) {
        put(&b, "| calibration / training text | `%s`", c->calib);
        if (c->calib_tokens) put(&b, " (%zu tokens)", c->calib_tokens);
        put(&b, " |\n");
    }
    put(&b, "| sqz version | %s |\n", SQZ_VERSION);
    const char *on = c->eval_text && *c->eval_text ? c->eval_text : NULL;
    if (c->ppl > 0) {
        put(&b, "| perplexity | %.4f", c->ppl);
        if (on) put(&b, " on `%s`", on);
        put(&b, " |\n");
    }
    if (c->kld > 0) {
        put(&b, "| KL divergence to the base model | %.6f nats", c->kld);
        if (on) put(&b, " on `%s`", on);
        put(&b, " |\n");
    }
    if (!(c->ppl > 0) && !(c->kld > 0))
        put(&b, "\nNo perplexity or KL divergence was measured by the command that wrote it "
                "(`sqz ppl MODEL -f TEXT --kld-base BASE` measures both).\n");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

void sqz_card_describe(const sqz_model_card *c, const char *source, char *buf, size_t cap) {
    size_t n = 0;
#define ADD(...) do { if (n < cap) { int w_ = snprintf(buf + n, cap - n, __VA_ARGS__); if (w_ > 0) n += (size_t)w_; } } while (0)
    buf[0] = 0;
    ADD("%s", c->method && *c->method ? c->method : "written");
    if (c->parameters && *c->parameters) ADD(", %s", c->parameters);
    const char *from = c->base_model && *c->base_model ? c->base_model : source;
    if (from && *from) ADD("; from %s", from);
    if (c->calib && *c->calib) {
        ADD("; calibrated on %s", base_name(c->calib));
        if (c->calib_tokens) ADD(" (%zu tokens)", c->calib_tokens);
    }
    if (c->ppl > 0) ADD("; perplexity %.4f", c->ppl);
    if (c->kld > 0) ADD("; KL %.6f nats", c->kld);
    if ((c->ppl > 0 || c->kld > 0) && c->eval_text && *c->eval_text) ADD(" on %s", base_name(c->eval_text));
    ADD("; sqz %s", SQZ_VERSION);
#undef ADD
}

sqz_status sqz_card_gguf(sqz_gguf_writer *w, const sqz_model_card *c, const char *source) {
    char desc[1024], by[64], tag[64];
    sqz_card_describe(c, source, desc, sizeof desc);
    snprintf(by, sizeof by, "sqz %s", SQZ_VERSION);
    const char *base = c->base_model && *c->base_model ? c->base_model : source;
    const char *tags[2] = { "sqz", method_name(c->method, tag, sizeof tag) };
    sqz_status st = sqz_gguf_writer_add_str(w, "general.description", desc, strlen(desc));
    if (!st) st = sqz_gguf_writer_add_str(w, "general.quantized_by", by, strlen(by));
    if (!st && base && *base) {
        st = sqz_gguf_writer_add_u32(w, "general.base_model.count", 1);
        if (!st) st = sqz_gguf_writer_add_str(w, "general.base_model.0.name", base_name(base), strlen(base_name(base)));
    }
    if (!st) st = sqz_gguf_writer_add_arr_str(w, "general.tags", tags, NULL, *tags[1] ? 2 : 1);
    return st;
}
