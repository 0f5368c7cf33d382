/*
 * train/quantize.h: post-training int8 quantization (docs/WORKFLOW.md).
 *
 * Weights of conv and dense layers: symmetric int8 per output channel,
 * scale_o = max|w_o| / 127, q = round(w / scale_o). Activations: the input
 * of each conv and dense layer is put on a symmetric int8 grid whose scale
 * is max|x| / 127 over a calibration set (a few hundred training samples).
 * Biases stay float32 (they are added to the int32 accumulator's dequantized
 * value, as in TFLite / PyTorch's fbgemm). Other layers are float.
 *
 * The int8 file (HDF5, readable with h5py):
 *   /qweights/<tensor>  int8, the tensor's dims       /qscales/<tensor>  float32 (dims[0])
 *   /params/<tensor>    float32, every tensor not quantized (biases)
 *   /act_scales         float32 (layers), input scale per layer, 0 = float input
 *   root attributes: format = "ringtrain-int8", format_version, model_spec, config
 *
 * Inference on a quantized file (eval, predict): the model holds the weights
 * dequantized, q * scale_o, and each quantized layer rounds its input to its
 * int8 grid first (nn_model_set_input_qscale). Every product is then
 * q_x * q_w * s_x * s_w of int8 values, summed in float32 by the same GEMM
 * as the float path: the numbers are exactly those of int8 inference up to
 * float32 summation order (no int8 GEMM kernel yet; see docs).
 */
#ifndef TRAIN_QUANTIZE_H
#define TRAIN_QUANTIZE_H

#include <stddef.h>

#include "core/error.h"
#include "data/data.h"
#include "nn/model.h"

/* 1 when the layer's weights are quantized (it has a ".weight" tensor). */
int train_quant_layer(nn_model *m, int layer);
/* Input scales from up to n calibration samples of d (read from the start,
 * spread over the file); scales has one entry per layer. */
int train_quant_calibrate(nn_model *m, data_dataset *d, size_t n, float *scales, core_error *err);
/* Writes the int8 file atomically (tmp + rename). */
int train_quant_write(const char *path, nn_model *m, const float *scales, const char *source,
                      core_error *err);
/* 1 if path is an int8 file, 0 if not (or unreadable). */
int train_quant_is_int8(const char *path);
/* Loads an int8 file into a model built from its spec: dequantized weights
 * into the parameters, and the input scales (one per layer) into scales. */
int train_quant_read(const char *path, nn_model *m, float *scales, core_error *err);
/* Applies the scales (collectively identical) to the model. */
int train_quant_apply(nn_model *m, const float *scales, core_error *err);

#endif
