/*
 * data/loader_source.h: the interface loader.c offers to other batch
 * sources in data/ (internal to data/). A source (the token windows of
 * tokens.c) fills in these calls and hands them to data_loader_wrap_source;
 * the data_loader calls of data.h then go to it. loader.c knows nothing of
 * any particular source: the dependency goes one way, source -> loader.
 */
#ifndef DATA_LOADER_SOURCE_H
#define DATA_LOADER_SOURCE_H

#include "data/data.h"

typedef struct data_loader_source {
    void *ctx; /* the source's state; the loader owns it after the wrap */
    void (*free)(void *ctx);
    size_t (*batches)(const void *ctx);
    size_t (*mem_bytes)(const void *ctx);
    int (*begin_epoch)(void *ctx, long epoch, long skip_batches, core_error *err);
    int (*next)(void *ctx, data_batch *b, core_error *err);
} data_loader_source;

/* A data_loader whose calls go to src (copied; the loader then owns
 * src->ctx and frees it with src->free); NULL when out of memory. */
data_loader *data_loader_wrap_source(const data_loader_source *src);

#endif
