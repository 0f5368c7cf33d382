#!/usr/bin/env python3
"""tests/gpu/torch_cnn.py: the PyTorch reference for tests/gpu/run.

The tutorial CNN of models/fashion_cnn.spec in PyTorch (same layers, same
421,642 parameters), trained with Adam on one GPU, at its honest best: the
batch resident on the GPU (no host copy inside the step), cuDNN's autotuner
on (torch.backends.cudnn.benchmark), the optimizer's fused CUDA step.
Prints images/s of forward + backward + Adam at the given batch: the median
of 5 timed windows after a warm-up.

Precisions, as ringtrain's --precision: fp32 (TF32 off for matmuls and
convolutions, exact), tf32 (TF32 on for both), bf16 (autocast to bfloat16).
--channels-last runs the model and input in NHWC memory format.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn


def model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    a = ap.parse_args()
    tf32 = a.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    m = model().to(dev)
    assert sum(p.numel() for p in m.parameters()) == 421642
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    m = m.to(memory_format=fmt)
    try:
        opt = torch.optim.Adam(m.parameters(), lr=1e-3, fused=True)
    except (TypeError, RuntimeError):
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    x = torch.randn(a.batch, 1, 28, 28, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (a.batch,), device=dev)
    bf16 = a.precision == "bf16"

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(m(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    steps = max(20, 25600 // a.batch)
    for _ in range(10):
        step()
    torch.cuda.synchronize()
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        rates.append(a.batch * steps / (time.perf_counter() - t0))
    layout = ", channels-last" if a.channels_last else ""
    print(f"torch: fashion_cnn batch {a.batch} {a.precision}{layout} on "
          f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, cuDNN "
          f"{torch.backends.cudnn.version()}): median of 5 windows of {steps} steps: "
          f"{statistics.median(rates):.0f} images/s")


if __name__ == "__main__":
    main()
