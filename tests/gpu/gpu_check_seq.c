/*
 * tests/gpu/gpu_check_seq.c: the sequence-model ops (embedding, position
 * tables, layer norm, GELU, attention, RNN cells), CPU engine vs CUDA
 * engine, same random inputs, one row per op and case.
 *
 * Ops that read the output of an earlier op (cell backward reads the
 * forward's activations, attention backward its probabilities) get the CPU
 * engine's values uploaded, so every row measures one op alone. Then whole
 * small models of every sequence layer kind, built on both engines from the
 * same initial parameters: loss and every gradient (the layers' own use of
 * the engine, buffers and strides included).
 *
 *   gpu_check seqbench SPEC B T [bf16]   training tokens/s of SPEC at batch
 *                                        B x T (forward + backward + AdamW)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/model.h"
#include "gpu_check.h"

static float *dup_host(const float *x, size_t n)
{
    float *y = malloc(n * sizeof *y + 16);
    memcpy(y, x, n * sizeof *y);
    return y;
}

static void check_embed(int V, int D)
{
    const size_t n = 1031;
    float *ids = host_rand(n, 30, 0, (float)V);
    ids[3] = -1.0f; /* out of range: row 0, as on the CPU */
    ids[7] = (float)V;
    ids[11] = 2.5f;
    size_t nt = (size_t)V * D, ny = n * D;
    float *table = host_rand(nt, 31, -1, 1), *y = host_rand(ny, 0, 0, 0);
    float *d_ids = dev_f(ids, n), *d_table = dev_f(table, nt), *d_y = dev_f(y, ny);
    char name[64];
    C->embed_forward(y, ids, table, n, V, D);
    G->embed_forward(d_y, d_ids, d_table, n, V, D);
    snprintf(name, sizeof name, "embed_forward V%d D%d", V, D);
    report(name, y, d_y, ny);
    /* backward adds into the table: start from values, as when accumulating */
    float *dy = host_rand(ny, 32, -1, 1), *d_dy = dev_f(dy, ny);
    C->embed_backward(table, dy, ids, n, V, D);
    G->embed_backward(d_table, d_dy, d_ids, n, V, D);
    snprintf(name, sizeof name, "embed_backward V%d D%d (+=)", V, D);
    report(name, table, d_table, nt);
    G->free(d_ids), G->free(d_table), G->free(d_y), G->free(d_dy);
    free(ids), free(table), free(y), free(dy);
}

static void check_elementwise(void)
{
    const int outer = 13;
    const size_t n = 3001, total = (size_t)outer * n;
    float *a = host_rand(total, 33, -1, 1), *b = host_rand(total, 34, -1, 1);
    float *p = host_rand(n, 35, -1, 1), *y = host_rand(total, 0, 0, 0);
    float *da = dev_f(a, total), *db = dev_f(b, total), *dp = dev_f(p, n), *dy = dev_f(y, total);
    C->add(y, a, b, total);
    G->add(dy, da, db, total);
    report("add", y, dy, total);
    C->add(a, a, b, total);
    G->add(da, da, db, total);
    report("add (y == a)", a, da, total);
    C->add_broadcast(y, b, p, outer, n);
    G->add_broadcast(dy, db, dp, outer, n);
    report("add_broadcast", y, dy, total);
    C->add_broadcast(b, b, p, outer, n);
    G->add_broadcast(db, db, dp, outer, n);
    report("add_broadcast (y == x)", b, db, total);

    /* the mask from a generator already advanced: both engines continue it */
    const size_t m = 100003;
    float *mask = host_rand(m, 0, 0, 0), *dmask = dev_f(mask, m);
    core_rng rc = core_rng_make(42, 7), rg = rc;
    for (int i = 0; i < 5; i++)
        core_rng_uniform(&rc), core_rng_uniform(&rg);
    C->dropout_mask_rng(mask, m, 0.25f, &rc);
    G->dropout_mask_rng(dmask, m, 0.25f, &rg);
    report("dropout_mask_rng (exact)", mask, dmask, m);
    C->dropout_mask_rng(mask, m, 0.6f, &rc);
    G->dropout_mask_rng(dmask, m, 0.6f, &rg);
    report("dropout_mask_rng again (exact)", mask, dmask, m);
    report_value("dropout_mask_rng generator counter", (double)rc.counter, (double)rg.counter, 0.0);
    G->free(da), G->free(db), G->free(dp), G->free(dy), G->free(dmask);
    free(a), free(b), free(p), free(y), free(mask);
}

static void check_layernorm(int rows, int Cc)
{
    size_t n = (size_t)rows * Cc;
    float *x = host_rand(n, 36, -3, 2), *w = host_rand((size_t)Cc, 37, 0.5f, 1.5f);
    float *b = host_rand((size_t)Cc, 38, -0.5f, 0.5f), *y = host_rand(n, 0, 0, 0);
    float *mean = host_rand((size_t)rows, 0, 0, 0), *rstd = host_rand((size_t)rows, 0, 0, 0);
    float *dx_ = dev_f(x, n), *dw_ = dev_f(w, (size_t)Cc), *db_ = dev_f(b, (size_t)Cc);
    float *dyv = dev_f(y, n), *dmean = dev_f(mean, (size_t)rows),
          *drstd = dev_f(rstd, (size_t)rows);
    char name[64];
    C->layernorm_forward(y, mean, rstd, x, w, b, rows, Cc);
    G->layernorm_forward(dyv, dmean, drstd, dx_, dw_, db_, rows, Cc);
    snprintf(name, sizeof name, "layernorm_forward %dx%d y", rows, Cc);
    report(name, y, dyv, n);
    snprintf(name, sizeof name, "layernorm_forward %dx%d mean", rows, Cc);
    report(name, mean, dmean, (size_t)rows);
    snprintf(name, sizeof name, "layernorm_forward %dx%d rstd", rows, Cc);
    report(name, rstd, drstd, (size_t)rows);
    G->upload(dmean, mean, (size_t)rows * sizeof *mean);
    G->upload(drstd, rstd, (size_t)rows * sizeof *rstd);

    float *g = host_rand(n, 39, -1, 1), *dx = host_rand(n, 40, -1, 1);
    float *gw = host_rand((size_t)Cc, 41, -1, 1), *gb = host_rand((size_t)Cc, 42, -1, 1);
    float *dg = dev_f(g, n), *ddx = dev_f(dx, n);
    float *dgw = dev_f(gw, (size_t)Cc), *dgb = dev_f(gb, (size_t)Cc);
    for (int acc = 0; acc < 2; acc++)
        for (int with_dx = 0; with_dx < 2; with_dx++) {
            C->layernorm_backward(with_dx ? dx : NULL, gw, gb, g, x, mean, rstd, w, rows, Cc, acc);
            G->layernorm_backward(with_dx ? ddx : NULL, dgw, dgb, dg, dx_, dmean, drstd, dw_, rows,
                                  Cc, acc);
            const char *v = with_dx ? "dx +=" : "dx NULL";
            snprintf(name, sizeof name, "layernorm_backward %dx%d acc=%d %s dw", rows, Cc, acc, v);
            report(name, gw, dgw, (size_t)Cc);
            snprintf(name, sizeof name, "layernorm_backward %dx%d acc=%d %s db", rows, Cc, acc, v);
            report(name, gb, dgb, (size_t)Cc);
            if (with_dx) {
                snprintf(name, sizeof name, "layernorm_backward %dx%d acc=%d dx", rows, Cc, acc);
                report(name, dx, ddx, n);
            }
        }
    G->free(dx_), G->free(dw_), G->free(db_), G->free(dyv), G->free(dmean), G->free(drstd);
    G->free(dg), G->free(ddx), G->free(dgw), G->free(dgb);
    free(x), free(w), free(b), free(y), free(mean), free(rstd), free(g), free(dx), free(gw),
        free(gb);
}

static void check_gelu(void)
{
    const size_t n = 100003;
    float *x = host_rand(n, 43, -6, 6), *y = host_rand(n, 0, 0, 0), *g = host_rand(n, 44, -1, 1);
    float *dx = dev_f(x, n), *dy = dev_f(y, n), *dg = dev_f(g, n);
    C->gelu_forward(y, x, n);
    G->gelu_forward(dy, dx, n);
    report("gelu_forward", y, dy, n);
    C->gelu_backward(g, g, x, n);
    G->gelu_backward(dg, dg, dx, n);
    report("gelu_backward (dx == dy)", g, dg, n);
    G->free(dx), G->free(dy), G->free(dg), free(x), free(y), free(g);
}

static void check_attention(int B, int T, int H, int D, int causal, int dropout)
{
    size_t nq = (size_t)B * T * 3 * D, no = (size_t)B * T * D, np = (size_t)B * H * T * T;
    float *qkv = host_rand(nq, 45, -2, 2), *out = host_rand(no, 0, 0, 0);
    float *P = host_rand(np, 0, 0, 0), *Pd = host_rand(np, 0, 0, 0), *mask = NULL;
    if (dropout) {
        mask = host_rand(np, 0, 0, 0);
        core_rng r = core_rng_make(9, 9);
        C->dropout_mask_rng(mask, np, 0.2f, &r);
    }
    float *d_qkv = dev_f(qkv, nq), *d_out = dev_f(out, no), *d_P = dev_f(P, np);
    float *d_Pd = dev_f(Pd, np), *d_mask = mask ? dev_f(mask, np) : NULL;
    char tag[64], name[96];
    snprintf(tag, sizeof tag, "B%d T%d H%d D%d%s%s", B, T, H, D, causal ? " causal" : "",
             dropout ? " dropout" : "");
    C->attn_forward(out, P, Pd, mask, qkv, B, T, H, D, causal);
    G->attn_forward(d_out, d_P, d_Pd, d_mask, d_qkv, B, T, H, D, causal);
    snprintf(name, sizeof name, "attn_forward %s out", tag);
    report(name, out, d_out, no);
    snprintf(name, sizeof name, "attn_forward %s P", tag);
    report(name, P, d_P, np);
    if (dropout) {
        snprintf(name, sizeof name, "attn_forward %s Pd", tag);
        report(name, Pd, d_Pd, np);
    }
    G->upload(d_P, P, np * sizeof *P);
    G->upload(d_Pd, Pd, np * sizeof *Pd);

    float *dout = host_rand(no, 46, -1, 1), *dqkv = host_rand(nq, 0, 0, 0);
    float *scratch = host_rand(np, 0, 0, 0);
    float *d_dout = dev_f(dout, no), *d_dqkv = dev_f(dqkv, nq), *d_scratch = dev_f(scratch, np);
    C->attn_backward(dqkv, dout, P, Pd, mask, qkv, scratch, B, T, H, D, causal);
    G->attn_backward(d_dqkv, d_dout, d_P, d_Pd, d_mask, d_qkv, d_scratch, B, T, H, D, causal);
    snprintf(name, sizeof name, "attn_backward %s dqkv", tag);
    report(name, dqkv, d_dqkv, nq);
    G->free(d_qkv), G->free(d_out), G->free(d_P), G->free(d_Pd), G->free(d_mask);
    G->free(d_dout), G->free(d_dqkv), G->free(d_scratch);
    free(qkv), free(out), free(P), free(Pd), free(mask), free(dout), free(dqkv), free(scratch);
}

/* One step of a (B, T, .) buffer, as lstm.c uses it: row stride T * 4H
 * (gates) and T * H (states), at step t = 1 of T = 3. */
static void check_lstm(int with_prev)
{
    const int B = 7, H = 37, T = 3, GH = 4 * H;
    const size_t ldg = (size_t)T * GH, ldh = (size_t)T * H;
    const size_t ng = (size_t)B * ldg, nh = (size_t)B * ldh, nbh = (size_t)B * H;
    float *gt = host_rand(ng, 47, -3, 3), *cs = host_rand(nh, 48, -1, 1);
    float *hs = host_rand(nh, 49, -1, 1);
    float *d_g = dev_f(gt, ng), *d_c = dev_f(cs, nh), *d_h = dev_f(hs, nh);
    const float *cp = with_prev ? cs : NULL;
    const float *d_cp = with_prev ? d_c : NULL;
    char name[64];
    /* step t = 1 reads c_{t-1} at offset 0 */
    C->lstm_cell_forward(gt + GH, cp, cs + H, hs + H, B, H, ldg, ldh);
    G->lstm_cell_forward(d_g + GH, d_cp, d_c + H, d_h + H, B, H, ldg, ldh);
    const char *v = with_prev ? "c_prev" : "c_prev NULL";
    snprintf(name, sizeof name, "lstm_cell_forward %s gates", v);
    report(name, gt, d_g, ng);
    snprintf(name, sizeof name, "lstm_cell_forward %s c", v);
    report(name, cs, d_c, nh);
    snprintf(name, sizeof name, "lstm_cell_forward %s h", v);
    report(name, hs, d_h, nh);
    G->upload(d_g, gt, ng * sizeof *gt);
    G->upload(d_c, cs, nh * sizeof *cs);

    float *dg = host_rand(ng, 50, -1, 1), *dc = host_rand(nbh, 51, -1, 1);
    float *dh = host_rand(nbh, 52, -1, 1);
    float *d_dg = dev_f(dg, ng), *d_dc = dev_f(dc, nbh), *d_dh = dev_f(dh, nbh);
    C->lstm_cell_backward(dg + GH, dc, dh, gt + GH, cp, cs + H, B, H, ldg, ldh);
    G->lstm_cell_backward(d_dg + GH, d_dc, d_dh, d_g + GH, d_cp, d_c + H, B, H, ldg, ldh);
    snprintf(name, sizeof name, "lstm_cell_backward %s dg", v);
    report(name, dg, d_dg, ng);
    snprintf(name, sizeof name, "lstm_cell_backward %s dc", v);
    report(name, dc, d_dc, nbh);
    G->free(d_g), G->free(d_c), G->free(d_h), G->free(d_dg), G->free(d_dc), G->free(d_dh);
    free(gt), free(cs), free(hs), free(dg), free(dc), free(dh);
}

static void check_gru(int with_prev)
{
    const int B = 7, H = 37, T = 3, GH = 3 * H;
    const size_t ldg = (size_t)T * GH, ldh = (size_t)T * H;
    const size_t ng = (size_t)B * ldg, nh = (size_t)B * ldh, nbh = (size_t)B * H;
    float *gx = host_rand(ng, 53, -3, 3), *gh = host_rand(ng, 54, -3, 3);
    float *hs = host_rand(nh, 55, -1, 1);
    float *d_gx = dev_f(gx, ng), *d_gh = dev_f(gh, ng), *d_h = dev_f(hs, nh);
    const float *hp = with_prev ? hs : NULL;
    const float *d_hp = with_prev ? d_h : NULL;
    char name[64];
    C->gru_cell_forward(gx + GH, gh + GH, hp, hs + H, B, H, ldg, ldh);
    G->gru_cell_forward(d_gx + GH, d_gh + GH, d_hp, d_h + H, B, H, ldg, ldh);
    const char *v = with_prev ? "h_prev" : "h_prev NULL";
    snprintf(name, sizeof name, "gru_cell_forward %s gates", v);
    report(name, gx, d_gx, ng);
    snprintf(name, sizeof name, "gru_cell_forward %s h", v);
    report(name, hs, d_h, nh);
    G->upload(d_gx, gx, ng * sizeof *gx);
    G->upload(d_h, hs, nh * sizeof *hs);

    float *dgx = host_rand(ng, 56, -1, 1), *dgh = dup_host(dgx, ng);
    float *dhp = host_rand(nbh, 0, 0, 0), *dh = host_rand(nbh, 57, -1, 1);
    float *d_dgx = dev_f(dgx, ng), *d_dgh = dev_f(dgh, ng), *d_dhp = dev_f(dhp, nbh);
    float *d_dh = dev_f(dh, nbh);
    C->gru_cell_backward(dgx + GH, dgh + GH, dhp, dh, gx + GH, gh + GH, hp, B, H, ldg, ldh);
    G->gru_cell_backward(d_dgx + GH, d_dgh + GH, d_dhp, d_dh, d_gx + GH, d_gh + GH, d_hp, B, H, ldg,
                         ldh);
    snprintf(name, sizeof name, "gru_cell_backward %s dgx", v);
    report(name, dgx, d_dgx, ng);
    snprintf(name, sizeof name, "gru_cell_backward %s dgh", v);
    report(name, dgh, d_dgh, ng);
    snprintf(name, sizeof name, "gru_cell_backward %s dh_prev", v);
    report(name, dhp, d_dhp, nbh);
    G->free(d_gx), G->free(d_gh), G->free(d_h), G->free(d_dgx), G->free(d_dgh), G->free(d_dhp);
    G->free(d_dh);
    free(gx), free(gh), free(hs), free(dgx), free(dgh), free(dhp), free(dh);
}

/* A learnable token stream: sample b counts up by 3 from a random start
 * (mod V); the label of each position is the next token. */
static void seq_batch(float *x, int32_t *y, int B, int T, int V, int lps, core_rng *r)
{
    for (int b = 0; b < B; b++) {
        int s = (int)core_rng_below(r, (uint64_t)V);
        for (int t = 0; t < T; t++)
            x[(size_t)b * T + t] = (float)((s + 3 * t) % V);
        if (lps == T)
            for (int t = 0; t < T; t++)
                y[(size_t)b * T + t] = (s + 3 * (t + 1)) % V;
        else
            y[b] = s % V;
    }
}

static nn_model *model_on(const char *spec, const char *name, int B, const engine_ops *e)
{
    nn_model *m = NULL;
    if (nn_model_create_on(spec, name, B, e, &m, &err) != 0) {
        printf("  %-34s FAIL: %s\n", name, err.msg);
        failures++;
        return NULL;
    }
    nn_model_init_params(m, 7);
    return m;
}

/* Forward (training, so dropout is on: same masks on both engines) and
 * backward of `spec` on the CPU and the GPU: loss sum and gradients. */
static void check_model(const char *name, const char *spec, int B)
{
    nn_model *mc = model_on(spec, name, B, C), *mg = mc ? model_on(spec, name, B, G) : NULL;
    if (!mg) {
        nn_model_free(mc);
        return;
    }
    int dims[4];
    nn_model_input_dims(mc, dims);
    int T = dims[0], V = nn_model_num_classes(mc), lps = nn_model_labels_per_sample(mc);
    float *x = malloc((size_t)B * T * sizeof *x);
    int32_t *y = malloc((size_t)B * lps * sizeof *y);
    core_rng r = core_rng_make(3, 4);
    seq_batch(x, y, B, T, V, lps, &r);
    char row[96];
    for (int pass = 0; pass < 2; pass++) { /* the second pass: fresh dropout masks */
        nn_stats sc = {0}, sg = {0};
        nn_model_forward(mc, x, y, B, 1, &sc);
        nn_model_forward(mg, x, y, B, 1, &sg);
        nn_model_backward(mc, pass, NULL, NULL);
        nn_model_backward(mg, pass, NULL, NULL);
        snprintf(row, sizeof row, "model %s loss%s", name, pass ? " (2nd)" : "");
        report_value(row, sc.loss_sum, sg.loss_sum, TOL);
        snprintf(row, sizeof row, "model %s grads%s", name, pass ? " (accumulated)" : "");
        report(row, nn_model_grads(mc), nn_model_grads(mg), nn_model_param_count(mc));
    }
    core_error e2 = {{0}};
    if (G->status(&e2) != 0) {
        printf("  model %s: device fault: %s  FAIL\n", name, e2.msg);
        failures++;
    }
    nn_model_free(mc), nn_model_free(mg), free(x), free(y);
}

static void check_models(void)
{
    printf("-- sequence models, CPU vs GPU (same initial parameters, same dropout masks)\n");
    check_model("attention",
                "input 21\nembed 30 32\nposenc sinusoidal\nattention 4 causal "
                "dropout 0.1\nlayernorm\ngelu\nlinear 30\nloss softmax_cross_entropy\n",
                5);
    check_model("transformer",
                "input 37\nembed 30 32\nposenc learned\nblock transformer 4 "
                "causal dropout 0.1\nblock transformer 2 mlp 48\nlayernorm\nlinear 30\n"
                "loss softmax_cross_entropy\n",
                3);
    check_model("lstm gru rnn",
                "input 19\nembed 30 16\nlstm 24\ngru 20\nrnn 12\nrnn 12 relu\n"
                "linear 30\nloss softmax_cross_entropy\n",
                6);
    check_model("lstm last",
                "input 19\nembed 30 16\nlstm 24 last\ndense 4\n"
                "loss softmax_cross_entropy\n",
                6);
    check_model("gru last",
                "input 19\nembed 30 16\ngru 20\ngru 24 last\ndense 4\n"
                "loss softmax_cross_entropy\n",
                6);
    check_model("rnn last",
                "input 19\nembed 30 16\nrnn 24 relu last\ndense 4\n"
                "loss softmax_cross_entropy\n",
                6);
}

void gpu_check_seq_ops(void)
{
    printf("-- sequence ops\n");
    check_embed(114, 128);
    check_embed(300, 150);
    check_elementwise();
    check_layernorm(300, 128);
    check_layernorm(77, 150);
    check_layernorm(5000, 20);
    check_gelu();
    for (int causal = 0; causal < 2; causal++)
        for (int dropout = 0; dropout < 2; dropout++) {
            check_attention(3, 37, 4, 32, causal, dropout); /* T not a multiple of 32 */
            check_attention(2, 64, 2, 48, causal, dropout);
        }
    check_attention(2, 128, 4, 128, 1, 0); /* the char Transformer's shape */
    for (int prev = 0; prev < 2; prev++) {
        check_lstm(prev);
        check_gru(prev);
    }
    check_models();
}

/* ---- seqbench: training tokens/s ---- */

/* The text of the spec at path with its `input N` line set to `input T`. */
static char *spec_with_T(const char *path, int T)
{
    const char *text = read_file(path);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *out = malloc(n + 64), *o = out;
    int done = 0;
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        if (!done && strncmp(line, "input ", 6) == 0) {
            o += sprintf(o, "input %d", T);
            done = 1;
        } else {
            memcpy(o, line, len);
            o += len;
        }
        line += len;
        if (*line == '\n')
            *o++ = *line++;
    }
    *o = '\0';
    return out;
}

/* AdamW (lr 1e-3, weight decay 0.01, PyTorch's defaults otherwise) on the
 * gradients of a summed loss over `tokens` tokens, as the trainer steps. */
static void adamw_step(nn_model *m, float *mom, float *var, long step, int tokens)
{
    const double lr = 1e-3, wd = 0.01;
    size_t n = nn_model_param_count(m);
    float *g = nn_model_grads(m);
    G->scale(g, n, 1.0f / (float)tokens);
    double bc1 = 1.0 - pow(0.9, (double)step), bc2 = 1.0 - pow(0.999, (double)step);
    G->adam_update(nn_model_engine_params(m), g, mom, var, n, (float)(1.0 - lr * wd),
                   (float)(lr / bc1), (float)sqrt(bc2), 0.9f, 0.999f, 1e-8f, 0.0f);
}

int gpu_check_seq_bench(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: gpu_check seqbench SPEC B T [bf16]\n");
        return 2;
    }
    const char *path = argv[2];
    int B = atoi(argv[3]), T = atoi(argv[4]), bf16 = argc > 5 && strcmp(argv[5], "bf16") == 0;
    if (!C)
        C = engine_cpu();
    if (!G)
        G = engine_cuda(0, bf16 ? ENGINE_CUDA_BF16 : 0, &err);
    if (!G) {
        fprintf(stderr, "gpu_check: %s\n", err.msg);
        return 2;
    }
    if (bf16 != (strstr(G->name, "bf16") != NULL)) {
        fprintf(stderr,
                "gpu_check: seqbench: the engine is %s; call gpu_check_seq_bench before "
                "main creates it\n",
                G->name);
        return 2;
    }
    char *spec = spec_with_T(path, T);
    nn_model *m = NULL;
    if (B <= 0 || T <= 0 || !spec || nn_model_create_on(spec, path, B, G, &m, &err) != 0) {
        fprintf(stderr, "gpu_check: seqbench %s: %s\n", path,
                spec ? err.msg : "cannot read the spec, or bad B/T");
        free(spec);
        return 2;
    }
    nn_model_init_params(m, 1);
    int V = nn_model_num_classes(m), lps = nn_model_labels_per_sample(m);
    size_t n = nn_model_param_count(m);
    float *mom = G->alloc(n * sizeof(float), "m", &err),
          *var = G->alloc(n * sizeof(float), "v", &err);
    float *x = malloc((size_t)B * T * sizeof *x);
    int32_t *y = malloc((size_t)B * lps * sizeof *y);
    core_rng r = core_rng_make(11, 12);
    double first = 0.0, last = 0.0, t0 = 0.0, dt = 0.0;
    long steps = 0;
    for (long s = 1; mom && var; s++) {
        if (s == 4) /* three warm-up steps */
            t0 = now();
        seq_batch(x, y, B, T, V, lps, &r);
        nn_stats st = {0};
        nn_model_forward(m, x, y, B, 1, &st); /* waits for the loss */
        nn_model_backward(m, 0, NULL, NULL);
        adamw_step(m, mom, var, s, B * lps);
        last = st.loss_sum / (double)st.count;
        if (s == 1)
            first = last;
        if (s >= 4) {
            G->sync();
            steps = s - 3;
            dt = now() - t0;
            if ((dt > 2.0 && steps >= 5) || steps >= 1000)
                break;
        }
    }
    core_error e2 = {{0}};
    int fault = G->status(&e2) != 0;
    double tps = dt > 0 ? (double)B * T * steps / dt : 0.0;
    printf("seqbench: %s B=%d T=%d %s, %ld steps, loss %.3f -> %.3f%s%s\n", path, B, T,
           bf16 ? "bf16" : "fp32", steps, first, last, fault ? ", device fault: " : "",
           fault ? e2.msg : "");
    printf("seqbench: %s B=%d T=%d %s on %s: %.0f tokens/s (forward+backward+AdamW, ids "
           "uploaded each step)\n",
           path, B, T, bf16 ? "bf16" : "fp32", G->name, tps);
    G->free(mom), G->free(var);
    nn_model_free(m);
    free(x), free(y), free(spec);
    return fault || !isfinite(last) || tps <= 0 ? 1 : 0;
}
