/*
 * engine/cuda/engine_cuda_stub.c: engine_cuda() in a build without CUDA.
 *
 * CMake compiles engine_cuda.cu instead when it finds the CUDA toolkit
 * (RINGTRAIN_HAVE_CUDA); here the GPU engine only says why it is missing,
 * so `--device cuda` fails with one clear line instead of a link error.
 */
#include "engine/engine.h"

#ifndef RINGTRAIN_HAVE_CUDA
const engine_ops *engine_cuda(int device, int flags, core_error *err)
{
    core_error_set(err, "ringtrain was built without CUDA; rebuild on a machine with the CUDA "
                        "toolkit (cmake -DRINGTRAIN_CUDA=ON) to use --device cuda");
    return NULL;
}
#else
typedef int engine_cuda_stub_unused;
#endif
