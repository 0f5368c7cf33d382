/*
 * tests/unit/test_tokens.c: the tokenizers (byte and BPE round-trip any byte
 * string; BPE merges are a pure function of the corpus; char rejects unknown
 * bytes), the token file (write, read back, schema errors) and the token
 * window loader (labels are the next tokens, the shards are contiguous,
 * resuming at batch k is exact, evaluation tiles the part).
 */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/tokens.h"

static const char corpus[] = "the cat sat on the mat; the rat sat on the hat. "
                             "that cat and that rat sat at the mat.\n";

static void random_bytes(uint8_t *b, size_t n, uint64_t seed)
{
    core_rng r = core_rng_make(seed, 9);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)core_rng_below(&r, 256);
}

static void round_trip(const data_tokenizer *t, const uint8_t *text, size_t n)
{
    core_error err = {{0}};
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    uint8_t *back = malloc(n + 1);
    long k = data_tokenizer_encode(t, text, n, ids, &err);
    assert_true(k >= 0 && (size_t)k <= n);
    size_t m = data_tokenizer_decode(t, ids, (size_t)k, back, n + 1);
    assert_int_equal(m, n);
    assert_memory_equal(back, text, n);
    free(ids);
    free(back);
}

static void test_byte_round_trip(void **state)
{
    core_error err = {{0}};
    data_tokenizer t;
    assert_int_equal(data_tokenizer_train(&t, DATA_TOK_BYTE, NULL, 0, 0, &err), 0);
    assert_int_equal(t.vocab, 256);
    uint8_t buf[4096];
    for (uint64_t s = 0; s < 20; s++) {
        size_t n = (size_t)(s * 197 % 4096);
        random_bytes(buf, n, s);
        round_trip(&t, buf, n);
    }
    data_tokenizer_free(&t);
}

static void test_bpe_round_trip_and_determinism(void **state)
{
    core_error err = {{0}};
    data_tokenizer a, b;
    size_t n = strlen(corpus);
    assert_int_equal(data_tokenizer_train(&a, DATA_TOK_BPE, (const uint8_t *)corpus, n, 300, &err),
                     0);
    assert_int_equal(data_tokenizer_train(&b, DATA_TOK_BPE, (const uint8_t *)corpus, n, 300, &err),
                     0);
    assert_true(a.nmerges > 10);
    assert_int_equal(a.nmerges, b.nmerges);
    assert_memory_equal(a.merges, b.merges, (size_t)a.nmerges * 2 * sizeof *a.merges);
    /* the most frequent pair of the corpus goes first: "at" (11 times) */
    assert_int_equal(a.merges[0], 'a');
    assert_int_equal(a.merges[1], 't');
    /* merged tokens spell their parts */
    assert_int_equal(a.offsets[257] - a.offsets[256], 2);
    assert_memory_equal(a.bytes + a.offsets[256], "at", 2);
    /* any byte string round-trips, also one BPE never saw */
    round_trip(&a, (const uint8_t *)corpus, n);
    uint8_t buf[3000];
    for (uint64_t s = 0; s < 10; s++) {
        random_bytes(buf, sizeof buf, s);
        memcpy(buf + 100, "that cat sat", 12);
        round_trip(&a, buf, sizeof buf);
    }
    /* compression on its own corpus */
    int32_t ids[256];
    assert_true(data_tokenizer_encode(&a, (const uint8_t *)corpus, n, ids, &err) < (long)n / 2);
    data_tokenizer_free(&a);
    data_tokenizer_free(&b);
    assert_int_equal(data_tokenizer_train(&a, DATA_TOK_BPE, (const uint8_t *)corpus, n, 100, &err),
                     -1);
    assert_non_null(strstr(err.msg, "BPE vocabulary size"));
}

static void test_char(void **state)
{
    core_error err = {{0}};
    data_tokenizer t;
    size_t n = strlen(corpus);
    assert_int_equal(data_tokenizer_train(&t, DATA_TOK_CHAR, (const uint8_t *)corpus, n, 0, &err),
                     0);
    assert_true(t.vocab < 30);
    round_trip(&t, (const uint8_t *)corpus, n);
    int32_t ids[4];
    assert_int_equal(data_tokenizer_encode(&t, (const uint8_t *)"caZ", 3, ids, &err), -1);
    assert_non_null(strstr(err.msg, "byte 0x5a at offset 2"));
    data_tokenizer_free(&t);
}

/* tokens 0..n-1 mod V in a file, with a byte vocabulary */
static const char *write_ramp(size_t n, int V)
{
    static char path[1100];
    snprintf(path, sizeof path, "%s/ramp.h5", test_tmpdir("tokens"));
    core_error err = {{0}};
    data_tokenizer t;
    assert_int_equal(data_tokenizer_train(&t, DATA_TOK_BYTE, NULL, 0, 0, &err), 0);
    int32_t *tok = malloc(n * sizeof *tok);
    for (size_t i = 0; i < n; i++)
        tok[i] = (int32_t)(i % (size_t)V);
    assert_int_equal(data_tokens_write(path, &t, tok, n, "ramp", &err), 0);
    free(tok);
    data_tokenizer_free(&t);
    return path;
}

static void test_file_round_trip(void **state)
{
    core_error err = {{0}};
    const char *path = write_ramp(1000, 200);
    assert_int_equal(data_tokens_is_token_file(path), 1);
    size_t n = 0;
    assert_int_equal(data_tokens_count(path, &n, &err), 0);
    assert_int_equal(n, 1000);
    int32_t got[10];
    assert_int_equal(data_tokens_read(path, 395, 10, got, &err), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(got[i], (395 + i) % 200);
    assert_int_equal(data_tokens_read(path, 995, 10, got, &err), -1);
    assert_non_null(strstr(err.msg, "outside the 1000 tokens"));
    data_tokenizer t;
    assert_int_equal(data_tokenizer_read(path, &t, &err), 0);
    assert_int_equal(t.vocab, 256);
    assert_int_equal(t.kind, DATA_TOK_BYTE);
    data_tokenizer_free(&t);
    assert_int_equal(data_tokens_is_token_file("/nonexistent.h5"), 0);
}

static void test_windows(void **state)
{
    core_error err = {{0}};
    enum { V = 97, T = 8, B = 3 };
    const char *path = write_ramp(5000, V);
    data_token_loader_config c = {T, B, 0, 7, 1, 2, 0, 0, NULL};
    data_loader *l = NULL;
    assert_int_equal(data_loader_create_tokens(path, &c, V, &l, &err), 0);
    assert_int_equal(data_loader_batches(l), 2500 / (B * T));
    /* epoch 3 from the start, remembering batch 5 */
    float x5[B * T];
    int32_t y5[B * T];
    data_batch b;
    assert_int_equal(data_loader_begin_epoch(l, 3, 0, &err), 0);
    for (int k = 0; k < 6; k++) {
        assert_int_equal(data_loader_next(l, &b, &err), 1);
        assert_int_equal(b.n, B);
        for (int w = 0; w < B; w++) {
            int s = (int)b.x[w * T];
            for (int t = 0; t < T; t++) {
                int v = (int)b.x[w * T + t];
                assert_int_equal(v, (s + t) % V);              /* contiguous window */
                assert_int_equal(b.y[w * T + t], (v + 1) % V); /* label: next token */
            }
        }
        if (k == 5) {
            memcpy(x5, b.x, sizeof x5);
            memcpy(y5, b.y, sizeof y5);
        }
    }
    /* resuming at batch 5 gives the same batch */
    assert_int_equal(data_loader_begin_epoch(l, 3, 5, &err), 0);
    assert_int_equal(data_loader_next(l, &b, &err), 1);
    assert_memory_equal(b.x, x5, sizeof x5);
    assert_memory_equal(b.y, y5, sizeof y5);
    data_loader_free(l);

    /* rank 1 of 2 reads tokens [2500, 5000): evaluation tiles them in order */
    c.eval = 1;
    assert_int_equal(data_loader_create_tokens(path, &c, V, &l, &err), 0);
    size_t windows = (2500 - 1) / T;
    assert_int_equal(data_loader_batches(l), (windows + B - 1) / B);
    assert_int_equal(data_loader_begin_epoch(l, 0, 0, &err), 0);
    size_t seen = 0;
    while (data_loader_next(l, &b, &err) == 1)
        for (int w = 0; w < b.n; w++, seen++)
            assert_int_equal((int)b.x[w * T], (int)((2500 + seen * T) % V));
    assert_int_equal(seen, windows);
    data_loader_free(l);

    /* a model whose vocabulary is too small for the file */
    c.eval = 0;
    assert_int_equal(data_loader_create_tokens(path, &c, 50, &l, &err), -1);
    assert_non_null(strstr(err.msg, "vocabulary has 50 entries"));
}

/* --train-limit on a token file counts tokens: a limit too small for one
 * window per rank says so, with the smallest limit that works. */
static void test_limit_counts_tokens(void **state)
{
    core_error err = {{0}};
    enum { V = 97, T = 8, B = 1 };
    const char *path = write_ramp(5000, V);
    data_token_loader_config c = {T, B, 0, 7, 0, 16, 0, 0, NULL};
    c.limit = 128;
    c.limit_flag = "--train-limit";
    data_loader *l = NULL;
    assert_int_equal(data_loader_create_tokens(path, &c, V, &l, &err), -1);
    assert_null(l);
    assert_non_null(strstr(err.msg, "--train-limit 128 counts tokens, and 128 tokens over 16 "
                                    "rank(s) leave rank 0 a part of 8, fewer than one window of 8 "
                                    "plus its next token; set it to at least 144 (16 x 9)"));
    /* the limit it names works on every rank */
    c.limit = 144;
    for (c.rank = 0; c.rank < 16; c.rank++) {
        assert_int_equal(data_loader_create_tokens(path, &c, V, &l, &err), 0);
        data_loader_free(l);
    }
    /* without a limit the whole file is split: the old message */
    c.limit = 0;
    c.world = 1000;
    c.rank = 0;
    assert_int_equal(data_loader_create_tokens(path, &c, V, &l, &err), -1);
    assert_non_null(strstr(err.msg, "rank 0's part has 5 tokens"));
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_round_trip),
        cmocka_unit_test(test_bpe_round_trip_and_determinism),
        cmocka_unit_test(test_char),
        cmocka_unit_test(test_file_round_trip),
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_limit_counts_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
