/* calib_spread.c - which calibration tokens a quantizer sees.
 *
 * Calibration files concatenate documents of several kinds (calib-1m.txt: sotu, then mail,
 * then moby); the first N tokens would be one kind only, and a GPTQ Hessian from them fits that
 * kind (measured: q4_k_m calibrated on calib-1m's first 32768 tokens, all sotu, had KLD 0.0100
 * on sotu.test but 0.0083 on mail.test, no better than round-to-nearest's 0.0086 there). So
 * windows are taken evenly spaced over the whole text instead. */
#include <string.h>

#include "sqz.h"

size_t sqz_calib_spread(const int32_t *tokens, size_t n, size_t want, int window, int32_t *out) {
    if (window <= 0 || n < (size_t)window) return 0;
    const size_t C = (size_t)window, avail = n / C, n_win = want / C < avail ? want / C : avail;
    for (size_t w = 0; w < n_win; w++) {
        /* window w starts at the w-th of n_win evenly spaced points of the usable range */
        const size_t start = n_win > 1 ? w * (n - C) / (n_win - 1) : 0;
        memcpy(out + w * C, tokens + start, C * sizeof *tokens);
    }
    return n_win * C;
}
