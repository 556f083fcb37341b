"""Training throughput of rsd.training.train against PyTorch and the memory-traffic floor.

Seed-steps per second (one seed, one training step: forward on the two points,
backward, SGD update, and the records h, y, w, loss) for

* the paper's default setting: MLP, width 500, depth 20, leaky_relu, two points;
* the narrow setting: width 50, same otherwise;

for several numbers of seeds, trained through ``train`` exactly as a user would call it
(seeds vmapped in chunks of ``chunk_size``, one compiled program per chunk size; the
best of the ``--chunk-sizes`` tried is reported, with the others in the JSON), next to

* a plain PyTorch loop doing the same work (one seed after another; its rate does
  not depend on the number of seeds, so it is measured once per setting), and
* the memory-traffic floor of DESIGN.md §4: 16·L·P² bytes per seed-step (each
  weight read by the forward and the backward pass and read + written by the
  update, float32) divided by the memory bandwidth B, measured in this run as the
  speed of a large array copy.

Everything is measured in the same run; compile time (first call minus a steady
call) is reported separately. Timings on a shared machine are noisy.

    python benchmarks/train_throughput.py                 # full table (a few minutes)
    python benchmarks/train_throughput.py --seeds 1 4 --budget 200 --torch-steps 20
    python benchmarks/train_throughput.py --settings narrow --chunk-sizes 32 64 128

Writes benchmarks/results/train_throughput-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

SETTINGS = {"default": dict(width=500, depth=20, gain=1.0, lr=0.005),
            "narrow": dict(width=50, depth=20, gain=1.05, lr=0.005)}


def memory_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """B in bytes/s: best of ``repeats`` copies of a large float32 array (read + write)."""
    n = megabytes * 2**20 // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(repeats))
    return 2 * src.nbytes / best


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_rsd(name, num_seeds, steps, chunk_size, unroll, repeats=3):
    """(seconds per steady call, compile seconds) for train() on ``num_seeds`` seeds.

    The steady time is the best of ``repeats`` calls (the machine may be shared)."""
    import jax

    from rsd.data import two_points
    from rsd.networks import make_network
    from rsd.training import Setting, train

    cfg = SETTINGS[name]
    setting = Setting(architecture="mlp", activation="leaky_relu", steps=steps, layers=(10,),
                      name=f"bench/{name}", **cfg)
    x, y = two_points(1.0, 0.5)
    net = make_network("mlp", activation="leaky_relu", width=cfg["width"], depth=cfg["depth"],
                       gain=cfg["gain"], in_dim=1, out_dim=1)
    # Shared initial weights: the timing is of training, not of drawing random weights.
    init = [(p["kernel"], p["bias"]) for p in net.init(jax.random.key(0))]

    def call():
        run = train(setting, x, y, seeds=np.arange(num_seeds), init_params=init,
                    chunk_size=chunk_size, progress=False, unroll=unroll)
        jax.block_until_ready(run.h)
        return run

    first = _timed(call)  # compile + run
    steady = min(_timed(call) for _ in range(repeats))
    return steady, max(first - steady, 0.0)


def bench_torch(name, num_seeds, steps, threads):
    """Seconds of training for a plain PyTorch loop: ``num_seeds`` seeds one after another,
    ``steps`` each (model construction and a 3-step warm-up per seed are not timed)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    cfg = SETTINGS[name]
    P, L = cfg["width"], cfg["depth"]
    x = torch.tensor([[-1.0], [0.0]])
    y = torch.tensor([[0.6], [0.6 + 0.5**0.5]])

    def build(seed):
        torch.manual_seed(seed)
        dims = [1] + [P] * L + [1]
        layers = [torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
        for m in layers:
            torch.nn.init.xavier_normal_(m.weight, gain=cfg["gain"])
            torch.nn.init.zeros_(m.bias)
        params = [p for m in layers for p in m.parameters()]
        return layers, torch.optim.SGD(params, lr=cfg["lr"])

    def train(layers, opt, steps):
        # The same work as rsd per step: forward on both points, h at layer 10, y, w and
        # the loss recorded before the update, backward, SGD step.
        records = torch.empty(steps, 4)
        for t in range(steps):
            a, hid = x, None
            for n, m in enumerate(layers[:-1]):
                a = F.leaky_relu(m(a))
                if n == 10:
                    hid = a
            out = layers[-1](a)
            loss = 0.5 * torch.mean((out - y) ** 2)
            with torch.no_grad():
                d_out = out[1] - out[0]
                records[t, 0] = torch.sum((hid[1] - hid[0]) ** 2)
                records[t, 1] = torch.sum(d_out**2)
                records[t, 2] = torch.sum(d_out * (d_out - (y[1] - y[0])))
                records[t, 3] = loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return records

    total = 0.0
    for seed in range(num_seeds):
        layers, opt = build(seed)
        train(layers, opt, 3)
        total += _timed(lambda: train(layers, opt, steps))
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 4, 16, 64, 256])
    parser.add_argument("--budget", type=int, default=2000,
                        help="seed-steps per rsd measurement for the default setting "
                             "(steps = budget / seeds, at least --min-steps)")
    parser.add_argument("--narrow-budget", type=int, default=40000,
                        help="seed-steps per rsd measurement for the narrow setting")
    parser.add_argument("--min-steps", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[64],
                        help="train(chunk_size=...) values to try (each capped at the number of "
                             "seeds); the fastest is reported (default: train's default, 64)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="steady calls per measurement; the best is reported")
    parser.add_argument("--unroll", type=int, default=1)
    parser.add_argument("--torch-seeds", type=int, default=2)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: the faster of 1 and all cores, "
                             "measured)")
    parser.add_argument("--torch-steps", type=int, default=50)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)

    import jax

    threads = os.cpu_count() or 1
    bandwidth = memory_bandwidth()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {threads} CPU threads; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"memory bandwidth B (large copy, read+write): {bandwidth / 1e9:.2f} GB/s")

    rows = []
    for name in args.settings:
        P, L = SETTINGS[name]["width"], SETTINGS[name]["depth"]
        floor = 16 * L * P * P / bandwidth  # seconds per seed-step
        torch_rate = None
        if not args.no_torch:
            choices = [args.torch_threads] if args.torch_threads else sorted({1, threads})
            best = min(bench_torch(name, args.torch_seeds, args.torch_steps, n) for n in choices)
            torch_rate = args.torch_seeds * args.torch_steps / best
        budget = args.budget if name == "default" else args.narrow_budget
        for num_seeds in args.seeds:
            steps = int(np.clip(budget // num_seeds, args.min_steps, args.max_steps))
            by_chunk = {}
            for chunk in sorted({min(c, num_seeds) for c in args.chunk_sizes}):
                steady, compile_s = bench_rsd(name, num_seeds, steps, chunk, args.unroll,
                                              args.repeats)
                by_chunk[chunk] = dict(seconds=steady, compile_seconds=compile_s,
                                       seed_steps_per_s=num_seeds * steps / steady)
            chunk = max(by_chunk, key=lambda c: by_chunk[c]["seed_steps_per_s"])
            steady, compile_s = by_chunk[chunk]["seconds"], by_chunk[chunk]["compile_seconds"]
            rate = num_seeds * steps / steady
            rows.append(dict(
                setting=name, width=P, depth=L, seeds=num_seeds, steps=steps, chunk_size=chunk,
                by_chunk_size=by_chunk,
                seconds=steady, compile_seconds=compile_s, seed_steps_per_s=rate,
                floor_seed_steps_per_s=1 / floor, time_over_floor=(1 / rate) / floor,
                torch_seed_steps_per_s=torch_rate,
                speedup_over_torch=None if torch_rate is None else rate / torch_rate,
            ))
            r = rows[-1]
            print(f"  {name:8s} seeds={num_seeds:4d} steps={steps:4d} chunk={chunk:4d} "
                  f"{rate:10.1f} seed-steps/s  compile {compile_s:6.1f} s", flush=True)

    header = (f"{'setting':8s} {'seeds':>5s} {'steps':>5s} {'chunk':>5s} {'seed-steps/s':>13s} "
              f"{'floor/s':>10s} {'time/floor':>10s} {'torch/s':>9s} {'×torch':>8s} "
              f"{'compile s':>9s}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        torch_s = "n/a" if r["torch_seed_steps_per_s"] is None else f"{r['torch_seed_steps_per_s']:.1f}"
        speed = "n/a" if r["speedup_over_torch"] is None else f"{r['speedup_over_torch']:.1f}"
        print(f"{r['setting']:8s} {r['seeds']:5d} {r['steps']:5d} {r['chunk_size']:5d} "
              f"{r['seed_steps_per_s']:13.1f} "
              f"{r['floor_seed_steps_per_s']:10.1f} {r['time_over_floor']:10.2f} {torch_s:>9s} "
              f"{speed:>8s} {r['compile_seconds']:9.1f}")

    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(args.out, f"train_throughput-{stamp}.json")
    with open(path, "w") as f:
        json.dump(dict(
            argv=sys.argv[1:], jax=jax.__version__, platform=platform.platform(),
            cpu_threads=threads, xla_flags=os.environ.get("XLA_FLAGS", ""),
            bandwidth_bytes_per_s=bandwidth, rows=rows,
            note="floor = 16·L·P² bytes / B per seed-step; torch = plain loop, seeds in sequence",
        ), f, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
