/* adamw.c - the optimizer step and gradient clipping, as PyTorch's AdamW and
 * clip_grad_norm_ compute them (so that a recipe run there can be run here). */
#include <math.h>

#include "train/train.h"

void sqz_train_adamw_step(const sqz_train_tensor *tab, int n_tensors, float *p, const float *grad,
                          float *m, float *v, int t, const sqz_adamw *o, int nt) {
    const double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
    const float step = (float)(o->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (int i = 0; i < n_tensors; i++) {
        const sqz_train_tensor *e = &tab[i];
        /* decoupled decay on matrices only (norm weights and biases are not decayed) */
        const float decay = e->rows > 1 ? 1.0f - o->lr * o->weight_decay : 1.0f;
        const size_t n = (size_t)(e->rows * e->cols);
        float *pp = p + e->off, *mm = m + e->off, *vv = v + e->off;
        const float *g = grad + e->off;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && n >= 65536)
        for (size_t j = 0; j < n; j++) {
            mm[j] = o->beta1 * mm[j] + (1.0f - o->beta1) * g[j];
            vv[j] = o->beta2 * vv[j] + (1.0f - o->beta2) * g[j] * g[j];
            pp[j] *= decay;
            pp[j] -= step * mm[j] / (sqrtf(vv[j]) / bc2_sqrt + o->eps);
        }
    }
}

void sqz_train_sgd_step(const sqz_train_tensor *tab, int n_tensors, float *p, const float *d,
                        const sqz_adamw *o, int nt) {
    for (int i = 0; i < n_tensors; i++) {
        const sqz_train_tensor *e = &tab[i];
        const float decay = e->rows > 1 ? 1.0f - o->lr * o->weight_decay : 1.0f;
        const size_t n = (size_t)(e->rows * e->cols);
        float *pp = p + e->off;
        const float *dd = d + e->off;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && n >= 65536)
        for (size_t j = 0; j < n; j++) pp[j] = pp[j] * decay - o->lr * dd[j];
    }
}

double sqz_train_clip(float *grad, size_t n, double clip) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)grad[i] * grad[i];
    const double norm = sqrt(ss);
    if (clip > 0 && norm > clip) {
        const float s = (float)(clip / (norm + 1e-6));
        for (size_t i = 0; i < n; i++) grad[i] *= s;
    }
    return norm;
}
