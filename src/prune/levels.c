/* levels.c - per-matrix pruning levels from a JSON file {tensor name: level} (the search issue
 * writes them): a level is a number (the density kept) or a string "0.6" / "2:4". */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prune/levels.h"

void sqz_prune_levels_free(sqz_prune_levels *lv) {
    if (!lv) return;
    for (int i = 0; i < lv->n; i++) free(lv->names[i]);
    free(lv->names);
    free(lv->level);
    memset(lv, 0, sizeof *lv);
}

sqz_status sqz_prune_levels_load(sqz_ctx *ctx, const char *path, sqz_prune_levels *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot open the levels file", path);
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *t = realloc(text, cap);
            if (!t) { free(text); fclose(f); return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); }
            text = t;
        }
        const size_t n = fread(text + len, 1, 4096, f);
        len += n;
        if (n < 4096) break;
    }
    const int rerr = ferror(f);
    fclose(f);
    if (rerr) { free(text); return sqz_fail(ctx, SQZ_ERR_IO, "%s: read error", path); }
    text[len] = 0;
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: not a JSON object {tensor name: level}", path);
    }
    const int n = cJSON_GetArraySize(j);
    out->names = calloc((size_t)(n ? n : 1), sizeof *out->names);
    out->level = calloc((size_t)(n ? n : 1), sizeof *out->level);
    if (!out->names || !out->level) {
        cJSON_Delete(j);
        sqz_prune_levels_free(out);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    sqz_status st = SQZ_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        sqz_prune_level lv;
        int bad = 0;
        if (cJSON_IsNumber(e)) lv = (sqz_prune_level){ .density = e->valuedouble };
        else if (cJSON_IsString(e)) bad = sqz_prune_level_parse(e->valuestring, &lv) != 0;
        else bad = 1;
        if (bad) {
            st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: %s: a level is a density (0.5) or \"N:M\" (\"2:4\")", path,
                          e->string);
            break;
        }
        if (!(out->names[out->n] = strdup(e->string))) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
        out->level[out->n++] = lv;
    }
    cJSON_Delete(j);
    if (st) sqz_prune_levels_free(out);
    return st;
}
