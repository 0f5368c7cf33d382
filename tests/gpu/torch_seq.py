#!/usr/bin/env python3
"""tests/gpu/torch_seq.py: the PyTorch reference of `gpu_check seqbench`.

models/char_transformer.spec and char_lstm.spec in PyTorch - the very
modules of bench/seq_torch.py (same layers, tensor names and parameter
counts), eager - trained on one GPU with AdamW (lr 1e-3, weight decay 0.01)
on the mean token cross entropy: training tokens/s of forward + backward +
AdamW at each batch B x T, the token ids copied in from host memory every
step as ringtrain does. fp32 without TF32 (as ringtrain's fp32 engine), or
bf16 autocast (as --precision bf16). The batches are seqbench's learnable
stream (sample b counts up by 3 from a random start, mod V).

  python3 tests/gpu/torch_seq.py --model transformer --batch 32 256 [--bf16]
"""
import argparse
import importlib
import os
import sys
import time
import types

import torch
import torch.nn.functional as F

# bench/seq_torch.py reads token files with h5py and numpy; its models need
# neither, and the GPU machine may lack them.
for _name in ("h5py", "numpy"):
    try:
        importlib.import_module(_name)
    except ImportError:
        sys.modules[_name] = types.ModuleType(_name)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from seq_torch import CharLSTM, CharTransformer  # noqa: E402


def batch(gen, B, T, V):
    s = torch.randint(0, V, (B, 1), generator=gen)
    t = torch.arange(T + 1).unsqueeze(0)
    seq = (s + 3 * t) % V
    return seq[:, :T].contiguous(), seq[:, 1:].contiguous()


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench(name, B, T, V, bf16, dev, min_s=2.0):
    torch.manual_seed(1)
    m = (CharTransformer(V, T) if name == "transformer" else CharLSTM(V)).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(11)

    def step():
        x, y = batch(gen, B, T, V)
        x, y = x.to(dev), y.to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = m(x)
        loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    first = step().item()
    for _ in range(2):
        step()
    sync(dev)
    t0, steps = time.perf_counter(), 0
    while True:
        loss = step()
        steps += 1
        if steps % 5 == 0:
            sync(dev)
            dt = time.perf_counter() - t0
            if dt > min_s or steps >= 1000:
                break
    last = loss.item()
    params = sum(p.numel() for p in m.parameters())
    print(f"torch: char_{name} B={B} T={T} {'bf16' if bf16 else 'fp32'}, {steps} steps, "
          f"loss {first:.3f} -> {last:.3f}, {params} parameters", flush=True)
    print(f"torch: char_{name} B={B} T={T} {'bf16' if bf16 else 'fp32'} on "
          f"{torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu'} "
          f"(torch {torch.__version__}): "
          f"{B * T * steps / dt:.0f} tokens/s", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["transformer", "lstm"], default="transformer")
    ap.add_argument("--batch", type=int, nargs="+", default=[32])
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--V", type=int, default=114)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--device", default="cuda", help="cpu: to try the script without a GPU")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device(a.device)
    for B in a.batch:
        bench(a.model, B, a.T, a.V, a.bf16, dev)


if __name__ == "__main__":
    main()
