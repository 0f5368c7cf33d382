/*
 * data/tokenizer.c: the byte, char and byte-pair-encoding tokenizers (see
 * data/tokens.h).
 *
 * BPE training counts adjacent pairs over the whole token sequence, merges
 * the most frequent pair everywhere (left to right, non-overlapping), and
 * repeats; ties go to the smallest (left, right) pair, so the merges depend
 * on the corpus alone. The counts are kept up to date through each merge
 * rather than recounted (train_bpe), which makes an 8k vocabulary over
 * megabytes of text a matter of seconds. Encoding replays the merges in the same order over the
 * input, which reproduces training's segmentation of the corpus exactly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "data/tokens.h"

#define BPE_MAX_VOCAB 8192 /* the pair counts are a dense V x V table: 256 MiB at 8192 */

const char *data_tok_kind_name(data_tok_kind k)
{
    return k == DATA_TOK_BYTE ? "byte" : k == DATA_TOK_CHAR ? "char" : "bpe";
}

int data_tok_kind_parse(const char *s, data_tok_kind *k, core_error *err)
{
    for (int i = DATA_TOK_BYTE; i <= DATA_TOK_BPE; i++)
        if (strcmp(s, data_tok_kind_name((data_tok_kind)i)) == 0) {
            *k = (data_tok_kind)i;
            return 0;
        }
    return core_error_set(err, "unknown tokenizer '%s' (expected byte, char, bpe)", s);
}

void data_tokenizer_free(data_tokenizer *t)
{
    free(t->bytes);
    free(t->offsets);
    free(t->merges);
    memset(t, 0, sizeof *t);
}

/* Room for `vocab` tokens of up to total_bytes bytes. */
static int alloc_vocab(data_tokenizer *t, int vocab, size_t total_bytes, core_error *err)
{
    t->vocab = vocab;
    t->bytes = malloc(total_bytes ? total_bytes : 1);
    t->offsets = calloc((size_t)vocab + 1, sizeof *t->offsets);
    if (!t->bytes || !t->offsets)
        return core_error_set(err, "out of memory building a vocabulary of %d tokens", vocab);
    return 0;
}

static int build_bytes(data_tokenizer *t, core_error *err)
{
    if (alloc_vocab(t, 256, 256, err))
        return -1;
    for (int i = 0; i < 256; i++) {
        t->bytes[i] = (uint8_t)i;
        t->offsets[i + 1] = i + 1;
        t->byte_id[i] = i;
    }
    return 0;
}

static int build_chars(data_tokenizer *t, const uint8_t *text, size_t n, core_error *err)
{
    int seen[256] = {0}, v = 0;
    for (size_t i = 0; i < n; i++)
        seen[text[i]] = 1;
    for (int i = 0; i < 256; i++)
        v += seen[i];
    if (v == 0)
        return core_error_set(err, "the corpus is empty: no characters for a vocabulary");
    if (alloc_vocab(t, v, (size_t)v, err))
        return -1;
    int k = 0;
    for (int i = 0; i < 256; i++) {
        t->byte_id[i] = -1;
        if (!seen[i])
            continue;
        t->bytes[k] = (uint8_t)i;
        t->offsets[k + 1] = k + 1;
        t->byte_id[i] = k++;
    }
    return 0;
}

/* Token strings of the 256 bytes plus every merge, in id order. */
static int bpe_vocab(data_tokenizer *t, core_error *err)
{
    int V = 256 + t->nmerges;
    size_t *len = calloc((size_t)V, sizeof *len);
    if (!len)
        return core_error_set(err, "out of memory building the BPE vocabulary");
    size_t total = 256;
    for (int i = 0; i < 256; i++)
        len[i] = 1;
    for (int k = 0; k < t->nmerges; k++) {
        len[256 + k] = len[t->merges[2 * k]] + len[t->merges[2 * k + 1]];
        total += len[256 + k];
    }
    int rc = alloc_vocab(t, V, total, err);
    for (int i = 0; rc == 0 && i < V; i++) {
        t->offsets[i + 1] = t->offsets[i] + (int64_t)len[i];
        uint8_t *dst = t->bytes + t->offsets[i];
        if (i < 256) {
            dst[0] = (uint8_t)i;
            continue;
        }
        int32_t a = t->merges[2 * (i - 256)], b = t->merges[2 * (i - 256) + 1];
        memcpy(dst, t->bytes + t->offsets[a], len[a]);
        memcpy(dst + len[a], t->bytes + t->offsets[b], len[b]);
    }
    for (int i = 0; i < 256; i++)
        t->byte_id[i] = i;
    free(len);
    return rc;
}

/* ---- BPE training ----
 * The pair counts of the current sequence live in a dense V x V table and
 * are kept exact while a merge rewrites the sequence: each replaced (a, b)
 * with neighbours L and R removes the pairs (L, a), (a, b), (b, R) and adds
 * (L, id), (id, R). The most frequent pair comes from a max-heap keyed by
 * (count, smallest pair) whose entries may be stale: a popped entry whose
 * count is no longer the pair's is pushed again with the current count, so
 * the first valid entry is the true maximum, ties to the smallest pair -
 * the same merges as counting every pair from scratch, in one pass over
 * the sequence per merge. */
typedef struct bpe_heap {
    uint64_t *k; /* count << 32 | (UINT32_MAX - pair): the largest key wins */
    size_t n, cap;
} bpe_heap;

static int heap_push(bpe_heap *h, uint32_t count, uint32_t pair)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 4096;
        uint64_t *k = realloc(h->k, cap * sizeof *k);
        if (!k)
            return -1;
        h->k = k;
        h->cap = cap;
    }
    uint64_t key = (uint64_t)count << 32 | (uint64_t)(UINT32_MAX - pair);
    size_t i = h->n++;
    while (i > 0 && h->k[(i - 1) / 2] < key) {
        h->k[i] = h->k[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->k[i] = key;
    return 0;
}

static uint64_t heap_pop(bpe_heap *h)
{
    uint64_t top = h->k[0], last = h->k[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->k[c + 1] > h->k[c])
            c++;
        if (h->k[c] <= last)
            break;
        h->k[i] = h->k[c];
        i = c;
    }
    if (h->n)
        h->k[i] = last;
    return top;
}

typedef struct bpe_state {
    uint32_t *count; /* V x V */
    size_t V;
    bpe_heap heap;
    int failed;
} bpe_state;

static void pair_add(bpe_state *b, int32_t x, int32_t y, int delta)
{
    if (!b)
        return;
    uint32_t p = (uint32_t)((size_t)x * b->V + (size_t)y);
    b->count[p] += (uint32_t)delta;
    if (delta > 0 && heap_push(&b->heap, b->count[p], p) != 0)
        b->failed = 1;
}

/* Replaces every (a, b) in seq[0..n) by id, left to right, keeping the
 * counts of st exact (st may be NULL: encoding); returns the new length. */
static size_t merge_counted(bpe_state *st, int32_t *seq, size_t n, int32_t a, int32_t b, int32_t id)
{
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        if (r + 1 < n && seq[r] == a && seq[r + 1] == b) {
            if (w > 0) {
                pair_add(st, seq[w - 1], a, -1);
                pair_add(st, seq[w - 1], id, +1);
            }
            pair_add(st, a, b, -1);
            if (r + 2 < n) {
                pair_add(st, b, seq[r + 2], -1);
                pair_add(st, id, seq[r + 2], +1);
            }
            seq[w++] = id;
            r++;
        } else {
            seq[w++] = seq[r];
        }
    }
    return w;
}

/* The most frequent pair (ties: the smallest), 0 count when none. */
static uint32_t best_pair(bpe_state *st, uint32_t *pair)
{
    while (st->heap.n) {
        uint64_t k = heap_pop(&st->heap);
        uint32_t c = (uint32_t)(k >> 32), p = UINT32_MAX - (uint32_t)k;
        if (st->count[p] == c) {
            *pair = p;
            return c;
        }
        if (st->count[p] > 0 && heap_push(&st->heap, st->count[p], p) != 0) {
            st->failed = 1;
            return 0;
        }
    }
    return 0;
}

static int train_bpe(data_tokenizer *t, const uint8_t *text, size_t n, int vocab_size,
                     core_error *err)
{
    if (vocab_size <= 256 || vocab_size > BPE_MAX_VOCAB)
        return core_error_set(err, "BPE vocabulary size must be in (256, %d], got %d",
                              BPE_MAX_VOCAB, vocab_size);
    bpe_state st = {0};
    st.V = (size_t)vocab_size;
    int32_t *seq = malloc((n ? n : 1) * sizeof *seq);
    st.count = calloc(st.V * st.V, sizeof *st.count);
    t->merges = malloc((size_t)(vocab_size - 256) * 2 * sizeof *t->merges);
    int rc = 0;
    if (!seq || !st.count || !t->merges)
        rc = core_error_set(err, "out of memory training BPE on %zu bytes", n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        seq[i] = text[i];
    for (size_t i = 0; rc == 0 && i + 1 < n; i++)
        st.count[(size_t)seq[i] * st.V + (size_t)seq[i + 1]]++;
    for (size_t p = 0; rc == 0 && p < 256 * st.V; p++)
        if (st.count[p] && heap_push(&st.heap, st.count[p], (uint32_t)p) != 0)
            st.failed = 1;
    size_t len = n;
    for (int id = 256; rc == 0 && !st.failed && id < vocab_size; id++) {
        uint32_t best = 0, best_n = best_pair(&st, &best);
        if (best_n < 2)
            break; /* nothing repeats: more merges would only memorize */
        int32_t a = (int32_t)(best / st.V), b = (int32_t)(best % st.V);
        t->merges[2 * t->nmerges] = a;
        t->merges[2 * t->nmerges + 1] = b;
        t->nmerges++;
        len = merge_counted(&st, seq, len, a, b, id);
    }
    if (rc == 0 && st.failed)
        rc = core_error_set(err, "out of memory training BPE on %zu bytes", n);
    free(seq);
    free(st.count);
    free(st.heap.k);
    return rc ? rc : bpe_vocab(t, err);
}

int data_tokenizer_train(data_tokenizer *t, data_tok_kind kind, const uint8_t *text, size_t n,
                         int vocab_size, core_error *err)
{
    memset(t, 0, sizeof *t);
    t->kind = kind;
    int rc = kind == DATA_TOK_BYTE   ? build_bytes(t, err)
             : kind == DATA_TOK_CHAR ? build_chars(t, text, n, err)
                                     : train_bpe(t, text, n, vocab_size, err);
    if (rc)
        data_tokenizer_free(t);
    return rc;
}

long data_tokenizer_encode(const data_tokenizer *t, const uint8_t *text, size_t n, int32_t *out,
                           core_error *err)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = t->byte_id[text[i]];
        if (out[i] < 0)
            return core_error_set(err,
                                  "byte 0x%02x at offset %zu is not in the %d-character "
                                  "vocabulary",
                                  text[i], i, t->vocab);
    }
    size_t len = n;
    for (int k = 0; k < t->nmerges; k++)
        len = merge_counted(NULL, out, len, t->merges[2 * k], t->merges[2 * k + 1], 256 + k);
    return (long)len;
}

size_t data_tokenizer_decode(const data_tokenizer *t, const int32_t *ids, size_t n, uint8_t *out,
                             size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab)
            continue;
        int64_t a = t->offsets[ids[i]], b = t->offsets[ids[i] + 1];
        for (int64_t j = a; j < b; j++, w++)
            if (w < cap)
                out[w] = t->bytes[j];
    }
    return w;
}
