/* test.h - a tiny test harness. Each CHECK prints "ok - ..." or "not ok - ..."; a test program
 * ends with `return test_done();`, which exits non-zero if any check failed. tests/run.sh adds
 * the counts of every program up into the final "N passed, N failed" line. */
#ifndef SQZ_TEST_H
#define SQZ_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int test_failed_, test_passed_;

/* KL(base || model) of two logit rows in long double: a reference written apart from
 * sqz_kl_logits and the KL probe, for the tests that check them. */
static inline double test_kl_ref(const float *b, const float *m, int V) {
    long double mb = b[0], mm = m[0], sb = 0, sm = 0, kl = 0;
    for (int i = 1; i < V; i++) mb = b[i] > mb ? b[i] : mb, mm = m[i] > mm ? m[i] : mm;
    for (int i = 0; i < V; i++) sb += expl(b[i] - mb), sm += expl(m[i] - mm);
    for (int i = 0; i < V; i++) {
        const long double lp = b[i] - mb - logl(sb), lq = m[i] - mm - logl(sm);
        kl += expl(lp) * (lp - lq);
    }
    return (double)kl;
}

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (cond) {                                                                        \
            test_passed_++;                                                                \
            printf("ok - ");                                                               \
        } else {                                                                           \
            test_failed_++;                                                                \
            printf("not ok - %s:%d: ", __FILE__, __LINE__);                                \
        }                                                                                  \
        printf(__VA_ARGS__);                                                               \
        printf("\n");                                                                      \
        fflush(stdout);                                                                    \
    } while (0)

/* |got - want| <= atol + rtol * |want| */
#define CHECK_CLOSE(got, want, atol, rtol, ...)                                            \
    do {                                                                                   \
        double g_ = (got), w_ = (want);                                                    \
        int ok_ = fabs(g_ - w_) <= (atol) + (rtol) * fabs(w_);                             \
        CHECK(ok_, __VA_ARGS__);                                                           \
        if (!ok_) printf("#   got %.9g want %.9g\n", g_, w_);                              \
    } while (0)

#define SKIP(...)                                                                          \
    do {                                                                                   \
        printf("skip - ");                                                                 \
        printf(__VA_ARGS__);                                                               \
        printf("\n");                                                                      \
    } while (0)

static inline int test_done(void) {
    printf("# %d passed, %d failed\n", test_passed_, test_failed_);
    return test_failed_ ? 1 : 0;
}

/* Path of rel inside the shared folder ($SQZ_SHARED, default ../shared), or NULL when it does
 * not exist (tests that need it then SKIP). Returns a static buffer. */
static inline const char *test_shared(const char *rel) {
    static char buf[4][4096];
    static int slot;
    const char *root = getenv("SQZ_SHARED");
    if (!root) root = "../shared";
    char *p = buf[slot++ & 3];
    snprintf(p, 4096, "%s/%s", root, rel);
    return access(p, R_OK) == 0 ? p : NULL;
}

/* The whole file at path (malloc'ed, *len its size), or NULL. */
static inline uint8_t *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    *len = b ? fread(b, 1, (size_t)n, f) : 0;
    fclose(f);
    return b;
}

/* Saves a file image of at most max_len bytes into $SQZ_GGUF_CORPUS (if set) as name: the
 * bad-input tests seed the fuzzers' corpus this way. */
static inline void test_corpus_save(const char *name, const void *data, size_t len, size_t max_len) {
    const char *dir = getenv("SQZ_GGUF_CORPUS");
    if (!dir || !*dir || len > max_len) return;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fwrite(data, 1, len, f);
    fclose(f);
}

/* xorshift64: the tests' reproducible random numbers (*s: any nonzero state). */
static inline uint64_t test_xorshift64(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Uniform in [-1, 1) from the top 53 bits of the next test_xorshift64 number. */
static inline float test_frand(uint64_t *s) {
    return (float)((double)(test_xorshift64(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Whether the slow tests should be skipped (SQZ_QUICK=1, as under sanitizers). */
static inline int test_quick(void) {
    const char *q = getenv("SQZ_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

#endif
