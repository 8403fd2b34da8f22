/* file.h - read-only memory mapping and whole-file reads, with errors that name the file. */
#ifndef SQZ_IO_FILE_H
#define SQZ_IO_FILE_H

#include <stddef.h>

#include "core/ctx.h"

typedef struct sqz_mapped_file {
    char *path;       /* owned copy */
    const void *data; /* NULL for an empty file */
    size_t size;
} sqz_mapped_file;

/* Maps path read-only (MAP_PRIVATE). */
sqz_status sqz_file_map(sqz_ctx *ctx, const char *path, sqz_mapped_file *out);
void sqz_file_unmap(sqz_mapped_file *m); /* accepts a zeroed struct */

/* Gives back the memory of the whole pages strictly inside [p, p + n) that lie in m's mapping
 * (madvise MADV_DONTNEED): they leave the process's resident set, and a later read loads them
 * from the file again, so the data seen never changes. Safe only because m comes from
 * sqz_file_map: a read-only mapping of a file (on anonymous memory DONTNEED would zero the
 * data; a range outside the mapping is not touched). Returns the bytes given back; 0 when
 * none (no whole page inside, a range outside the mapping, m NULL or empty). */
size_t sqz_file_release(const sqz_mapped_file *m, const void *p, size_t n);

/* Reads a whole (small) file into a NUL-terminated malloc'ed buffer; refuses files larger than
 * max_bytes. */
sqz_status sqz_file_read_all(sqz_ctx *ctx, const char *path, size_t max_bytes, char **buf,
                             size_t *len);

/* Joins dir and name into a malloc'ed path; NULL when out of memory. */
char *sqz_path_join(const char *dir, const char *name);
/* The folder part of path ("." when there is none; "/" for "/x"), malloc'ed; NULL when out of
 * memory. */
char *sqz_path_dirname(const char *path);
/* 1 if path is a directory, 0 if not (or missing). */
int sqz_path_is_dir(const char *path);
int sqz_path_exists(const char *path);

#endif
