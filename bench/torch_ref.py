#!/usr/bin/python3
"""bench/torch_ref.py: the PyTorch reference for bench/cnn_vs_torch.sh.

Trains models/fashion_cnn.spec's network, written out in PyTorch, on the same
HDF5 file ringtrain reads, the way ringtrain trains it: He-normal (fan_in)
weights for layers followed by relu, Glorot-uniform for the last one, zero
biases; Adam (lr 1e-3, PyTorch defaults); summed cross entropy divided by the
global batch (= mean over the local batch on one process, and DDP's gradient
averaging across processes); contiguous shard per rank, per-epoch shuffle.

The loop is PyTorch's fastest honest one (--loop resident, the default): the
shard is widened to float32 in [0, 1] once, before the timed steps, and each
epoch's shuffle is one gather of the resident tensor, so a step takes its
batch as a contiguous slice: no per-batch conversion, no Python work in the
step beyond the model, the loss and the optimizer (ringtrain's loader
shuffles and widens in its own thread, inside its figure). --loop uint8 is
the former loop: samples kept as uint8, gathered and scaled per batch.

  torch_ref.py --data F.h5 --steps N --batch B [--threads T]    one process
  torch_ref.py --data F.h5 --steps N --batch B --ddp 2          DDP over gloo
  torch_ref.py --idx IMAGES.gz,LABELS.gz ...                     idx files, no h5py needed

--batch is per process. Thread pools are pinned BEFORE torch is imported:
Debian's torch links OpenBLAS, whose pool torch.set_num_threads does not
resize and whose idle threads spin. Prints key=value lines: images_per_s
(whole job), cpu_images_per_s (images per CPU-second of the timed steps,
summed over ranks: on a machine shared with other jobs this does not count
the time others held the core), peak_rss_kib (per process, max over ranks),
first_step_s (process start to the end of the first step).
"""
import argparse
import os
import socket
import subprocess
import sys
import time

T_START = time.time()


def pin_threads(n):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def process_start_time():
    """Wall-clock time this process was started (from /proc), else T_START."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        hz = os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + ticks / hz
    except (OSError, ValueError, IndexError):
        return T_START


def build_model(torch):
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    layers = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, m in enumerate(layers):
        if i + 1 < len(layers):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        else:
            nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)
    return model


def read_idx(spec):
    """Fashion-MNIST's idx files (gzip'd): uint8 images (N, 28, 28), labels (N,)."""
    import gzip
    import numpy as np
    paths = spec.split(",")
    with gzip.open(paths[0], "rb") as f:
        raw = bytearray(f.read())  # writable, as torch.from_numpy wants
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw, np.uint8, n * 784, 16).reshape(n, 28, 28)
    with gzip.open(paths[1], "rb") as f:
        y = np.frombuffer(bytearray(f.read()), np.uint8, n, 8)
    return x, y


def run(args, rank, world):
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if world > 1:
        import torch.distributed as dist
        dist.init_process_group("gloo", rank=rank, world_size=world)

    f = None
    if args.idx:
        xa, ya = read_idx(args.idx)
    else:
        import h5py
        f = h5py.File(args.data, "r")
        xa, ya = f[args.x_name], f[args.y_name]
    n = xa.shape[0]
    if args.train_limit:
        n = min(n, args.train_limit)
    start = rank * (n // world) + min(rank, n % world)
    count = n // world + (1 if rank < n % world else 0)
    # only this rank's shard is read from the file
    x = torch.from_numpy(np.ascontiguousarray(xa[start:start + count]))
    y = torch.from_numpy(np.asarray(ya[start:start + count]).astype(np.int64))
    if f is not None:
        f.close()
    if x.dtype != torch.uint8:
        raise SystemExit("torch_ref.py: expects uint8 samples")
    x = x.reshape(count, 1, 28, 28)
    if args.loop == "resident":
        x = x.float().div_(255.0)

    model = build_model(torch)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(args.seed + rank)
    per_epoch = count // args.batch
    perm = torch.randperm(count, generator=g)
    if args.loop == "resident":
        xs, ys = x[perm], y[perm]

    first_step_s = None
    t0 = c0 = None
    for step in range(args.steps + args.warmup):
        if step == args.warmup:
            t0, c0 = time.time(), time.process_time()
        b = step % per_epoch
        if b == 0 and step > 0:
            perm = torch.randperm(count, generator=g)
            if args.loop == "resident":
                xs, ys = x[perm], y[perm]
        if args.loop == "resident":
            xb = xs[b * args.batch:(b + 1) * args.batch]
            yb = ys[b * args.batch:(b + 1) * args.batch]
        else:
            idx = perm[b * args.batch:(b + 1) * args.batch]
            xb = x[idx].float().div_(255.0)
            yb = y[idx]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        if first_step_s is None:
            first_step_s = time.time() - process_start_time()
    elapsed = time.time() - t0 if args.steps > 0 else 0.0
    cpu = time.process_time() - c0 if args.steps > 0 else 0.0

    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ips = args.steps * args.batch / elapsed if elapsed > 0 else 0.0
    cpu_ips = args.steps * args.batch / cpu if cpu > 0 else 0.0
    print(f"rank={rank} images_per_s={ips:.1f} cpu_images_per_s={cpu_ips:.1f} peak_rss_kib={rss} "
          f"first_step_s={first_step_s:.3f} loss={loss.item():.4f}", flush=True)
    if world > 1:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_ddp(args):
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
               WORLD_SIZE=str(args.ddp))
    pin_threads(args.threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    argv = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    procs = [subprocess.Popen(argv, env=dict(env, RANK=str(r)), stdout=subprocess.PIPE, text=True)
             for r in range(args.ddp)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("torch_ref.py: a DDP process failed")
    stats = [dict(kv.split("=") for kv in o.split()) for o in outs]
    # every rank runs the same number of synchronized steps: the job's rate is
    # the sum of the per-rank rates
    print("images_per_s=%.1f" % sum(float(s["images_per_s"]) for s in stats))
    print("cpu_images_per_s=%.1f" % sum(float(s["cpu_images_per_s"]) for s in stats))
    print("peak_rss_kib=%d" % max(int(s["peak_rss_kib"]) for s in stats))
    print("first_step_s=%.3f" % max(float(s["first_step_s"]) for s in stats))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--idx", help="IMAGES.gz,LABELS.gz (idx format) instead of --data")
    ap.add_argument("--x-name", default="images")
    ap.add_argument("--y-name", default="labels")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--loop", choices=("resident", "uint8"), default="resident",
                    help="resident: float32 shard, sliced batches; uint8: per-batch widening")
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ddp", type=int, default=0, help="processes for DistributedDataParallel")
    ap.add_argument("--bind", action="store_true", help="bind DDP rank r to core r (as mpirun --bind-to core)")
    args = ap.parse_args()
    if not args.data and not args.idx:
        ap.error("--data or --idx is required")
    if args.ddp > 1 and "RANK" not in os.environ:
        launch_ddp(args)
        return
    pin_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if args.bind and world > 1:
        os.sched_setaffinity(0, {rank % os.cpu_count()})
    run(args, rank, world)


if __name__ == "__main__":
    main()
