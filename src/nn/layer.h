/*
 * nn/layer.h: the interface every layer kind implements (internal to nn/).
 *
 * A layer kind is one file with one `const nn_layer_kind` and one entry in
 * the table in layers.c. The model parser tokenizes a spec line and hands the
 * arguments to kind->parse, which checks them against the input shape, sets
 * the output shape, declares its parameter tensors and says how much memory
 * it needs. The model then sizes and places everything once; forward and
 * backward only read and write memory the model handed out.
 *
 * Activations of a batch are stored either sample-major (N, d0, d1, ...) or,
 * for image stages after a convolution, channel-major (d0=C, N, H, W), which
 * is what one batched im2col+sgemm produces without a transpose. `flatten`
 * brings them back to sample-major in torch.flatten order.
 */
#ifndef NN_LAYER_H
#define NN_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "engine/engine.h"
#include "nn/model.h"

#define NN_LAYER_MAX_TENSORS 16 /* a transformer block has 12 */
#define NN_MAX_ARGS          16

/* Per-sample shape and how a batch of it lies in memory. */
typedef struct nn_shape {
    int ndim;
    int d[NN_MAX_DIMS];
    int chan_major; /* 1: (d0, N, d1, ...); 0: (N, d0, d1, ...) */
} nn_shape;

/* Where a parse error is reported: "source:line: ...". */
typedef struct nn_parse_ctx {
    const char *source;
    int line;
    int max_batch;
    core_error *err;
    const engine_ops *engine; /* the engine the model runs on (how it lays out and plans ops) */
    nn_recompute recompute;   /* which kinds re-run their forward in backward (--recompute) */
} nn_parse_ctx;

typedef struct nn_layer nn_layer;

typedef struct nn_layer_kind {
    const char *name;
    size_t priv_size; /* bytes of kind-specific config, zeroed, at l->priv */
    /* Reads argv[0..argc) (the words after the kind name), checks them against
     * l->in, sets l->out, declares tensors (nn_layer_add_tensor) and memory
     * (l->work_floats, l->iwork_count, l->scratch_floats). */
    int (*parse)(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx);
    /* Parameters from r; relu_next: a relu follows (He init). NULL for kinds without params. */
    void (*init)(nn_layer *l, core_rng *r, int relu_next);
    /* l->y = f(l->x) for `batch` samples. */
    void (*forward)(nn_layer *l, const engine_ops *e, int batch);
    /* Gradients of the parameters from l->dy (which it may overwrite), and
     * l->dx when need_dx. accumulate=1 adds into the parameter gradients. */
    void (*backward)(nn_layer *l, const engine_ops *e, int batch, int need_dx, int accumulate);
    /* Short config text for nn_model_describe ("32x3x3 same relu"). */
    void (*describe)(const nn_layer *l, char *buf, size_t len);
    /* The activation fused into the layer (for He init of the layer before). */
    engine_act (*fused_act)(const nn_layer *l);
} nn_layer_kind;

struct nn_layer {
    const nn_layer_kind *kind;
    char name[NN_NAME_MAX]; /* "conv1", "dense2", ... */
    int line;
    nn_shape in, out;
    void *priv;

    /* Declared by parse. */
    int ntensors;
    nn_tensor tensor[NN_LAYER_MAX_TENSORS]; /* offsets filled in by the model */
    size_t work_floats;                     /* persistent per-layer floats (e.g. im2col columns) */
    size_t iwork_count;                     /* persistent per-layer int32s (e.g. argmax) */
    size_t scratch_floats;                  /* transient floats shared by all layers */
    /* Recomputation: a kind that honours ctx->recompute sets `recompute`,
     * declares no work_floats and instead recompute_floats: the work its
     * forward fills and its backward reads. One region of the largest such
     * size is shared by all these layers; the model re-runs the layer's
     * forward (same input, same RNG state) right before its backward. */
    int can_recompute; /* the kind honours ctx->recompute (the plan says what it would save) */
    int recompute;
    size_t recompute_floats;

    /* Placed by the model. */
    float *param[NN_LAYER_MAX_TENSORS];
    float *grad[NN_LAYER_MAX_TENSORS];
    float *work;
    int32_t *iwork;
    float *scratch;
    const float *x;        /* input activations */
    float *y;              /* output activations */
    float *dx;             /* gradient w.r.t. x (NULL for the first layer unless asked) */
    float *dy;             /* gradient w.r.t. y */
    const int32_t *labels; /* loss layers: labels of the last forward (may be NULL) */

    /* Set by the model when a conv with a fused relu feeds a maxpool: the
     * pool applies the relu to its (4x smaller) output, and relu' while it
     * scatters the gradient; the conv skips both, and its y holds the values
     * before the relu. */
    int fold_relu_next; /* conv: relu and relu' are the next layer's */
    int fold_relu_prev; /* maxpool: relu on the output, relu' in backward */
    double loss_sum;    /* loss layers: output of the last forward */
    long correct;

    /* Set by the model before every forward (nn_model_forward). */
    int training;    /* 1: training forward (dropout active), 0: evaluation */
    uint64_t seed;   /* seed of this forward (nn_model_set_seed): dropout layers' masks */
    float in_qscale; /* > 0: the input is rounded to the int8 grid of this scale first */
    core_rng *rng;   /* sequence layers' dropout (attention, residual paths) draws from it */
    core_rng rng_at_forward; /* recompute: *rng as the forward found it, replayed in backward */
};

/* Shape helpers. */
size_t nn_shape_size(const nn_shape *s);
/* "(32,28,28)" into buf. */
const char *nn_shape_str(const nn_shape *s, char *buf, size_t len);

/* a * b, saturating at SIZE_MAX: sizes that overflow fail the model size check. */
size_t nn_size_mul(size_t a, size_t b);

/* Declares parameter tensor `role` ("weight", "bias") of the layer. */
void nn_layer_add_tensor(nn_layer *l, const char *role, int ndim, const int *dims);

/* Parse helpers: each returns 0 or -1 with "source:line: ..." in ctx->err. */
int nn_parse_error(const nn_parse_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int nn_parse_posint(const nn_parse_ctx *ctx, const char *what, const char *tok, int *out);
/* 1 and *act set if tok names an activation, else 0. */
int nn_parse_act(const char *tok, engine_act *act);
const char *nn_act_name(engine_act act);

/* Initializers (He normal for relu, Glorot uniform otherwise). */
void nn_init_weights(float *w, size_t n, int fan_in, int fan_out, int relu, core_rng *r);

/* The table of layer kinds (layers.c). */
const nn_layer_kind *nn_layer_kind_find(const char *name);
/* "input, conv, ..." for error messages. */
const char *nn_layer_kind_list(void);

extern const nn_layer_kind nn_kind_conv, nn_kind_maxpool, nn_kind_avgpool, nn_kind_flatten,
    nn_kind_dense, nn_kind_relu, nn_kind_tanh, nn_kind_sigmoid, nn_kind_loss;
extern const nn_layer_kind nn_kind_dropout;
/* The RNG stream of a dropout layer's masks (a hash of its name, "dropout1"). */
uint64_t nn_dropout_stream(const char *layer_name);

/* Sequence layer kinds (see nn/seq.h and docs/SEQUENCE_MODELS.md). */
extern const nn_layer_kind nn_kind_embed, nn_kind_posenc, nn_kind_layernorm, nn_kind_gelu,
    nn_kind_linear, nn_kind_attention, nn_kind_block, nn_kind_rnn, nn_kind_lstm, nn_kind_gru;

/* Internal access for tests and tools. */
int nn_model_layer_count(const nn_model *m);
nn_layer *nn_model_layer(nn_model *m, int i);

#endif
