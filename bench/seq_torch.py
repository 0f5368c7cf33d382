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


def load_tokens(path):
    with h5py.File(path, "r") as f:
        return f["tokens"][:].astype(np.int64), int(f.attrs["vocab_size"])


def evaluate(model, val, T, batch):
    model.eval()
    n = (len(val) - 1) // T
    tot, cnt = 0.0, 0
    with torch.no_grad():
        for s in range(0, n, batch):
            idx = np.arange(s, min(s + batch, n)) * T
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
    ap.add_argument("--load")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    train, V = load_tokens(a.data)
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
        print(f"checkpoint {a.load}: val loss {evaluate(model, val, T, a.batch):.4f}")
        return
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    steps = a.bench or a.steps
    t0 = time.time()
    for step in range(steps):
        if a.bench and step == 2:
            t0 = time.time()  # exclude warm-up
        starts = rng.integers(0, len(train) - T, size=a.batch)
        x = torch.from_numpy(np.stack([train[s:s + T] for s in starts]))
        y = torch.from_numpy(np.stack([train[s + 1:s + T + 1] for s in starts]))
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not a.bench and (step + 1) % 100 == 0:
            print(f"step {step + 1} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    dt = time.time() - t0
    if a.bench:
        n = (steps - 2) * a.batch * T
        print(f"torch {a.model} threads={a.threads}: {n / dt:.0f} tokens/s ({steps - 2} steps)")
        return
    print(f"train {steps} steps in {dt:.1f} s, {steps * a.batch * T / dt:.0f} tokens/s")
    if val is not None:
        vl = evaluate(model, val, T, a.batch)
        print(f"final: val loss {vl:.4f} nats/token = {vl / math.log(2):.4f} bits/char")


if __name__ == "__main__":
    main()
