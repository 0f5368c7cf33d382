/*
 * engine/engine.h: the table of compute operations behind every layer.
 *
 * Layers never compute directly: they call through a `const engine_ops *`
 * held by the model, so a CUDA engine can implement the same table and the
 * layers stay unchanged. Every backend is tested against engine_cpu(), op by
 * op. All matrices are row-major. Every op works on memory from the same
 * engine's alloc.
 *
 * Convolution geometry: images are addressed through two strides, so the same
 * im2col reads a batch stored sample-major (N,C,H,W: c_stride = H*W,
 * n_stride = C*H*W) or channel-major (C,N,H,W: c_stride = N*H*W,
 * n_stride = H*W). The column matrix is (C*K*K) x (N*OH*OW), one column per
 * output pixel of the whole batch, so a convolution is ONE sgemm per batch.
 */
#ifndef ENGINE_ENGINE_H
#define ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"

typedef enum engine_act {
    ENGINE_ACT_NONE = 0,
    ENGINE_ACT_RELU,
    ENGINE_ACT_TANH,
    ENGINE_ACT_SIGMOID
} engine_act;

typedef struct engine_conv_geom {
    int C, H, W;      /* input channels and size */
    int K, stride;    /* square kernel */
    int pad_h, pad_w; /* top/left zero padding; bottom/right is implied by OH, OW */
    int OH, OW;       /* output size */
    size_t c_stride;  /* floats between channels of one image */
    size_t n_stride;  /* floats between images */
} engine_conv_geom;

typedef struct engine_ops {
    const char *name;

    /* Memory: zeroed, aligned; alloc fills err on failure and returns NULL. */
    void *(*alloc)(size_t bytes, const char *what, core_error *err);
    void (*free)(void *p);
    void (*zero)(float *x, size_t n);
    void (*copy)(float *dst, const float *src, size_t n);

    /* C = alpha * op(A) * op(B) + beta * C, op(A) is M x K, op(B) is K x N. */
    void (*gemm)(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);

    /* cols[(c*K + ki)*K + kj][(n*OH + oh)*OW + ow] = x(n, c, oh*s - pad_h + ki, ...), 0 outside. */
    void (*im2col)(const float *x, int batch, const engine_conv_geom *g, float *cols);
    /* dx += the transpose of im2col applied to cols (dx is NOT zeroed here).
     * cols is scratch: entries that im2col would have set to zero (padding)
     * may be overwritten with zero. */
    void (*col2im)(float *cols, int batch, const engine_conv_geom *g, float *dx);

    /* y[o][c][i] = act(y[o][c][i] + bias[c]) in place, for o < outer, c < channels, i < inner.
     * bias may be NULL. */
    void (*bias_act_forward)(float *y, const float *bias, int outer, int channels, int inner,
                             engine_act act);
    /* y[o][c][i] = bias[c]: the starting value of a GEMM with beta = 1, which
     * saves OpenBLAS's zeroing pass and a separate bias pass over y. */
    void (*bias_fill)(float *y, const float *bias, int outer, int channels, int inner);
    /* y = act(x), elementwise; y may equal x. */
    void (*act_forward)(float *y, const float *x, size_t n, engine_act act);
    /* dx = dy * act'(from the output y); dx may equal dy. */
    void (*act_backward)(float *dx, const float *dy, const float *y, size_t n, engine_act act);
    /* dbias[c] (+)= sum over o, i of dy[o][c][i]; accumulate=0 overwrites. */
    void (*bias_backward)(float *dbias, const float *dy, int outer, int channels, int inner,
                          int accumulate);

    /* Pooling over `planes` independent H x W planes (any batch/channel order),
     * output OH x OW per plane, window K, stride S, no padding. relu != 0
     * applies relu to the outputs: pool(relu(x)) == relu(pool(x)), so a conv
     * followed by relu and maxpool can leave the relu to the 4x smaller
     * pooled output. */
    void (*maxpool_forward)(float *y, int32_t *argmax, const float *x, int planes, int H, int W,
                            int K, int S, int OH, int OW, int relu);
    /* dx = scatter of dy through argmax (dx is fully written). With relu_y
     * (the pool's own output y), also applies the derivative of a relu that
     * produced the pool's input: an output passes gradient only if y > 0,
     * which holds exactly when its argmax input is > 0. This folds the relu
     * backward of the layer before into this pass. relu_y may be NULL. */
    void (*maxpool_backward)(float *dx, const float *dy, const int32_t *argmax, const float *relu_y,
                             int planes, int H, int W, int K, int S, int OH, int OW);
    void (*avgpool_forward)(float *y, const float *x, int planes, int H, int W, int K, int S,
                            int OH, int OW);
    void (*avgpool_backward)(float *dx, const float *dy, int planes, int H, int W, int K, int S,
                             int OH, int OW);

    /* (C, N, S) -> (N, C, S) and back: channel-major conv activations to the
     * sample-major order of torch.flatten(NCHW). */
    void (*cn_to_nc)(float *dst, const float *src, int C, int N, size_t S);
    void (*nc_to_cn)(float *dst, const float *src, int C, int N, size_t S);

    /* probs = softmax(logits) per row; returns the SUM over rows of
     * -log p[label]; *correct += top-1 hits. labels may be NULL (returns 0). */
    double (*softmax_xent_forward)(float *probs, const float *logits, const int32_t *labels,
                                   int batch, int classes, long *correct);
    /* dlogits = probs - onehot(label): the gradient of the summed loss. */
    void (*softmax_xent_backward)(float *dlogits, const float *probs, const int32_t *labels,
                                  int batch, int classes);

    /* ---- Device memory (GPU engine, docs/GPU.md) ----
     * With device_memory = 1, buffers from alloc are not host-addressable:
     * the model and the trainer move data only through these ops. On the CPU
     * engine the copies are memcpy and sync does nothing. Ops are queued in
     * order on the engine's one compute stream; an op that returns a value
     * (sumsq, nonfinite, softmax_xent_forward) waits for it. */
    int device_memory;
    /* host -> engine; src may be reused as soon as it returns. */
    void (*upload)(void *dst, const void *src, size_t bytes);
    /* engine -> host; waits for the queued work and the copy. */
    void (*download)(void *dst, const void *src, size_t bytes);
    /* Waits until every queued op has finished. */
    void (*sync)(void);
    /* The native compute stream (cudaStream_t) for the NCCL seam; NULL on the CPU. */
    void *(*stream)(void);
    /* x *= a. */
    void (*scale)(float *x, size_t n, float a);
    /* y = a * b elementwise; y may equal a or b. */
    void (*mul)(float *y, const float *a, const float *b, size_t n);
    /* mask[i] = (uniform_i >= p) / (1 - p), uniform_i the i-th draw of
     * core_rng_make(seed, stream): the same mask on every engine. */
    void (*dropout_mask)(float *mask, size_t n, float p, uint64_t seed, uint64_t stream);
    /* sum of x[i]^2 in double. */
    double (*sumsq)(const float *x, size_t n);
    /* 1 when x holds a NaN or an Inf. */
    int (*nonfinite)(const float *x, size_t n);
    /* The optimizers' updates over flat buffers, PyTorch's rules (optim/optim.c
     * is the reference and owns step counting and bias corrections).
     * SGD: d = g + wd p; buf = mu buf + d (mu > 0); p -= lr (nesterov ? d + mu buf : buf). */
    void (*sgd_update)(float *p, const float *g, float *buf, size_t n, float lr, float mu, float wd,
                       int nesterov);
    /* Adam: p *= decay; d = g + wd p; m = lerp(m, d, 1-b1); v = b2 v + (1-b2) d^2;
     * p -= step_size m / (sqrt(v) / bc2_sqrt + eps). */
    void (*adam_update)(float *p, const float *g, float *m, float *v, size_t n, float decay,
                        float step_size, float bc2_sqrt, float b1, float b2, float eps, float wd);
    /* ---- Convolution: nn/conv.c says what, the engine decides how ----
     * w is (F, C, K, K), bias (F) or NULL; x is read through g's strides. The
     * output y is channel-major (F, N, OH, OW) when conv_out_chan_major, else
     * sample-major (N, F, OH, OW): each engine writes the layout its method
     * produces without a transpose (the CPU engine: im2col of groups of images
     * whose columns fit in L2, one sgemm per group, F rows; the CUDA engine:
     * cuDNN over the whole batch in NCHW). */
    int conv_out_chan_major;
    /* Floats of persistent per-layer work (*work) and of scratch shared by
     * every layer (*scratch) that conv_forward/backward need for batches up to
     * max_batch; 0 when the engine keeps its own workspace. */
    void (*conv_plan)(const engine_conv_geom *g, int F, int max_batch, size_t *work,
                      size_t *scratch);
    /* How this engine computes a convolution of this shape ("winograd
     * F(2x2,3x3)", "im2col", "cuDNN" ...), for the model summary. */
    const char *(*conv_method)(const engine_conv_geom *g, int F);
    /* y = act(conv(x, w) + bias) for `batch` images. */
    void (*conv_forward)(float *y, const float *x, const float *w, const float *bias, int batch,
                         int F, const engine_conv_geom *g, engine_act act, float *work,
                         float *scratch);
    /* From dy, the gradient of the output before any activation: dw and dbias
     * (overwritten, or added to with accumulate), and dx (fully written) unless
     * dx is NULL. dy may be overwritten. */
    void (*conv_backward)(float *dx, float *dw, float *dbias, float *dy, const float *x,
                          const float *w, int batch, int F, const engine_conv_geom *g,
                          int accumulate, float *work, float *scratch);

    /* Ops cannot fail on the CPU. A device fault (a CUDA or cuBLAS error) is
     * sticky: later ops do nothing, and status returns -1 with the first
     * error's message, which the trainer turns into a collective stop. */
    int (*status)(core_error *err);
    /* BLAS threads of this process (their count changes the bits of a GEMM's
     * sums); NULL where it does not apply (the GPU engine). */
    int (*blas_threads)(void);

    /* ---- Sequence models (engine/cpu/engine_cpu_seq.c; used by nn/embed.c, posenc.c,
     * layernorm.c, gelu.c, linear.c, attention.c, block.c, rnn.c, lstm.c, gru.c).
     * A sequence batch is (B, T, C) sample-major; "rows" is B*T. ---- */

    /* y[i] = table[ids[i]] (rows of D) for i < n; token ids are stored as floats;
     * ids outside [0, V) read row 0 (the data path rejects them before). */
    void (*embed_forward)(float *y, const float *ids, const float *table, size_t n, int V, int D);
    /* dtable[ids[i]] += dy[i]: the caller zeroes dtable unless accumulating. */
    void (*embed_backward)(float *dtable, const float *dy, const float *ids, size_t n, int V,
                           int D);
    /* y = a + b elementwise; y may equal a or b. */
    void (*add)(float *y, const float *a, const float *b, size_t n);
    /* y[o][i] = x[o][i] + p[i] for o < outer, i < n (position tables); y may equal x. */
    void (*add_broadcast)(float *y, const float *x, const float *p, int outer, size_t n);
    /* mask[i] = 0 with probability p, else 1/(1-p) (inverted dropout), drawn from r
     * (advancing it): dropout inside attention and residual paths. */
    void (*dropout_mask_rng)(float *mask, size_t n, float p, core_rng *r);
    /* Layer normalization over the last axis C of `rows` rows (eps 1e-5, biased
     * variance, as torch.nn.LayerNorm); keeps mean and 1/std for backward. */
    void (*layernorm_forward)(float *y, float *mean, float *rstd, const float *x, const float *w,
                              const float *b, int rows, int C);
    /* dx += d/dx (dx may be NULL); dw, db (+)= per accumulate. */
    void (*layernorm_backward)(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *mean, const float *rstd, const float *w, int rows,
                               int C, int accumulate);
    /* GELU, tanh approximation (torch.nn.GELU(approximate='tanh')); backward reads
     * the INPUT x; dx may equal dy. */
    void (*gelu_forward)(float *y, const float *x, size_t n);
    void (*gelu_backward)(float *dx, const float *dy, const float *x, size_t n);
    /* Multi-head self-attention core. qkv (B, T, 3D) holds q | k | v per position,
     * head h at columns h*D/H of each; out (B, T, D) = concat over heads of
     * A V with P = softmax(Q K^T / sqrt(D/H)) (causal: key j > query i masked),
     * A = P, or P * mask when mask (B, H, T, T) is given (attention dropout);
     * P (B, H, T, T) is kept for backward and Pd receives A when mask is set. */
    void (*attn_forward)(float *out, float *P, float *Pd, const float *mask, const float *qkv,
                         int B, int T, int H, int D, int causal);
    /* dqkv (B, T, 3D) = gradient of the attention core; scratch holds B*H*T*T
     * floats (the CUDA engine's dS; the CPU engine's blocked loop uses T*T). */
    void (*attn_backward)(float *dqkv, const float *dout, const float *P, const float *Pd,
                          const float *mask, const float *qkv, float *scratch, int B, int T, int H,
                          int D, int causal);
    /* LSTM step for B rows (PyTorch gate order i, f, g, o). g: pre-activations,
     * row stride ldg, replaced by the activations; c_prev (NULL = zeros), c, h:
     * row stride ldh. c = f*c_prev + i*g, h = o*tanh(c). */
    void (*lstm_cell_forward)(float *g, const float *c_prev, float *c, float *h, int B, int H,
                              size_t ldg, size_t ldh);
    /* dh (B, H) contiguous: total gradient of h_t; dc (B, H) contiguous: in,
     * the gradient of c_t from step t+1; out, the gradient of c_{t-1}.
     * dg (stride ldg) receives the pre-activation gradients. */
    void (*lstm_cell_backward)(float *dg, float *dc, const float *dh, const float *g,
                               const float *c_prev, const float *c, int B, int H, size_t ldg,
                               size_t ldh);
    /* GRU step (PyTorch gates r, z, n). gx: input pre-activations x W_ih^T + b_ih
     * (stride ldg), replaced by (r, z, n); gh: h_prev W_hh^T + b_hh (stride ldg);
     * h_prev NULL = zeros. n = tanh(gx_n + r * gh_n), h = (1-z)*n + z*h_prev. */
    void (*gru_cell_forward)(float *gx, const float *gh, const float *h_prev, float *h, int B,
                             int H, size_t ldg, size_t ldh);
    /* dgx, dgh (stride ldg) receive the pre-activation gradients of the two
     * projections; dh_prev (B, H) contiguous receives dh * z (the direct path). */
    void (*gru_cell_backward)(float *dgx, float *dgh, float *dh_prev, const float *dh,
                              const float *gx, const float *gh, const float *h_prev, int B, int H,
                              size_t ldg, size_t ldh);
} engine_ops;

/* The reference backend: OpenBLAS sgemm plus plain loops. */
const engine_ops *engine_cpu(void);

/* The CUDA backend on GPU `device` (engine/cuda/, docs/GPU.md), or NULL with
 * "ringtrain was built without CUDA" / "no CUDA device ..." in err. One device
 * per process: a second call must name the same device. flags: ENGINE_CUDA_*. */
#define ENGINE_CUDA_BF16 1 /* GEMMs on bf16 tensor cores, fp32 storage and accumulation */
#define ENGINE_CUDA_TF32 2 /* GEMMs and convolutions on TF32 tensor cores, fp32 storage */
const engine_ops *engine_cuda(int device, int flags, core_error *err);

#endif
