/* ref.h - reading the independent reference numbers (../shared/models/<m>/reference.json). */
#ifndef SQZ_TEST_REF_H
#define SQZ_TEST_REF_H

#include <cjson/cJSON.h>

#include "test.h"

/* Parsed reference.json of a shared model, or NULL (and a SKIP line) when absent. */
static inline cJSON *ref_load(const char *model) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/reference.json", model);
    const char *p = test_shared(rel);
    if (!p) { SKIP("%s not found", rel); return NULL; }
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return cJSON_Parse(buf);
}

/* The text of a shared file, malloc'ed, or NULL. */
static inline char *ref_read_text(const char *rel, size_t *len) {
    const char *p = test_shared(rel);
    if (!p) return NULL;
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

#endif
