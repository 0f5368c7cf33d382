/*
 * engine/cuda/engine_cuda_seq.cu: the sequence-model ops of the CUDA engine
 * (embedding, position tables, layer norm, GELU, attention, RNN cells).
 */
#include "engine/cuda/engine_cuda_internal.h"

using namespace cuda_engine;

void cuda_fill_seq_ops(engine_ops *t)
{
    (void)t;
}
