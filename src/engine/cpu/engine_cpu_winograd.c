/*
 * engine/cpu/engine_cpu_winograd.c: 3x3 stride-1 convolutions by Winograd's
 * F(2x2, 3x3), the CPU engine's method when a convolution has enough
 * channels for the GEMMs to dominate (engine_cpu_conv.c decides).
 *
 * Each 2x2 block of outputs (a tile) comes from a 4x4 block of inputs that
 * overlaps its neighbours by 2. With the 4x4 transforms V = B^T d B of an
 * input tile, U = G g G^T of a 3x3 filter and Y = A^T M A back to outputs,
 * the convolution summed over input channels is, for each of the 16 points
 * xi of the transformed tile, one GEMM
 *
 *     M[xi] (F x T) = U[xi] (F x C) * V[xi] (C x T)        T = tiles
 *
 * which takes 16 multiply-adds per 4 outputs and input channel where the
 * direct convolution takes 36: 2.25x fewer FLOPs, in GEMMs as large as
 * im2col's. The transforms are additions and run over whole rows of tiles
 * so that they vectorize.
 *
 * Backward is the exact adjoint of that forward, so the gradients are those
 * of the function forward computes (equal to the convolution's up to
 * rounding). With Mg = A dY A^T per output tile:
 *
 *     dU[xi] (F x C) += Mg[xi] (F x T) * V[xi]^T      dW = G^T dU G
 *     dV[xi] (C x T)  = U[xi]^T * Mg[xi]              dX += B dV B^T per tile
 *
 * where dX's overlapping tiles add into each other. The batch goes in groups
 * of images whose transformed tiles (V and M) take twice the L2 cache read
 * at run time, as im2col's columns fill it; the rank's threads split the
 * transforms by channel and take whole GEMMs, and every sum has a fixed
 * order, so the results do not depend on the thread count at all.
 *
 * The transforms work on one image plane at a time, a row of tiles at once
 * in chunks of 8 tiles (GNU C vectors: one AVX register; 4 without AVX).
 * The rows of a plane are split into their even and odd columns first, so
 * that the 4 columns of tile q are plain vector loads at q and q+1. A chunk
 * may run past the row's last tile: the extra lanes read padding and are
 * written into the next row's place (written again after) or into the
 * slack at the end of each channel's row of tiles (the GEMMs' leading
 * dimension is T rounded up past it), never into a neighbour's outputs.
 */
#include "engine/cpu/engine_cpu_winograd.h"

#include <string.h>

#include <cblas.h>

#include "core/par.h"
#include "engine/cpu/engine_cpu_conv.h"

#define XI 16 /* points of a transformed tile */
/* Tiles per vector chunk: one AVX register, or one SSE register where the
 * build does not target AVX. */
#ifdef __AVX__
#define WL 8
#define WL_LANES                                                                                   \
    {                                                                                              \
        0, 1, 2, 3, 4, 5, 6, 7                                                                     \
    }
#else
#define WL 4
#define WL_LANES                                                                                   \
    {                                                                                              \
        0, 1, 2, 3                                                                                 \
    }
#endif

typedef float wv __attribute__((vector_size(WL * sizeof(float))));
typedef int wvi __attribute__((vector_size(WL * sizeof(int))));

static inline wv vload(const float *p)
{
    wv v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void vstore(float *p, wv v)
{
    memcpy(p, &v, sizeof v);
}
/* v with lanes n.. set to zero. */
static inline wv vfirst(wv v, int n)
{
    const wvi lane = WL_LANES;
    wvi keep = lane < n;
    return (wv)((wvi)v & keep);
}

/* Tiles of 2x2 outputs per image. */
static int tiles_h(const engine_conv_geom *g)
{
    return (g->OH + 1) / 2;
}
static int tiles_w(const engine_conv_geom *g)
{
    return (g->OW + 1) / 2;
}

int engine_cpu_winograd_fits(const engine_conv_geom *g, int F)
{
    /* Few channels make the GEMMs' inner dimension too short for the
     * transforms to pay (the tutorial's first convolution has C = 1). */
    return g->K == 3 && g->stride == 1 && g->C >= 8 && F >= 8 && g->OH >= 2 && g->OW >= 2 &&
           tiles_w(g) <= WINOGRAD_MAX_TILES_W;
}

/* Images per group: V and M (or Mg) of the group fill twice the L2 cache,
 * groups of equal size. (On the tutorial's conv2, 1 MiB L2: groups of 1 to 8
 * images ran the 1-thread step equally fast; with 2 threads, which meet 3-4
 * times per group, 7 images ran it 7 % faster than 3.) */
static int group_max(const engine_conv_geom *g, int F)
{
    size_t per_image = (size_t)XI * tiles_h(g) * tiles_w(g) * (size_t)(g->C + F);
    size_t most = 2 * engine_cpu_l2_floats() / per_image;
    return most < 1 ? 1 : most > 1 << 20 ? 1 << 20 : (int)most;
}

static int group_for(const engine_conv_geom *g, int F, int batch)
{
    int most = group_max(g, F);
    int groups = (batch + most - 1) / most;
    return (batch + groups - 1) / groups;
}

/* The leading dimension of a channel's row of T tiles: room for a chunk
 * that starts at the last tile, rounded to whole cache lines. */
static size_t tile_ld(int T)
{
    return ((size_t)T + WL + 15) & ~(size_t)15;
}

/* Floats between the 16 blocks [xi][chans][ld]: one cache line more than a
 * block, so that the 16 streams a transform reads or writes at once do not
 * all fall in the same cache sets (a block is often a multiple of 4 KiB). */
static size_t xi_stride(int chans, size_t ld)
{
    return (size_t)chans * ld + 16;
}

void engine_cpu_winograd_plan(const engine_conv_geom *g, int F, int max_batch, size_t *work,
                              size_t *scratch)
{
    /* the largest group of any batch up to max_batch */
    int most = group_max(g, F), group = most < max_batch ? most : max_batch;
    size_t ld = tile_ld(tiles_h(g) * tiles_w(g) * group);
    *work = (size_t)XI * (xi_stride(g->C, ld) + xi_stride(F, ld));
    *scratch = (size_t)2 * XI * F * g->C; /* U and dU */
}

/* ---- the filter transforms ---- */

/* U[xi][f][c] = (G w[f][c] G^T)[xi]. */
static void weights_forward(float *U, const float *w, int F, int C)
{
    size_t fc = (size_t)F * C;
    for (size_t i = 0; i < fc; i++) {
        const float *g = w + 9 * i;
        float t[4][3]; /* G g */
        for (int k = 0; k < 3; k++) {
            t[0][k] = g[k];
            t[1][k] = 0.5f * (g[k] + g[3 + k] + g[6 + k]);
            t[2][k] = 0.5f * (g[k] - g[3 + k] + g[6 + k]);
            t[3][k] = g[6 + k];
        }
        for (int r = 0; r < 4; r++) {
            float *u = U + (size_t)(4 * r) * fc + i;
            u[0] = t[r][0];
            u[fc] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
            u[2 * fc] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
            u[3 * fc] = t[r][2];
        }
    }
}

/* dw[f][c] (+)= G^T dU[.][f][c] G: the adjoint of weights_forward. */
static void weights_backward(float *dw, const float *dU, int F, int C, int accumulate)
{
    size_t fc = (size_t)F * C;
    for (size_t i = 0; i < fc; i++) {
        float d[4][4], t[4][3];
        for (int xi = 0; xi < XI; xi++)
            d[xi / 4][xi % 4] = dU[(size_t)xi * fc + i];
        for (int r = 0; r < 4; r++) { /* d G */
            t[r][0] = d[r][0] + 0.5f * (d[r][1] + d[r][2]);
            t[r][1] = 0.5f * (d[r][1] - d[r][2]);
            t[r][2] = 0.5f * (d[r][1] + d[r][2]) + d[r][3];
        }
        float *o = dw + 9 * i;
        for (int k = 0; k < 3; k++) { /* G^T (d G) */
            float v0 = t[0][k] + 0.5f * (t[1][k] + t[2][k]);
            float v1 = 0.5f * (t[1][k] - t[2][k]);
            float v2 = 0.5f * (t[1][k] + t[2][k]) + t[3][k];
            o[k] = accumulate ? o[k] + v0 : v0;
            o[3 + k] = accumulate ? o[3 + k] + v1 : v1;
            o[6 + k] = accumulate ? o[6 + k] + v2 : v2;
        }
    }
}

/* ---- the tile transforms ---- */

/* Row capacity of the split rows: tiles of a row plus a chunk and one. */
#define ROWCAP (WINOGRAD_MAX_TILES_W + 2 * WL)

typedef struct plane_job {
    const engine_conv_geom *g;
    const float *src; /* x or dy */
    float *dst;       /* y or dx */
    float *buf;       /* V, M, Mg or dV: [xi][channel][ld] */
    int chans;        /* channels of buf */
    size_t ld;        /* floats between channels' rows of tiles in buf */
    size_t xs;        /* floats between the xi blocks of buf */
    const float *bias;
    engine_act act;
    int nb;         /* images in the group */
    int tiles;      /* T: tiles in the group */
    size_t plane_c; /* floats between channels of the image-side tensor */
    size_t plane_n; /* ... between its images */
} plane_job;

/* Padded row y (columns p = x + pad_w, zero outside the plane) split into
 * its even columns e[p/2] and odd ones o[p/2], both zero past the row. */
static void split_row(float *e, float *o, const float *plane, int y, const engine_conv_geom *g,
                      int tw)
{
    memset(e, 0, sizeof(float) * (tw + WL + 1));
    memset(o, 0, sizeof(float) * (tw + WL + 1));
    if (y < 0 || y >= g->H)
        return;
    const float *src = plane + (size_t)y * g->W;
    int first_even = g->pad_w & 1; /* the first x with x + pad_w even */
    for (int x = first_even; x < g->W; x += 2)
        e[(x + g->pad_w) >> 1] = src[x];
    for (int x = !first_even; x < g->W; x += 2)
        o[(x + g->pad_w) >> 1] = src[x];
}

/* V[xi][c][t] = (B^T d B)[xi] over the input tiles of channels [c0, c1). */
static void input_forward(void *ctx, size_t c0, size_t c1)
{
    const plane_job *j = ctx;
    const engine_conv_geom *g = j->g;
    int th = tiles_h(g), tw = tiles_w(g);
    size_t ct = j->xs;
    float e[4][ROWCAP], o[4][ROWCAP]; /* padded rows y, in slot y % 4 */
    for (size_t c = c0; c < c1; c++)
        for (int n = 0; n < j->nb; n++) {
            const float *plane = j->src + (size_t)n * j->plane_n + c * j->plane_c;
            for (int i = 0; i < th; i++) {
                for (int r = i ? 2 : 0; r < 4; r++) {
                    int y = 2 * i + r;
                    split_row(e[y & 3], o[y & 3], plane, y - g->pad_h, g, tw);
                }
                float *v = j->buf + c * j->ld + (size_t)(n * th + i) * tw;
                for (int q = 0; q < tw; q += WL) {
                    wv t[4][4]; /* B^T along each row: [row][k] */
                    for (int r = 0; r < 4; r++) {
                        const float *er = e[(2 * i + r) & 3] + q, * or = o[(2 * i + r) & 3] + q;
                        wv a0 = vload(er), a1 = vload(or), a2 = vload(er + 1), a3 = vload(or +1);
                        t[r][0] = a0 - a2;
                        t[r][1] = a1 + a2;
                        t[r][2] = a2 - a1;
                        t[r][3] = a1 - a3;
                    }
                    for (int k = 0; k < 4; k++) {
                        vstore(v + (size_t)k * ct + q, t[0][k] - t[2][k]);
                        vstore(v + (size_t)(4 + k) * ct + q, t[1][k] + t[2][k]);
                        vstore(v + (size_t)(8 + k) * ct + q, t[2][k] - t[1][k]);
                        vstore(v + (size_t)(12 + k) * ct + q, t[1][k] - t[3][k]);
                    }
                }
            }
        }
}

/* Writes padded row y, gathered from its split halves, into row y - pad_h
 * of a dx plane when that row exists. */
static void join_row(float *plane, const float *e, const float *o, int y, const engine_conv_geom *g)
{
    int row = y - g->pad_h;
    if (row < 0 || row >= g->H)
        return;
    float *dst = plane + (size_t)row * g->W;
    int first_even = g->pad_w & 1;
    for (int x = first_even; x < g->W; x += 2)
        dst[x] = e[(x + g->pad_w) >> 1];
    for (int x = !first_even; x < g->W; x += 2)
        dst[x] = o[(x + g->pad_w) >> 1];
}

/* dx[c] = the sum over input tiles of B dV[.][c] B^T, channels [c0, c1):
 * the adjoint of input_forward. Padded row y collects from tile rows y/2 - 1
 * and y/2, so rows 2i and 2i+1 are complete after tile row i. */
static void input_backward(void *ctx, size_t c0, size_t c1)
{
    const plane_job *j = ctx;
    const engine_conv_geom *g = j->g;
    int th = tiles_h(g), tw = tiles_w(g);
    size_t ct = j->xs;
    float e[4][ROWCAP], o[4][ROWCAP];
    for (size_t c = c0; c < c1; c++)
        for (int n = 0; n < j->nb; n++) {
            float *plane = j->dst + (size_t)n * j->plane_n + c * j->plane_c;
            for (int i = 0; i < th; i++) {
                for (int r = i ? 2 : 0; r < 4; r++) {
                    memset(e[(2 * i + r) & 3], 0, sizeof(float) * (tw + WL + 1));
                    memset(o[(2 * i + r) & 3], 0, sizeof(float) * (tw + WL + 1));
                }
                const float *v = j->buf + c * j->ld + (size_t)(n * th + i) * tw;
                for (int q = 0; q < tw; q += WL) {
                    wv z[4][4]; /* B dV: [row][k] */
                    for (int k = 0; k < 4; k++) {
                        wv x0 = vload(v + (size_t)k * ct + q),
                           x1 = vload(v + (size_t)(4 + k) * ct + q),
                           x2 = vload(v + (size_t)(8 + k) * ct + q),
                           x3 = vload(v + (size_t)(12 + k) * ct + q);
                        z[0][k] = vfirst(x0, tw - q);
                        z[1][k] = vfirst(x1 - x2 + x3, tw - q);
                        z[2][k] = vfirst(x1 + x2 - x0, tw - q);
                        z[3][k] = vfirst(-x3, tw - q);
                    }
                    for (int r = 0; r < 4; r++) { /* (B dV) B^T, added at columns 2q..2q+3 */
                        float *er = e[(2 * i + r) & 3] + q, * or = o[(2 * i + r) & 3] + q;
                        vstore(er, vload(er) + z[r][0]);
                        vstore(or, vload(or) + z[r][1] - z[r][2] + z[r][3]);
                        vstore(er + 1, vload(er + 1) + z[r][1] + z[r][2] - z[r][0]);
                        vstore(or +1, vload(or +1) - z[r][3]);
                    }
                }
                for (int r = 0; r < (i == th - 1 ? 4 : 2); r++) {
                    int y = 2 * i + r;
                    join_row(plane, e[y & 3], o[y & 3], y, g);
                }
            }
        }
}

/* y[f] = A^T M[.][f] A + bias[f] for filters [f0, f1), through relu when
 * the job says so (other activations follow in a pass of their own). */
static void output_forward(void *ctx, size_t f0, size_t f1)
{
    const plane_job *j = ctx;
    const engine_conv_geom *g = j->g;
    int th = tiles_h(g), tw = tiles_w(g);
    size_t ft = j->xs;
    float out[2][2 * ROWCAP];
    for (size_t f = f0; f < f1; f++) {
        float b = j->bias ? j->bias[f] : 0.0f;
        for (int n = 0; n < j->nb; n++) {
            float *plane = j->dst + (size_t)n * j->plane_n + f * j->plane_c;
            for (int i = 0; i < th; i++) {
                const float *m = j->buf + f * j->ld + (size_t)(n * th + i) * tw;
                for (int q = 0; q < tw; q += WL) {
                    wv s[2][4];
                    for (int k = 0; k < 4; k++) {
                        wv m0 = vload(m + (size_t)k * ft + q),
                           m1 = vload(m + (size_t)(4 + k) * ft + q),
                           m2 = vload(m + (size_t)(8 + k) * ft + q),
                           m3 = vload(m + (size_t)(12 + k) * ft + q);
                        s[0][k] = m0 + m1 + m2;
                        s[1][k] = m1 - m2 - m3;
                    }
                    for (int a = 0; a < 2; a++) {
                        wv y0 = s[a][0] + s[a][1] + s[a][2], y1 = s[a][1] - s[a][2] - s[a][3];
                        for (int l = 0; l < WL; l++) {
                            out[a][2 * (q + l)] = y0[l];
                            out[a][2 * (q + l) + 1] = y1[l];
                        }
                    }
                }
                for (int a = 0; a < 2 && 2 * i + a < g->OH; a++) {
                    float *dst = plane + (size_t)(2 * i + a) * g->OW;
                    const float *src = out[a];
                    if (j->act == ENGINE_ACT_RELU)
                        for (int x = 0; x < g->OW; x++)
                            dst[x] = src[x] + b > 0.0f ? src[x] + b : 0.0f;
                    else
                        for (int x = 0; x < g->OW; x++)
                            dst[x] = src[x] + b;
                }
            }
        }
    }
}

/* Mg[xi][f][t] = (A dy A^T)[xi] over the output tiles of filters [f0, f1):
 * the adjoint of output_forward, outputs past the edge taken as zero. */
static void output_backward(void *ctx, size_t f0, size_t f1)
{
    const plane_job *j = ctx;
    const engine_conv_geom *g = j->g;
    int th = tiles_h(g), tw = tiles_w(g);
    size_t ft = j->xs;
    float e[2][ROWCAP], o[2][ROWCAP]; /* output rows 2i, 2i+1 split by column */
    for (size_t f = f0; f < f1; f++)
        for (int n = 0; n < j->nb; n++) {
            const float *plane = j->src + (size_t)n * j->plane_n + f * j->plane_c;
            for (int i = 0; i < th; i++) {
                for (int a = 0; a < 2; a++) {
                    memset(e[a], 0, sizeof(float) * (tw + WL));
                    memset(o[a], 0, sizeof(float) * (tw + WL));
                    if (2 * i + a >= g->OH)
                        continue;
                    const float *src = plane + (size_t)(2 * i + a) * g->OW;
                    for (int x = 0; x < g->OW; x += 2)
                        e[a][x >> 1] = src[x];
                    for (int x = 1; x < g->OW; x += 2)
                        o[a][x >> 1] = src[x];
                }
                float *m = j->buf + f * j->ld + (size_t)(n * th + i) * tw;
                for (int q = 0; q < tw; q += WL) {
                    wv g0e = vload(e[0] + q), g0o = vload(o[0] + q), g1e = vload(e[1] + q),
                       g1o = vload(o[1] + q);
                    wv h[4][2] = {
                        {g0e, g0o}, {g0e + g1e, g0o + g1o}, {g0e - g1e, g0o - g1o}, {-g1e, -g1o}};
                    for (int r = 0; r < 4; r++) {
                        float *mr = m + (size_t)(4 * r) * ft + q;
                        vstore(mr, h[r][0]);
                        vstore(mr + ft, h[r][0] + h[r][1]);
                        vstore(mr + 2 * ft, h[r][0] - h[r][1]);
                        vstore(mr + 3 * ft, -h[r][1]);
                    }
                }
            }
        }
}

/* ---- the convolution ---- */

/* The 16 GEMMs of one group: forward M = U V, or backward dU (+)= Mg V^T
 * and, with dx, dV = U^T Mg into V's place. The rank's threads take whole
 * GEMMs (xi ranges), so each product is one OpenBLAS call at any thread
 * count (the same bits) and the threads meet once per group. */
typedef struct xi_job {
    int backward, with_dx, F, C, T;
    float beta;
    const float *U;
    float *dU;
    const plane_job *in, *out;
} xi_job;

static void xi_gemms(void *ctx, int part, int parts)
{
    const xi_job *j = ctx;
    int ldv = (int)j->in->ld, ldm = (int)j->out->ld;
    size_t lo, hi;
    core_par_range(XI, part, parts, 1, &lo, &hi);
    for (size_t xi = lo; xi < hi; xi++) {
        const float *U = j->U + xi * j->F * j->C;
        float *V = j->in->buf + xi * j->in->xs, *M = j->out->buf + xi * j->out->xs;
        if (!j->backward) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->F, j->T, j->C, 1.0f, U, j->C,
                        V, ldv, 0.0f, M, ldm);
            continue;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->F, j->C, j->T, 1.0f, M, ldm, V, ldv,
                    j->beta, j->dU + xi * j->F * j->C, j->C);
        if (j->with_dx) /* dV replaces V, whose last use was the line above */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, j->C, j->T, j->F, 1.0f, U, j->C, M,
                        ldm, 0.0f, V, ldv);
    }
}

static void run_xi_gemms(xi_job *j)
{
    core_par_run(xi_gemms, j, core_par_parts(XI, 1));
}

/* The jobs of the group of nb images from image i0: `in` between the
 * input side (x, and dx when given) and V, `out` between the output side
 * (y when given, else dy: channel-major (F, batch, OH, OW)) and M or Mg,
 * which follows V in work. */
static void group_jobs(const engine_conv_geom *g, int F, int batch, int i0, int nb, float *work,
                       const float *x, float *dx, float *y, const float *dy, plane_job *in,
                       plane_job *out)
{
    size_t plane = (size_t)g->OH * g->OW, T = (size_t)nb * tiles_h(g) * tiles_w(g);
    size_t ld = tile_ld((int)T);
    *in = (plane_job){.g = g,
                      .src = x + (size_t)i0 * g->n_stride,
                      .dst = dx ? dx + (size_t)i0 * g->n_stride : NULL,
                      .buf = work,
                      .chans = g->C,
                      .ld = ld,
                      .xs = xi_stride(g->C, ld),
                      .nb = nb,
                      .tiles = (int)T,
                      .plane_c = g->c_stride,
                      .plane_n = g->n_stride};
    *out = (plane_job){.g = g,
                       .src = dy ? dy + (size_t)i0 * plane : NULL,
                       .dst = y ? y + (size_t)i0 * plane : NULL,
                       .buf = work + XI * in->xs,
                       .chans = F,
                       .ld = ld,
                       .xs = xi_stride(F, ld),
                       .nb = nb,
                       .tiles = (int)T,
                       .plane_c = (size_t)batch * plane,
                       .plane_n = plane};
}

void engine_cpu_winograd_forward(float *y, const float *x, const float *w, const float *bias,
                                 int batch, int F, const engine_conv_geom *g, engine_act act,
                                 float *work, float *scratch)
{
    const engine_ops *e = engine_cpu();
    int C = g->C, plane = g->OH * g->OW;
    int group = group_for(g, F, batch);
    float *U = scratch;
    weights_forward(U, w, F, C);
    for (int i0 = 0; i0 < batch; i0 += group) {
        int nb = batch - i0 < group ? batch - i0 : group;
        plane_job in, out;
        group_jobs(g, F, batch, i0, nb, work, x, NULL, y, NULL, &in, &out);
        out.bias = bias;
        out.act = act;
        core_par_for((size_t)C, 1, 1, input_forward, &in);
        run_xi_gemms(&(xi_job){.F = F, .C = C, .T = in.tiles, .U = U, .in = &in, .out = &out});
        core_par_for((size_t)F, 1, 1, output_forward, &out);
    }
    if (act != ENGINE_ACT_NONE && act != ENGINE_ACT_RELU)
        e->act_forward(y, y, (size_t)F * batch * plane, act);
}

void engine_cpu_winograd_backward(float *dx, float *dw, float *dbias, float *dy, const float *x,
                                  const float *w, int batch, int F, const engine_conv_geom *g,
                                  int accumulate, float *work, float *scratch)
{
    const engine_ops *e = engine_cpu();
    int C = g->C, plane = g->OH * g->OW;
    int group = group_for(g, F, batch);
    float *U = scratch, *dU = scratch + (size_t)XI * F * C;
    if (dbias)
        e->bias_backward(dbias, dy, 1, F, batch * plane, accumulate);
    if (dx)
        weights_forward(U, w, F, C);
    for (int i0 = 0; i0 < batch; i0 += group) {
        int nb = batch - i0 < group ? batch - i0 : group;
        plane_job in, out;
        group_jobs(g, F, batch, i0, nb, work, x, dx, NULL, dy, &in, &out);
        core_par_for((size_t)C, 1, 1, input_forward, &in);
        core_par_for((size_t)F, 1, 1, output_backward, &out);
        run_xi_gemms(&(xi_job){.backward = 1,
                               .with_dx = dx != NULL,
                               .F = F,
                               .C = C,
                               .T = in.tiles,
                               .beta = i0 > 0 ? 1.0f : 0.0f,
                               .U = U,
                               .dU = dU,
                               .in = &in,
                               .out = &out});
        if (dx)
            core_par_for((size_t)C, 1, 1, input_backward, &in);
    }
    weights_backward(dw, dU, F, C, accumulate);
}
