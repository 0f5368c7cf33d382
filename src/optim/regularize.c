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

#include "core/sum.h"
#include "optim/optim.h"

void optim_add_l1(float *grads, const float *params, size_t n, float l1)
{
    if (l1 == 0.0f)
        return;
    for (size_t i = 0; i < n; i++)
        grads[i] += params[i] > 0.0f ? l1 : (params[i] < 0.0f ? -l1 : 0.0f);
}

double optim_clip_grad_norm(float *grads, size_t n, float max_norm)
{
    double norm = sqrt(core_sum_squares(grads, n));
    optim_clip_to_norm(grads, n, max_norm, norm);
    return norm;
}

void optim_clip_to_norm(float *grads, size_t n, float max_norm, double norm)
{
    if (max_norm <= 0.0f)
        return;
    double coef = (double)max_norm / (norm + 1e-6);
    if (coef >= 1.0)
        return;
    float c = (float)coef;
    for (size_t i = 0; i < n; i++)
        grads[i] *= c;
}
