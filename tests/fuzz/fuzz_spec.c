/*
 * tests/fuzz/fuzz_spec.c: libFuzzer target for the model-spec parser
 * (nn_model_create). The input is the spec text. model.c is compiled into
 * this target with a 64 MiB model limit, so a spec the parser accepts is
 * also built (every buffer allocated) without running out of memory; the
 * library copy of model.c is then not linked in.
 *
 * A spec that builds also runs one forward and backward pass at batch 1:
 * the shapes the parser computed must match what the layers touch.
 */
#define NN_MODEL_LIMIT_BYTES (64.0 * 1024 * 1024)
#include "../../src/nn/model.c"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    core_error err = {{0}};
    nn_model *m = NULL;
    if (nn_model_create(text, "fuzz.spec", 2, &m, &err) == 0) {
        size_t in = nn_model_input_size(m);
        /* a huge input with a tiny model is legal but slow to run */
        if (in <= ((size_t)1 << 20)) {
            /* a sequence loss takes T labels per sample (nn_model_labels_per_sample) */
            size_t lps = (size_t)nn_model_labels_per_sample(m);
            float *x = calloc(2 * in, sizeof *x);
            int32_t *y = calloc(2 * lps, sizeof *y);
            nn_stats st = {0};
            if (x && y) {
                for (size_t i = 0; i < 2 * lps; i++)
                    y[i] = i % 2 ? nn_model_num_classes(m) - 1 : 0;
                nn_model_init_params(m, 1);
                nn_model_forward(m, x, y, 2, 1, &st);
                nn_model_backward(m, 0, NULL, NULL);
            }
            free(x);
            free(y);
        }
        nn_model_free(m);
    } else if (!err.msg[0] || strchr(err.msg, '\n')) {
        abort(); /* every failure is one line of text */
    }
    free(text);
    return 0;
}
