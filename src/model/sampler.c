/* sampler.c - next-token choice: greedy, temperature, nucleus (top-p). The random numbers are
 * xorshift64* as in llama2.c, so a seed gives the same text on every machine. */
#include <math.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "sqz.h"

void sqz_rng_seed(uint64_t *state, uint64_t seed) { *state = seed ? seed : 0x9e3779b97f4a7c15ull; }

static uint32_t rng_u32(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (uint32_t)((*s * 0x2545F4914F6CDD1Dull) >> 32);
}

static float rng_f32(uint64_t *s) { return (float)(rng_u32(s) >> 8) / 16777216.0f; }

typedef struct prob_index {
    float p;
    int i;
} prob_index;

static int cmp_desc(const void *a, const void *b) {
    const prob_index *x = a, *y = b;
    return x->p > y->p ? -1 : x->p < y->p ? 1 : (x->i - y->i);
}

int32_t sqz_sample(const sqz_sampler_opts *o, float *logits, int vocab, uint64_t *rng) {
    if (o->temperature <= 0.0f) { /* greedy: the first maximum */
        int best = 0;
        for (int i = 1; i < vocab; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    for (int i = 0; i < vocab; i++) logits[i] /= o->temperature;
    sqz_softmax(logits, vocab);
    const float r = rng_f32(rng);
    if (o->top_p <= 0.0f || o->top_p >= 1.0f) {
        float cdf = 0;
        for (int i = 0; i < vocab; i++) {
            cdf += logits[i];
            if (r < cdf) return i;
        }
        return vocab - 1;
    }
    /* nucleus: the smallest set of most likely tokens whose mass exceeds top_p. Tokens below
     * (1 - top_p) / (vocab - 1) cannot be in it, which keeps the sort short. */
    prob_index *pi = malloc((size_t)vocab * sizeof *pi);
    if (!pi) { /* fall back to greedy rather than fail mid-generation */
        int best = 0;
        for (int i = 1; i < vocab; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    const float cutoff = (1.0f - o->top_p) / (float)(vocab > 1 ? vocab - 1 : 1);
    int n = 0;
    for (int i = 0; i < vocab; i++)
        if (logits[i] >= cutoff) pi[n++] = (prob_index){ logits[i], i };
    qsort(pi, (size_t)n, sizeof *pi, cmp_desc);
    float cum = 0;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        cum += pi[i].p;
        if (cum > o->top_p) { last = i; break; }
    }
    const float target = r * cum;
    float cdf = 0;
    int chosen = pi[last].i;
    for (int i = 0; i <= last; i++) {
        cdf += pi[i].p;
        if (target < cdf) { chosen = pi[i].i; break; }
    }
    free(pi);
    return chosen;
}
