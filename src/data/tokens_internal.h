/*
 * data/tokens_internal.h: the token window source behind a data_loader
 * (tokens.c), and the hook loader.c gives it (internal to data/).
 */
#ifndef DATA_TOKENS_INTERNAL_H
#define DATA_TOKENS_INTERNAL_H

#include "data/data.h"

typedef struct data_token_src data_token_src;

void data_token_src_free(data_token_src *s);
size_t data_token_src_batches(const data_token_src *s);
size_t data_token_src_mem_bytes(const data_token_src *s);
int data_token_src_begin_epoch(data_token_src *s, long epoch, long skip_batches, core_error *err);
int data_token_src_next(data_token_src *s, data_batch *b, core_error *err);

/* A data_loader whose calls go to src (which it then owns); NULL when out of memory. */
data_loader *data_loader_wrap_tokens(data_token_src *src);

#endif
