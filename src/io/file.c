/* file.c - mmap (and giving mapped pages back), whole-file reads, paths. */
#include "io/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

sqz_status sqz_file_map(sqz_ctx *ctx, const char *path, sqz_mapped_file *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sqz_fail(ctx, SQZ_ERR_IO, "%s: not a regular file", path);
    }
    out->path = strdup(path);
    if (!out->path) { close(fd); return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path); }
    out->size = (size_t)st.st_size;
    if (out->size > 0) {
        void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(out->path);
            memset(out, 0, sizeof *out);
            return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
        out->data = p;
    }
    close(fd);
    return SQZ_OK;
}

void sqz_file_unmap(sqz_mapped_file *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

size_t sqz_file_release(const sqz_mapped_file *m, const void *p, size_t n) {
    if (!m || !m->data || !p || !n) return 0;
    const uintptr_t lo = (uintptr_t)m->data, hi = lo + m->size;
    uintptr_t a = (uintptr_t)p, b = n > UINTPTR_MAX - a ? UINTPTR_MAX : a + n;
    if (a < lo) a = lo;
    if (b > hi) b = hi;
    const long ps = sysconf(_SC_PAGESIZE);
    const uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096;
    a = (a + page - 1) / page * page; /* whole pages strictly inside */
    b = b / page * page;
    if (a >= b || madvise((void *)a, b - a, MADV_DONTNEED) != 0) return 0;
    return b - a;
}

sqz_status sqz_file_read_all(sqz_ctx *ctx, const char *path, size_t max_bytes, char **buf,
                             size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return sqz_fail(ctx, SQZ_ERR_IO, "%s: not a regular file", path);
    }
    if ((size_t)st.st_size > max_bytes) {
        fclose(f);
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: too large (%lld bytes, limit %zu)", path,
                        (long long)st.st_size, max_bytes);
    }
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) { fclose(f); return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path); }
    size_t n = fread(b, 1, (size_t)st.st_size, f);
    int err = ferror(f);
    fclose(f);
    if (err || n != (size_t)st.st_size) {
        free(b);
        return sqz_fail(ctx, SQZ_ERR_IO, "%s: read error", path);
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return SQZ_OK;
}

char *sqz_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

char *sqz_path_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

int sqz_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int sqz_path_exists(const char *path) { return access(path, F_OK) == 0; }
