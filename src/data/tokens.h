/*
 * data/tokens.h: text as tokens for language models — the tokenizers, the
 * HDF5 token file, and the window loader that feeds the trainer.
 *
 * Tokenizers (docs/SEQUENCE_MODELS.md):
 *  - byte: the 256 byte values; any byte string round-trips.
 *  - char: the distinct bytes of the corpus, in byte order (a compact
 *    vocabulary for character-level models); bytes outside it cannot be encoded.
 *  - bpe:  byte-pair encoding trained on the corpus: the 256 bytes, then one
 *    token per merge, merges learned greedily (most frequent adjacent pair,
 *    ties to the smallest pair) and applied in order when encoding. Any byte
 *    string round-trips; the merges are a pure function of the corpus.
 *
 * Token file (HDF5, readable by h5py):
 *   /tokens            1-D uint8 (vocab <= 256), uint16 (<= 65536) or int32
 *   /vocab/bytes       uint8, the byte strings of all tokens concatenated
 *   /vocab/offsets     int64 (V+1): token i is bytes[offsets[i] : offsets[i+1]]
 *   /vocab/merges      int32 (M, 2): bpe merge k makes token 256+k (bpe only)
 *   attributes on "/": format "ringtrain-tokens", tokenizer (byte|char|bpe),
 *                      vocab_size, source (text)
 *
 * Window loader: a rank reads its own contiguous part of /tokens (the same
 * shard rule as samples) into memory once. A training batch is `batch`
 * windows at uniform random offsets in that part: x = tokens[s, s+T) as
 * floats, y = tokens[s+1, s+T+1). Offsets are a pure function of (seed, rank,
 * epoch, batch index), so resuming at batch k is exact. An epoch is
 * floor(part / (batch*T)) batches. Evaluation windows tile the part with
 * stride T, in order, the last batch possibly short.
 */
#ifndef DATA_TOKENS_H
#define DATA_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/data.h"

typedef enum data_tok_kind { DATA_TOK_BYTE, DATA_TOK_CHAR, DATA_TOK_BPE } data_tok_kind;

typedef struct data_tokenizer {
    data_tok_kind kind;
    int vocab;
    uint8_t *bytes;       /* token strings, concatenated */
    int64_t *offsets;     /* vocab + 1 */
    int32_t byte_id[256]; /* token of each single byte, -1 if none (char) */
    int nmerges;          /* bpe */
    int32_t *merges;      /* nmerges x 2 */
} data_tokenizer;

const char *data_tok_kind_name(data_tok_kind k);
int data_tok_kind_parse(const char *s, data_tok_kind *k, core_error *err);

/* Builds a tokenizer of `kind` from a corpus (byte ignores it; bpe trains
 * vocab_size - 256 merges on it, 256 < vocab_size <= 8192). */
int data_tokenizer_train(data_tokenizer *t, data_tok_kind kind, const uint8_t *text, size_t n,
                         int vocab_size, core_error *err);
void data_tokenizer_free(data_tokenizer *t);
/* Encodes n bytes into out (room for n tokens); returns the token count, or
 * -1 when a byte has no token (char), naming its offset. */
long data_tokenizer_encode(const data_tokenizer *t, const uint8_t *text, size_t n, int32_t *out,
                           core_error *err);
/* Decodes into out (capacity cap); returns the bytes the whole decoding
 * needs (may exceed cap: then out holds the first cap). Ids outside the
 * vocabulary decode to nothing. */
size_t data_tokenizer_decode(const data_tokenizer *t, const int32_t *ids, size_t n, uint8_t *out,
                             size_t cap);

/* Writes a token file (atomically: tmp + rename). */
int data_tokens_write(const char *path, const data_tokenizer *t, const int32_t *tokens, size_t n,
                      const char *source, core_error *err);
/* 1 if path is an HDF5 file with a /tokens array (0 otherwise, no error). */
int data_tokens_is_token_file(const char *path);
/* Reads the vocabulary of a token file. */
int data_tokenizer_read(const char *path, data_tokenizer *t, core_error *err);
/* Token count of a token file. */
int data_tokens_count(const char *path, size_t *n, core_error *err);
/* Reads tokens [start, start+count) as int32 and checks them against the vocabulary. */
int data_tokens_read(const char *path, size_t start, size_t count, int32_t *out, core_error *err);

typedef struct data_token_loader_config {
    int T;     /* context: tokens per window */
    int batch; /* local batch (windows) */
    int eval;  /* 1: tiled windows in order, short last batch; 0: random windows */
    uint64_t seed;
    int rank, world;        /* this rank's part of the token stream */
    size_t limit;           /* use only the first `limit` tokens (0 = all) */
    size_t mem_cap_bytes;   /* 0 = 256 MiB */
    const char *limit_flag; /* the flag that set limit ("--train-limit"), named in errors */
} data_token_loader_config;

/* Creates a data_loader (data.h) over a token file: data_loader_batches,
 * _begin_epoch, _next and _free work on it as on a sample loader. Labels
 * per window: T. vocab > 0 checks that every token is < vocab. */
int data_loader_create_tokens(const char *path, const data_token_loader_config *cfg, int vocab,
                              data_loader **out, core_error *err);

#endif
