/* calib_spread.c - which calibration tokens a quantizer sees.
 *
 * Calibration files concatenate documents of several kinds (calib-1m.txt: sotu, then mail,
 * then moby); the first N tokens would be one kind only, and a GPTQ Hessian from them fits that
 * kind (measured: q4_k_m calibrated on calib-1m's first 32768 tokens, all sotu, had KLD 0.0100
 * on sotu.test but 0.0083 on mail.test, no better than round-to-nearest's 0.0086 there). So
 * windows are taken evenly spaced over the whole text instead. */
#include <stdint.h>
#include <string.h>

#include "sqz.h"

/* window w of n_win starts at the w-th of n_win evenly spaced points of the usable range */
static size_t spread_start(size_t n, size_t C, size_t n_win, size_t w) {
    return n_win > 1 ? w * (n - C) / (n_win - 1) : 0;
}

size_t sqz_calib_spread(const int32_t *tokens, size_t n, size_t want, int window, int32_t *out) {
    if (window <= 0 || n < (size_t)window) return 0;
    const size_t C = (size_t)window, avail = n / C, n_win = want / C < avail ? want / C : avail;
    for (size_t w = 0; w < n_win; w++) memcpy(out + w * C, tokens + spread_start(n, C, n_win, w), C * sizeof *tokens);
    return n_win * C;
}

/* Walks the gaps between the n_spread windows sqz_calib_spread places: returns how many whole
 * windows of C fit in them, in order, and sets *start to the k-th one's first token. */
static size_t gap_windows(size_t n, size_t C, size_t n_spread, size_t k, size_t *start) {
    size_t count = 0, end = 0; /* end: where the spread windows so far stop */
    for (size_t w = 0; w <= n_spread; w++) {
        const size_t next = w < n_spread ? spread_start(n, C, n_spread, w) : n;
        const size_t fit = next > end ? (next - end) / C : 0;
        if (k >= count && k < count + fit) *start = end + (k - count) * C;
        count += fit;
        if (w < n_spread && next + C > end) end = next + C;
    }
    return count;
}

size_t sqz_calib_heldout(const int32_t *tokens, size_t n, int window, size_t n_spread, size_t want, int32_t *out) {
    if (window <= 0 || n < (size_t)window) return 0;
    const size_t C = (size_t)window, n_free = gap_windows(n, C, n_spread, SIZE_MAX, &(size_t){0});
    if (want > n_free) want = n_free;
    for (size_t i = 0; i < want; i++) { /* the i-th of want evenly spaced free windows */
        size_t start = 0;
        gap_windows(n, C, n_spread, want > 1 ? i * (n_free - 1) / (want - 1) : 0, &start);
        memcpy(out + i * C, tokens + start, C * sizeof *tokens);
    }
    return want;
}
