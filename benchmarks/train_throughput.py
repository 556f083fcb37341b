"""Training throughput of rsd.training.train against PyTorch and the memory-traffic floor.

Seed-steps per second (one seed, one training step: forward on the two points,
backward, SGD update, and the records h, y, w, loss) for

* the paper's default setting: MLP, width 500, depth 20, leaky_relu, two points;
* the narrow setting: width 50, same otherwise;

for several numbers of seeds, trained through ``train`` exactly as a user would call it
(seeds vmapped in chunks of ``chunk_size``, by default train's own choice, one compiled
program per chunk size; with ``--chunk-sizes`` the best of those tried is reported, with
the others in the JSON), next to

* a plain PyTorch loop doing the same work (one seed after another; its rate does
  not depend on the number of seeds, so it is measured once per setting), and
* the memory-traffic floor of DESIGN.md §4: 16·L·P² bytes per seed-step (each
  weight read by the forward and the backward pass and read + written by the
  update, float32) divided by the memory bandwidth B, measured as the speed of a
  large array copy right before each timed call of the row (the best B of the row
  against the best time of the row: on a shared machine both suffer alike).

Everything is measured in the same run; compile time (first call minus a steady
call) is reported separately, and so is the load average (``os.getloadavg``) at the
end of each row. Timings on a shared machine are noisy: compare ratios, not rates.

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

from rsd.bench._core import memory_bandwidth  # the copy bandwidth rsd bench uses

SETTINGS = {"default": dict(width=500, depth=20, gain=1.0, lr=0.005),
            "narrow": dict(width=50, depth=20, gain=1.05, lr=0.005)}


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_rsd(name, num_seeds, steps, chunk_size, unroll, repeats=3):
    """Timings of train() on ``num_seeds`` seeds: a dict with the best steady call's
    seconds, the compile seconds, the best bandwidth B measured right before each
    steady call, and the chunk size train used (its own choice for ``chunk_size=None``).

    The machine may be shared: the best of ``repeats`` calls, each next to its own
    measurement of B."""
    import jax

    from rsd.data import two_points
    from rsd.training import _engine
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

    # The chunk size train picks: read off the first program call (not re-derived here).
    chunks = []
    make_program = _engine._chunk_program

    def spying_program(**kw):
        program = make_program(**kw)

        def run(params, k_shuffle, *rest):
            chunks.append(k_shuffle.shape[0])
            return program(params, k_shuffle, *rest)
        return run

    def call():
        run = train(setting, x, y, seeds=np.arange(num_seeds), init_params=init,
                    chunk_size=chunk_size, progress=False, unroll=unroll)
        jax.block_until_ready(run.h)
        return run

    _engine._chunk_program = spying_program
    try:
        first = _timed(call)  # compile + run
    finally:
        _engine._chunk_program = make_program
    times, bandwidths = [], []
    for _ in range(repeats):
        bandwidths.append(memory_bandwidth(256, 3))
        times.append(_timed(call))
    bandwidths.append(memory_bandwidth(256, 3))
    steady = min(times)
    return dict(seconds=steady, compile_seconds=max(first - steady, 0.0),
                bandwidth=max(bandwidths), chunk_used=chunks[0], all_seconds=times,
                load=os.getloadavg()[0])


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
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 4, 16, 64, 256, 1024])
    parser.add_argument("--budget", type=int, default=2000,
                        help="seed-steps per rsd measurement for the default setting "
                             "(steps = budget / seeds, at least --min-steps)")
    parser.add_argument("--narrow-budget", type=int, default=40000,
                        help="seed-steps per rsd measurement for the narrow setting")
    parser.add_argument("--min-steps", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--max-default-seeds", type=int, default=256,
                        help="skip seed counts above this for the default setting (each "
                             "seed-step takes ~10 ms on a 2-core CPU)")
    parser.add_argument("--chunk-sizes", nargs="+", default=["auto"],
                        help="train(chunk_size=...) values to try ('auto' = None, train's own "
                             "choice; numbers are capped at the number of seeds); the fastest "
                             "is reported (default: auto)")
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
        torch_rate = None
        if not args.no_torch:
            choices = [args.torch_threads] if args.torch_threads else sorted({1, threads})
            best = min(bench_torch(name, args.torch_seeds, args.torch_steps, n) for n in choices)
            torch_rate = args.torch_seeds * args.torch_steps / best
        budget = args.budget if name == "default" else args.narrow_budget
        for num_seeds in args.seeds:
            if name == "default" and num_seeds > args.max_default_seeds:
                continue
            steps = int(np.clip(budget // num_seeds, args.min_steps, args.max_steps))
            by_chunk = {}
            for c in args.chunk_sizes:
                chunk = None if c == "auto" else min(int(c), num_seeds)
                m = bench_rsd(name, num_seeds, steps, chunk, args.unroll, args.repeats)
                floor_s = 16 * L * P * P / m["bandwidth"]  # seconds per seed-step
                m.update(seed_steps_per_s=num_seeds * steps / m["seconds"],
                         time_over_floor=m["seconds"] / (num_seeds * steps) / floor_s)
                by_chunk[c] = m
            best = min(by_chunk, key=lambda c: by_chunk[c]["time_over_floor"])
            m = by_chunk[best]
            rate = m["seed_steps_per_s"]
            rows.append(dict(
                setting=name, width=P, depth=L, seeds=num_seeds, steps=steps,
                chunk_size=m["chunk_used"], chunk_choice=best, by_chunk_size=by_chunk,
                seconds=m["seconds"], compile_seconds=m["compile_seconds"],
                seed_steps_per_s=rate, bandwidth_bytes_per_s=m["bandwidth"],
                floor_seed_steps_per_s=m["bandwidth"] / (16 * L * P * P),
                time_over_floor=m["time_over_floor"], load_average=m["load"],
                torch_seed_steps_per_s=torch_rate,
                speedup_over_torch=None if torch_rate is None else rate / torch_rate,
            ))
            print(f"  {name:8s} seeds={num_seeds:4d} steps={steps:4d} chunk={m['chunk_used']:4d} "
                  f"{rate:10.1f} seed-steps/s  {m['time_over_floor']:5.2f}x floor "
                  f"(B {m['bandwidth'] / 1e9:.1f} GB/s, load {m['load']:.1f})  "
                  f"compile {m['compile_seconds']:6.1f} s", flush=True)

    header = (f"{'setting':8s} {'seeds':>5s} {'steps':>5s} {'chunk':>5s} {'seed-steps/s':>13s} "
              f"{'floor/s':>10s} {'time/floor':>10s} {'B GB/s':>7s} {'load':>5s} {'torch/s':>9s} "
              f"{'×torch':>8s} {'compile s':>9s}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        torch_s = "n/a" if r["torch_seed_steps_per_s"] is None else f"{r['torch_seed_steps_per_s']:.1f}"
        speed = "n/a" if r["speedup_over_torch"] is None else f"{r['speedup_over_torch']:.1f}"
        print(f"{r['setting']:8s} {r['seeds']:5d} {r['steps']:5d} {r['chunk_size']:5d} "
              f"{r['seed_steps_per_s']:13.1f} "
              f"{r['floor_seed_steps_per_s']:10.1f} {r['time_over_floor']:10.2f} "
              f"{r['bandwidth_bytes_per_s'] / 1e9:7.1f} {r['load_average']:5.1f} {torch_s:>9s} "
              f"{speed:>8s} {r['compile_seconds']:9.1f}")

    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(args.out, f"train_throughput-{stamp}.json")
    with open(path, "w") as f:
        json.dump(dict(
            argv=sys.argv[1:], jax=jax.__version__, platform=platform.platform(),
            cpu_threads=threads, xla_flags=os.environ.get("XLA_FLAGS", ""),
            bandwidth_bytes_per_s=bandwidth, rows=rows,
            note="floor = 16·L·P² bytes / B per seed-step, B measured next to each row's "
                 "timed calls (bandwidth_bytes_per_s above: the first measurement of the run); "
                 "torch = plain loop, seeds in sequence",
        ), f, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
