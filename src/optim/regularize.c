/*
 * optim/regularize.c: L1 and gradient clipping by global norm on the flat,
 * already averaged gradient buffer (coupled L2 and AdamW's decoupled decay
 * live in the optimizer update itself, optim.c).
 *
 * The trainer calls these after the all-reduce on identical buffers, so the
 * norm (computed in double, in buffer order) and the clipped gradient are
 * bitwise identical on every rank.
 */
#include <math.h>

#include "optim/optim.h"

void optim_add_l1(float *grads, const float *params, size_t n, float l1)
{
    if (l1 == 0.0f)
        return;
    for (size_t i = 0; i < n; i++)
        grads[i] += params[i] > 0.0f ? l1 : (params[i] < 0.0f ? -l1 : 0.0f);
}

/* Sum of squares in 8 interleaved double lanes, added up in a fixed order at
 * the end: the compiler vectorizes it (a single accumulator cannot be, without
 * reassociation, and costs ~4 cycles a float), and every rank gets the same
 * bits for the same gradients. */
static double sum_squares(const float *g, size_t n)
{
    enum { LANES = 8 };
    double acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += (double)g[i + k] * (double)g[i + k];
    for (int k = 0; i < n; i++, k++)
        acc[k] += (double)g[i] * (double)g[i];
    double ss = 0.0;
    for (int k = 0; k < LANES; k++)
        ss += acc[k];
    return ss;
}

double optim_clip_grad_norm(float *grads, size_t n, float max_norm)
{
    double norm = sqrt(sum_squares(grads, n));
    if (max_norm <= 0.0f)
        return norm;
    double coef = (double)max_norm / (norm + 1e-6);
    if (coef >= 1.0)
        return norm;
    float c = (float)coef;
    for (size_t i = 0; i < n; i++)
        grads[i] *= c;
    return norm;
}
