#!/usr/bin/env python3
"""tests/gpu/torch_cnn.py: the PyTorch reference for tests/gpu/run.

The tutorial CNN of models/fashion_cnn.spec in PyTorch (same layers, same
421,642 parameters), trained with Adam on one GPU: images/s of forward +
backward + Adam at the given batch, with the input copied in from (pageable)
host memory every step as ringtrain does. fp32 without TF32 (as ringtrain's
fp32 engine), or bf16 autocast (as --precision bf16).
"""
import argparse
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
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    m = model().to(dev)
    assert sum(p.numel() for p in m.parameters()) == 421642
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    x_host = torch.randn(a.batch, 1, 28, 28)
    y_host = torch.randint(0, 10, (a.batch,))

    def step():
        x, y = x_host.to(dev), y_host.to(dev)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.bf16):
            loss = loss_fn(m(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(10):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"torch: fashion_cnn batch {a.batch} {'bf16' if a.bf16 else 'fp32'} on "
          f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}): "
          f"{a.batch * a.steps / dt:.0f} images/s")


if __name__ == "__main__":
    main()
