#!/usr/bin/python3
"""bench/gpt_torch.py: the PyTorch twin of models/gpt_small.spec trained under
DistributedDataParallel (gloo, one process per rank, one thread each) the way
`ringtrain train` trains it on a token file, for bench/gpt_compare.sh.

The model is bench/seq_torch.py's Transformer at gpt_small's sizes (6
blocks, width 384, 6 heads, MLP 1536, context 256, untied output layer), with
ringtrain's tensor names and init scheme. Each rank takes exactly the windows
ringtrain's rank draws (--ringtrain-world: the same counter-based RNG and
contiguous parts of the token stream), DDP averages the gradients (the mean
token loss over the global batch, as ringtrain's sum divided by the global
token count), then torch.nn.utils.clip_grad_norm_ and torch.optim.AdamW
(betas 0.9/0.999, eps 1e-8) at ringtrain's learning rate of the step
(src/optim/schedule.c: linear warm-up, then cosine to --min-lr over the run).

  /usr/bin/python3 bench/gpt_torch.py --data D-train.h5 --val D-val.h5 \\
      --train-limit N --val-limit N --batch 8 --steps 20 --seed 1 \\
      [--init-out FILE] [--world 2]
Prints "train: S steps, X tokens/s" (rank 0, all training steps) and
"final: val loss L" (windows tiling each rank's part of the first
--val-limit validation tokens, as ringtrain's --test-limit).
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seq_torch import CharTransformer, RingtrainWindows, evaluate, load_tokens, write_params  # noqa: E402


def schedule_lr(a, step, total):
    """src/optim/schedule.c, cosine with warm-up."""
    if step < a.warmup_steps:
        return a.lr * (step + 1) / a.warmup_steps
    u = min((step - a.warmup_steps) / (total - a.warmup_steps), 1.0)
    return a.min_lr + (a.lr - a.min_lr) * 0.5 * (1.0 + math.cos(math.pi * u))


def run(rank, a):
    torch.set_num_threads(1)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(a.port))
    dist.init_process_group("gloo", rank=rank, world_size=a.world)
    train, V = load_tokens(a.data)
    if a.train_limit:
        train = train[:a.train_limit]
    torch.manual_seed(a.seed)
    model = CharTransformer(V, a.T, a.D, a.H, a.L)
    if rank == 0 and a.init_out:
        write_params(model, a.init_out)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    # ringtrain's AdamW decays every tensor, biases and norms included
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=a.weight_decay)
    win = RingtrainWindows(len(train), a.T, a.batch, a.world, a.seed)
    local = a.batch // a.world
    total = a.steps
    dist.barrier()
    t0 = time.time()
    for step in range(total):
        starts = win.starts(step)[rank * local:(rank + 1) * local]
        x = torch.from_numpy(np.stack([train[s:s + a.T] for s in starts]))
        y = torch.from_numpy(np.stack([train[s + 1:s + a.T + 1] for s in starts]))
        for g in opt.param_groups:
            g["lr"] = schedule_lr(a, step, total)
        logits = ddp(x)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip_norm)
        opt.step()
        if rank == 0 and (step + 1) % a.log_every == 0:
            print(f"step {step + 1} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    dist.barrier()
    dt = time.time() - t0
    if rank == 0:
        print(f"train: {total} steps, {total * a.batch * a.T / dt:.0f} tokens/s ({dt:.1f} s)",
              flush=True)
        if a.val:
            val = load_tokens(a.val)[0]
            if a.val_limit:
                val = val[:a.val_limit]
            vl = evaluate(model, val, a.T, local, a.world)
            print(f"final: val loss {vl:.4f}", flush=True)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--val")
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--D", type=int, default=384)
    ap.add_argument("--H", type=int, default=6)
    ap.add_argument("--L", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8, help="global batch (windows)")
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--min-lr", type=float, default=6e-5)
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip-norm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--val-limit", type=int, default=0)
    ap.add_argument("--init-out")
    ap.add_argument("--init-only", action="store_true", help="write --init-out and exit")
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--port", type=int, default=29517)
    a = ap.parse_args()
    if a.batch % a.world:
        raise SystemExit(f"--batch {a.batch} is not a multiple of --world {a.world}")
    if a.init_only:  # the same weights the ranks start from (same seed)
        torch.manual_seed(a.seed)
        write_params(CharTransformer(load_tokens(a.data)[1], a.T, a.D, a.H, a.L), a.init_out)
        return
    mp.spawn(run, args=(a,), nprocs=a.world, join=True)


if __name__ == "__main__":
    main()
