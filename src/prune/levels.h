/* levels.h - per-matrix pruning levels read from a JSON file {tensor name: level}. */
#ifndef SQZ_PRUNE_LEVELS_H
#define SQZ_PRUNE_LEVELS_H

#include "prune/pruner.h"

typedef struct sqz_prune_levels {
    int n;
    char **names;           /* [n] GGUF tensor names */
    sqz_prune_level *level; /* [n] parsed, not checked (sqz_prune_level_check) */
} sqz_prune_levels;

/* Reads path: a JSON object whose values are numbers (densities) or strings "0.6" / "2:4".
 * SQZ_ERR_IO, SQZ_ERR_ARG (not an object, a value that is not a level), SQZ_ERR_NOMEM. */
sqz_status sqz_prune_levels_load(sqz_ctx *ctx, const char *path, sqz_prune_levels *out);
void sqz_prune_levels_free(sqz_prune_levels *lv);

#endif
