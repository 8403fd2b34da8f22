/* test_qkx3.c - the AVX-512 make_qkx3_quants (16 candidate scales per pass) against the
 * reference, bit for bit: levels, min and scale, on random blocks of the shapes the quantizers
 * use (Q4_1 / Q5_1 / Q4_K / Q5_K: 32 values, nmax 15 / 31; Q2_K: 16 values, nmax 3), with
 * imatrix-like weights and without (x^2), least squares and least absolute deviation. */
#include "test.h"

#include "formats/qkx3.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double unif(void) { /* xorshift64*, [0, 1) */
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}
static float gauss(void) { return (float)(sqrt(-2 * log(1 - unif())) * cos(6.283185307179586 * unif())); }

/* x: a block of one of several kinds (centred, shifted positive, outliers, all equal, few
 * distinct values) */
static void make_block(int kind, int n, float *x) {
    const float s = (float)exp(8 * unif() - 6);
    for (int i = 0; i < n; i++) {
        switch (kind) {
        case 0: x[i] = s * gauss(); break;
        case 1: x[i] = s * (1 + (float)unif()); break;               /* min > 0: min becomes 0 */
        case 2: x[i] = s * gauss() * (unif() < 0.1 ? 20.0f : 1.0f); break;
        case 3: x[i] = s; break;                                     /* all equal (min clamps to 0) */
        case 4: x[i] = s * (float)(int)(4 * unif()) - s; break;      /* four values */
        default: x[i] = 0; break;                                    /* max <= min */
        }
    }
}

int main(void) {
    if (!sqz_qkx3_has_avx512()) {
        SKIP("no AVX-512 on this CPU");
        return test_done();
    }
    const struct { int n, nmax; } shapes[] = { { 32, 15 }, { 32, 31 }, { 16, 3 }, { 32, 3 }, { 7, 15 } };
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int n = shapes[si].n, nmax = shapes[si].nmax;
        for (int wmode = 0; wmode < 2; wmode++)
            for (int mad = 0; mad < 2; mad++) {
                int same = 1, moved = 0, cases = 0;
                for (int trial = 0; trial < 3000 && same; trial++) {
                    float x[32], w[32], min_r, min_v;
                    uint8_t Lr[32], Lv[32], aux[32];
                    make_block(trial % 6, n, x);
                    for (int i = 0; i < n; i++) w[i] = (float)(unif() * 3) * sqrtf(0.1f + x[i] * x[i]);
                    const float *wp = wmode ? w : NULL;
                    const int nstep = trial % 7 == 0 ? 20 : 36;
                    const float sr = sqz_qkx3_ref(n, nmax, x, wp, Lr, &min_r, aux, -0.9f, 0.05f, nstep, mad);
                    const float sv = sqz_qkx3_avx512(n, nmax, x, wp, Lv, &min_v, -0.9f, 0.05f, nstep, mad);
                    /* how often the search moved off its first rounding (the lanes decided) */
                    const float s0 = sqz_qkx3_ref(n, nmax, x, wp, aux, &min_r, aux, -0.9f, 0.05f, 0, mad);
                    moved += memcmp(&s0, &sr, sizeof sr) != 0;
                    sqz_qkx3_ref(n, nmax, x, wp, Lr, &min_r, aux, -0.9f, 0.05f, nstep, mad);
                    same = !memcmp(&sr, &sv, sizeof sr) && !memcmp(&min_r, &min_v, sizeof min_r) && !memcmp(Lr, Lv, (size_t)n);
                    if (!same)
                        printf("#   trial %d kind %d: scale %.9g / %.9g, min %.9g / %.9g\n", trial, trial % 6, sr, sv,
                               min_r, min_v);
                    cases++;
                }
                CHECK(same && moved > cases / 4,
                      "n %d nmax %d %s %s: %d blocks bit-identical (the search moved the scale in %d)", n, nmax,
                      wmode ? "weights" : "x^2", mad ? "abs" : "squares", cases, moved);
            }
    }
    return test_done();
}
