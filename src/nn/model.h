/*
 * nn/model.h: a model is a list of layers built from a text spec, with every
 * parameter in ONE contiguous buffer and every gradient in a second buffer of
 * the same layout.
 *
 * Layout: tensors are placed in the order backward completes them, i.e. the
 * last layer's tensors first. Backward therefore fills the gradient buffer
 * front to back, and an all-reduce bucket is a plain slice [a, b) of it that
 * is complete as soon as nn_model_backward reports `done >= b` through its
 * callback.
 *
 * Spec format: one layer per line, '#' starts a comment (see docs/MODEL_SPEC.md):
 *   input C H W          conv F K [stride S] [same|valid] [relu|tanh|sigmoid]
 *   maxpool K [stride S] avgpool K [stride S]     flatten
 *   dense N [relu|tanh|sigmoid]                   relu | tanh | sigmoid
 *   dropout P
 *   loss softmax_cross_entropy
 *
 * Loss convention: forward returns the SUM of per-sample losses over the local
 * batch, and backward writes d(sum)/d(theta). The trainer sums over ranks and
 * divides by the global batch, so the result is the same for any world size.
 */
#ifndef NN_MODEL_H
#define NN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define NN_MAX_DIMS 4
#define NN_NAME_MAX 64

typedef struct nn_model nn_model;

/* One named parameter tensor inside the flat buffer, e.g. "conv1.weight"
 * with dims (32, 1, 3, 3) - PyTorch's layout and naming. */
typedef struct nn_tensor {
    char name[NN_NAME_MAX];
    int ndim;
    int dims[NN_MAX_DIMS];
    size_t offset; /* in floats, into params / grads */
    size_t count;
} nn_tensor;

typedef struct nn_stats {
    double loss_sum; /* sum of per-sample losses */
    long correct;    /* top-1 hits */
    long count;      /* samples */
} nn_stats;

/* Called during backward with the number of leading gradient floats that are
 * final; monotonically increasing, last call has done == param_count. */
typedef void (*nn_grad_ready_fn)(void *ctx, size_t done);

/* Parses and builds; `source` names the spec in messages ("models/x.spec").
 * Every parse error names source:line. Allocates activations for max_batch. */
int nn_model_create(const char *spec_text, const char *source, int max_batch, nn_model **out,
                    core_error *err);
void nn_model_free(nn_model *m);

/* Initializes every parameter from the seed: He for layers followed by relu,
 * Glorot otherwise; biases zero. Same seed -> same parameters on every rank. */
void nn_model_init_params(nn_model *m, uint64_t seed);

size_t nn_model_param_count(const nn_model *m);
float *nn_model_params(nn_model *m);
float *nn_model_grads(nn_model *m);
/* Moves the gradients into g (param_count floats of host memory that the
 * caller owns and frees after the model, e.g. a dist_shared_alloc buffer that
 * hier reduces without staging). Host engines only. */
int nn_model_use_grads(nn_model *m, float *g, core_error *err);
/* The same for the parameters (their values move along): the sharded
 * optimizer step keeps them in a node-shared buffer. Host engines only. */
int nn_model_use_params(nn_model *m, float *p, core_error *err);
int nn_model_tensor_count(const nn_model *m);
const nn_tensor *nn_model_tensor(const nn_model *m, int i);

/* Per-sample input size (floats), its dims (C,H,W) and the number of classes. */
size_t nn_model_input_size(const nn_model *m);
int nn_model_input_dims(const nn_model *m, int dims[NN_MAX_DIMS]);
int nn_model_num_classes(const nn_model *m);
const char *nn_model_spec_text(const nn_model *m);
/* Compares two spec texts as the parser reads them (comments, blank lines,
 * spacing and a UTF-8 byte-order mark do not count). 0 when they describe
 * the same model; else the line number in b of the first line that differs
 * (one past b's last line when b ends first), with both lines, words joined
 * by single spaces, in line_a and line_b ("(end of spec)" for a missing
 * one). */
int nn_spec_diff(const char *a, const char *b, char *line_a, char *line_b, size_t len);
/* One-line description per layer for logs ("conv1  conv 32x3x3 same relu  (1,28,28)->(32,28,28) 320
 * params"). */
void nn_model_describe(const nn_model *m, void (*line)(const char *text));

/* Forward over `batch` samples (batch <= max_batch). labels may be NULL for
 * inference. `training` enables dropout and keeps what backward needs.
 * Adds to *stats (loss_sum, correct, count) when labels are given. */
void nn_model_forward(nn_model *m, const float *x, const int32_t *labels, int batch, int training,
                      nn_stats *stats);
/* Class probabilities of the last forward: batch x num_classes, row-major. */
const float *nn_model_probs(const nn_model *m);

/* Backward of the last forward. accumulate=0 overwrites the gradients,
 * accumulate=1 adds to them (gradient accumulation over micro-batches).
 * on_ready may be NULL. */
void nn_model_backward(nn_model *m, int accumulate, nn_grad_ready_fn on_ready, void *ctx);

/* The `done` values nn_model_backward reports, in order (one per layer with
 * parameters), into out[0..max); returns how many there are. */
int nn_model_ready_points(const nn_model *m, size_t *out, int max);

/* Additions beyond the original interface. */
int nn_model_max_batch(const nn_model *m);
/* When on, backward also computes the gradient of the summed loss w.r.t. the
 * input (off by default: training does not need it). It is laid out like x
 * and stays valid until the next forward. */
void nn_model_set_input_grad(nn_model *m, int on);
const float *nn_model_input_grad(const nn_model *m);

/* Seed of the next forward: dropout masks are a function of it (and of the
 * layer), so the trainer sets it from (run seed, rank, step) before each step. */
void nn_model_set_seed(nn_model *m, uint64_t seed);
/* Quantized inference (train/quantize.c): scale > 0 makes layer `layer`
 * round its input to the symmetric int8 grid q * scale, q in [-127, 127],
 * before its forward; 0 switches it off. */
int nn_model_set_input_qscale(nn_model *m, int layer, float scale, core_error *err);
/* max |input| of layer `layer` in the last forward of `batch` samples (x: the
 * model input of that forward, used when layer == 0): activation calibration. */
float nn_model_input_absmax(const nn_model *m, int layer, const float *x, int batch);

/* ---- Engines (docs/GPU.md) ----
 * nn_model_create builds on the CPU engine. nn_model_create_on builds on any
 * engine; with a device engine (e->device_memory) every buffer - parameters,
 * gradients, activations - is device memory, and:
 *   - nn_model_params is a HOST VIEW of the parameters, current after
 *     nn_model_params_pull; after writing it, nn_model_params_push copies it
 *     to the device (init_params does both itself). On the CPU engine the
 *     view IS the parameter buffer and pull/push do nothing.
 *   - nn_model_grads and nn_model_engine_params are engine memory: only the
 *     engine's ops may touch them.
 *   - forward copies x and labels in; nn_model_probs copies the
 *     probabilities out (host memory, valid until the next call).
 *   - quantized inference (nn_model_set_input_qscale) is CPU only. */
struct engine_ops;
int nn_model_create_on(const char *spec_text, const char *source, int max_batch,
                       const struct engine_ops *engine, nn_model **out, core_error *err);
const struct engine_ops *nn_model_engine(const nn_model *m);
float *nn_model_engine_params(nn_model *m);
void nn_model_params_pull(nn_model *m);
void nn_model_params_push(nn_model *m);

/* ---- Options, the memory plan, recomputation (docs/MEMORY.md) ----
 * nn_model_create_opts = nn_model_parse + nn_model_alloc. Between the two
 * the model answers every query about its shape, tensors and memory
 * (nn_model_memory) but holds no large buffer, so a caller can plan and
 * refuse a run before allocating anything. */
typedef enum nn_recompute {
    NN_RECOMPUTE_NONE = 0,
    NN_RECOMPUTE_BLOCKS = 1 /* `block` layers keep no activations; backward re-runs their forward */
} nn_recompute;

typedef struct nn_model_opts {
    int max_batch;
    const struct engine_ops *engine; /* NULL: the CPU engine */
    double limit_bytes;              /* refuse buffers above this; 0: the machine's memory */
    nn_recompute recompute;
} nn_model_opts;

/* Bytes of the engine buffers nn_model_alloc requests, by role. */
typedef struct nn_model_mem {
    double params, grads;
    /* what backward reads: every layer's output at max_batch, the work each
     * layer keeps, and the recompute region */
    double activations;
    /* the two activation-gradient buffers, the shared scratch, labels (and a
     * device engine's input copy) */
    double workspace;
    /* activation bytes --recompute blocks would save (0 when it is on or
     * the model has no block) */
    double recompute_saves;
} nn_model_mem;

int nn_model_create_opts(const char *spec_text, const char *source, const nn_model_opts *o,
                         nn_model **out, core_error *err);
int nn_model_parse(const char *spec_text, const char *source, const nn_model_opts *o,
                   nn_model **out, core_error *err);
/* Checks the bytes against the limit and allocates; idempotent. */
int nn_model_alloc(nn_model *m, core_error *err);
void nn_model_memory(const nn_model *m, nn_model_mem *out);

/* Sequence models (docs/SEQUENCE_MODELS.md). A loss over a (T, V) sequence
 * takes T labels per sample: forward's labels then hold batch*T int32s,
 * sample-major; the loss is the SUM over all tokens and stats->count counts
 * tokens, so the trainer divides gradients by global batch * T (the global
 * token count) and loss_sum / count is the mean loss per token. 1 for a
 * per-sample loss. */
int nn_model_labels_per_sample(const nn_model *m);
/* The RNG dropout masks are drawn from (NULL: the model's own, seeded by
 * nn_model_init_params); the trainer passes the one its checkpoint keeps. */
struct core_rng;
void nn_model_set_rng(nn_model *m, struct core_rng *rng);

#endif
