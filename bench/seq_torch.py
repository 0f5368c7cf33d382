#!/usr/bin/python3
"""bench/seq_torch.py: the PyTorch twin of models/char_transformer.spec (and
char_lstm.spec), trained the way `ringtrain train` trains on a token file.

Same architecture, tensor names (block1.attn.qkv.weight, ...), init scheme
(normal 0.02 for embeddings and block linears, LayerNorm 1/0, Glorot uniform
head, zero biases), loss (mean token cross entropy), optimizer (Adam, betas
0.9/0.999, eps 1e-8, constant lr), batch of random windows, and evaluation
(windows tiling the validation tokens with stride T). Use Debian's
/usr/bin/python3 (torch 1.13).

  /usr/bin/python3 bench/seq_torch.py --data data/fortunes-train.h5 \
      --val data/fortunes-val.h5 --steps 600 --batch 32 --lr 3e-3 --threads 1
  --bench N: time N training steps only and print tokens/s
  --load CKPT: evaluate a ringtrain checkpoint with this model (forward check)
  --init-out FILE: write the initial parameters to FILE (/params/<name>, the
      layout `ringtrain train --init-from FILE` loads), so both systems start
      from the same weights
  --ringtrain-world W: draw the training windows exactly as `ringtrain train
      --seed S` on W ranks does (src/data/tokens.c: each rank's contiguous part
      of the stream, offsets from core_rng seeded by (seed, rank, epoch) at
      counter batch << 24); the global batch is the W local batches in rank
      order. Without it windows come from numpy's generator.
"""
import argparse
import math
import time

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attn(nn.Module):
    def __init__(s, D, H):
        super().__init__()
        s.H = H
        s.qkv = nn.Linear(D, 3 * D)
        s.proj = nn.Linear(D, D)

    def forward(s, x):
        B, T, D = x.shape
        q, k, v = s.qkv(x).split(D, dim=2)
        q, k, v = (t.view(B, T, s.H, D // s.H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D // s.H))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        return s.proj((att @ v).transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(s, D, M):
        super().__init__()
        s.fc = nn.Linear(D, M)
        s.proj = nn.Linear(M, D)

    def forward(s, x):
        return s.proj(F.gelu(s.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(s, D, H, M):
        super().__init__()
        s.ln1, s.attn, s.ln2, s.mlp = nn.LayerNorm(D), Attn(D, H), nn.LayerNorm(D), MLP(D, M)

    def forward(s, x):
        x = x + s.attn(s.ln1(x))
        return x + s.mlp(s.ln2(x))


class Posenc(nn.Module):
    def __init__(s, T, D):
        super().__init__()
        s.weight = nn.Parameter(torch.zeros(T, D))

    def forward(s, x):
        return x + s.weight


class CharTransformer(nn.Module):
    def __init__(s, V, T=128, D=128, H=4, L=4):
        super().__init__()
        s.embed1 = nn.Embedding(V, D)
        s.posenc1 = Posenc(T, D)
        for i in range(L):
            setattr(s, f"block{i + 1}", Block(D, H, 4 * D))
        s.L = L
        s.layernorm1 = nn.LayerNorm(D)
        s.linear1 = nn.Linear(D, V)
        for n, p in s.named_parameters():
            if n.endswith("bias"):
                nn.init.zeros_(p)
            elif "ln" in n or "layernorm" in n:
                nn.init.ones_(p)
            elif n.startswith("linear1"):
                nn.init.xavier_uniform_(p)
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(s, x):
        h = s.posenc1(s.embed1(x))
        for i in range(s.L):
            h = getattr(s, f"block{i + 1}")(h)
        return s.linear1(s.layernorm1(h))


class CharLSTM(nn.Module):
    def __init__(s, V, D=128, H=256):
        super().__init__()
        s.embed1 = nn.Embedding(V, D)
        s.lstm1 = nn.LSTM(D, H, batch_first=True)
        s.lstm2 = nn.LSTM(H, H, batch_first=True)
        s.linear1 = nn.Linear(H, V)
        nn.init.normal_(s.embed1.weight, 0.0, 0.02)
        nn.init.xavier_uniform_(s.linear1.weight)
        nn.init.zeros_(s.linear1.bias)

    def forward(s, x):
        return s.linear1(s.lstm2(s.lstm1(s.embed1(x))[0])[0])


M64 = (1 << 64) - 1


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class CoreRng:
    """src/core/rng.c: SplitMix64 finalizer over (seed, stream, counter)."""

    def __init__(s, seed, stream, counter=0):
        s.key = mix64((seed + 0x9E3779B97F4A7C15) & M64) ^ mix64((stream * 0xD1B54A32D192ED03) & M64)
        s.counter = counter

    def u64(s):
        s.counter += 1
        return mix64((s.key + s.counter * 0x9E3779B97F4A7C15) & M64)

    def below(s, n):
        limit = M64 - M64 % n
        while True:
            v = s.u64()
            if v < limit:
                return v % n


class RingtrainWindows:
    """The window starts ringtrain's token loader draws on `world` ranks."""

    def __init__(s, ntokens, T, batch, world, seed):
        if batch % world:
            raise SystemExit(f"--batch {batch} is not a multiple of --ringtrain-world {world}")
        s.T, s.local, s.world, s.seed = T, batch // world, world, seed
        base, extra = divmod(ntokens, world)
        s.parts = [(r * base + min(r, extra), base + (r < extra)) for r in range(world)]
        s.per_epoch = min(c // (s.local * T) for _, c in s.parts)

    def starts(s, step):
        epoch, k = divmod(step, s.per_epoch)
        out = []
        for r, (first, count) in enumerate(s.parts):
            rng = CoreRng(s.seed ^ 0x746F6B656E73, ((r & 0xFFFFFFFF) << 32) | (epoch & 0xFFFFFFFF),
                          k << 24)
            out += [first + rng.below(count - s.T) for _ in range(s.local)]
        return np.array(out)


def write_params(model, path):
    with h5py.File(path, "w") as f:
        g = f.create_group("params")
        for k, v in model.state_dict().items():
            g.create_dataset(k, data=v.detach().numpy().astype(np.float32))


def load_tokens(path):
    with h5py.File(path, "r") as f:
        return f["tokens"][:].astype(np.int64), int(f.attrs["vocab_size"])


def evaluate(model, val, T, batch, world=1):
    """Mean token cross entropy over windows tiling the validation tokens with
    stride T; with world > 1 each of the world contiguous parts is tiled on
    its own, as ringtrain's ranks tile theirs."""
    model.eval()
    base, extra = divmod(len(val), world)
    starts = []
    for r in range(world):
        first, count = r * base + min(r, extra), base + (r < extra)
        starts += [first + w * T for w in range((count - 1) // T)]
    tot, cnt = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(starts), batch):
            idx = starts[s:s + batch]
            x = torch.from_numpy(np.stack([val[i:i + T] for i in idx]))
            y = torch.from_numpy(np.stack([val[i + 1:i + T + 1] for i in idx]))
            logits = model(x)
            tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                   reduction="sum").item()
            cnt += y.numel()
    model.train()
    return tot / cnt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--val")
    ap.add_argument("--model", default="transformer", choices=["transformer", "lstm"])
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bench", type=int, default=0)
    ap.add_argument("--val-limit", type=int, default=0)
    ap.add_argument("--train-limit", type=int, default=0, help="as ringtrain's --train-limit")
    ap.add_argument("--load")
    ap.add_argument("--init-out")
    ap.add_argument("--epochs", type=int, default=0,
                    help="with --ringtrain-world: train this many of ringtrain's epochs")
    ap.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up, as ringtrain's")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--ringtrain-world", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    train, V = load_tokens(a.data)
    if a.train_limit:
        train = train[:a.train_limit]
    val = load_tokens(a.val)[0] if a.val else None
    if val is not None and a.val_limit:
        val = val[:a.val_limit]
    T = a.T
    model = CharTransformer(V, T) if a.model == "transformer" else CharLSTM(V)
    if a.load:
        with h5py.File(a.load, "r") as f:
            # ringtrain's tensor names and layouts are this model's state_dict
            sd = {k: torch.from_numpy(f["params"][k][:]) for k in f["params"]}
        model.load_state_dict(sd)
        print(f"checkpoint {a.load}: val loss {evaluate(model, val, T, a.batch, max(a.ringtrain_world, 1)):.4f}")
        return
    if a.init_out:
        write_params(model, a.init_out)
        print(f"initial parameters written to {a.init_out}")
    windows = RingtrainWindows(len(train), T, a.batch, a.ringtrain_world, a.seed) \
        if a.ringtrain_world else None
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    steps = a.bench or (windows.per_epoch * a.epochs if windows and a.epochs else a.steps)
    t0 = time.time()
    for step in range(steps):
        if a.bench and step == 2:
            t0 = time.time()  # exclude warm-up
        starts = windows.starts(step) if windows else rng.integers(0, len(train) - T, size=a.batch)
        x = torch.from_numpy(np.stack([train[s:s + T] for s in starts]))
        y = torch.from_numpy(np.stack([train[s + 1:s + T + 1] for s in starts]))
        for g in opt.param_groups:  # src/optim/schedule.c: (step + 1) / warmup, then constant
            g["lr"] = a.lr * (step + 1) / a.warmup_steps if step < a.warmup_steps else a.lr
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not a.bench and (step + 1) % a.log_every == 0:
            print(f"step {step + 1} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    dt = time.time() - t0
    if a.bench:
        n = (steps - 2) * a.batch * T
        print(f"torch {a.model} threads={a.threads}: {n / dt:.0f} tokens/s ({steps - 2} steps)")
        return
    print(f"train {steps} steps in {dt:.1f} s, {steps * a.batch * T / dt:.0f} tokens/s")
    if val is not None:
        vl = evaluate(model, val, T, a.batch, max(a.ringtrain_world, 1))
        print(f"final: val loss {vl:.4f} nats/token = {vl / math.log(2):.4f} bits/char")


if __name__ == "__main__":
    main()
