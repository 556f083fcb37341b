"""Sweep throughput: one ``rsd sweep`` against the same elements as separate ``train`` calls.

The narrow two-point row (MLP 50 × 20) over S seeds × 4 learning rates, T steps, no fit
(the fit's own throughput is ``fit_throughput.py``), measured three ways in one run:

* **sweep**: ``rsd.sweeps.run_sweep`` of the spec (4·S elements in chunks of
  ``--chunk-size``, each chunk one program with per-element learning rates, its rows
  written to Parquet and the manifest updated), on 1 device and on 4 simulated CPU
  devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``; on a 2-core CPU the
  four "devices" share the two cores, so this measures the sharding's overhead, not a
  speed-up);
* **train calls**: the loop a user writes without sweeps: for each learning rate,
  ``train(setting.replace(lr=lr), x, y, seeds=range(S), chunk_size=C)`` (each call
  runs S/C chunks; the program is compiled once, learning rates being data).

and, in a second table, **widths**: cells of widths 20, 50 and 100 (S seeds each) trained
as one compiled group per width (what sweeps do) against one group padded to width 100
(``rsd.training.pad_hidden``: exact, every cell costs the largest width), first call
(compile included) and steady state.

Each configuration runs in its own process (XLA flags are read at start-up), first once
to compile (reported apart), then ``--repeats`` times; the best time is reported as
elements per second. Writes ``benchmarks/results/sweep_throughput-<timestamp>.json``.

    python benchmarks/sweep_throughput.py                       # 1,024 seeds × 4 lrs, 300 steps
    python benchmarks/sweep_throughput.py --seeds 128 --steps 100 --repeats 1   # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

LRS = (0.0025, 0.005, 0.01, 0.02)

_WORKER = textwrap.dedent("""
    import json, sys, tempfile, time
    import numpy as np
    import jax
    from rsd import data, sweeps, training

    mode, seeds, steps, chunk, repeats = sys.argv[1], *map(int, sys.argv[2:6])
    lrs = json.loads(sys.argv[6])
    spec = sweeps.parse_spec({
        "base": {"table": "2_points", "row": "narrow"}, "seeds": seeds, "steps": steps,
        "grid": {"lr": lrs}, "fit": {"rates": False}, "run": {"chunk_size": chunk}})
    setting = training.Setting.from_paper("2_points", "narrow").replace(steps=steps)
    x, y = data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim,
                           out_dim=setting.out_dim)

    def sweep():
        with tempfile.TemporaryDirectory() as out:
            sweeps.run_sweep(spec, out, progress=False)

    def calls():
        for lr in lrs:
            run = training.train(setting.replace(lr=lr), x, y, seeds=range(seeds),
                                 chunk_size=chunk, progress=False)
            np.asarray(run.h)  # on the host, as the sweep's rows are

    work = sweep if mode == "sweep" else calls
    t = time.perf_counter(); work(); first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); work(); times.append(time.perf_counter() - t)
    print(json.dumps({"first_s": first, "times_s": times, "devices": len(jax.devices())}))
""")


_PADDING = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import jax
    from rsd import data, training

    seeds, steps = int(sys.argv[1]), int(sys.argv[2])
    widths = (20, 50, 100)
    base = training.Setting.from_paper("2_points", "narrow").replace(steps=steps)
    x, y = data.two_points(base.dx2, base.dy2, in_dim=base.in_dim, out_dim=base.out_dim)
    inits = {}
    for w in widths:
        net = base.replace(width=w).network()
        inits[w] = net.to_layers(jax.vmap(net.init)(jax.random.split(jax.random.key(w), seeds)))

    def grouped():
        for w in widths:
            np.asarray(training.train(base.replace(width=w), x, y, seeds=range(seeds),
                                      init_params=inits[w], chunk_size=3 * seeds).h)

    def padded():
        big = max(widths)
        layers = [training.pad_hidden(inits[w], big) for w in widths]
        stacked = [tuple(np.concatenate([np.asarray(l[k][i]) for l in layers]) for i in (0, 1))
                   for k in range(len(layers[0]))]
        np.asarray(training.train(base.replace(width=big), x, y, seeds=range(3 * seeds),
                                  init_params=stacked, chunk_size=3 * seeds).h)

    out = {}
    for name, work in (("grouped", grouped), ("padded", padded)):
        t = time.perf_counter(); work(); first = time.perf_counter() - t
        t = time.perf_counter(); work(); second = time.perf_counter() - t
        out[name] = {"first_s": first, "steady_s": second}
    print(json.dumps(out))
""")


def measure_padding(args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", _PADDING, str(args.padding_seeds),
                          str(args.steps)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(mode, devices, args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out = subprocess.run([sys.executable, "-c", _WORKER, mode, str(args.seeds), str(args.steps),
                          str(args.chunk_size), str(args.repeats), json.dumps(list(LRS))],
                         env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    best = min(result["times_s"])
    elements = args.seeds * len(LRS)
    return {"mode": mode, "devices": result["devices"], "elements": elements, "steps": args.steps,
            "best_s": best, "elements_per_s": elements / best,
            "seed_steps_per_s": elements * args.steps / best,
            "compile_s": result["first_s"] - best, "times_s": result["times_s"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--padding-seeds", type=int, default=64,
                        help="seeds per width in the widths table (0: skip it)")
    args = parser.parse_args(argv)
    rows = [measure("calls", 1, args), measure("sweep", 1, args), measure("sweep", 4, args)]
    base = rows[0]["best_s"]
    print(f"narrow row, {args.seeds} seeds × {len(LRS)} learning rates = "
          f"{args.seeds * len(LRS)} elements, {args.steps} steps, chunks of {args.chunk_size} "
          f"(best of {args.repeats}; compile apart)")
    print(f"{'how':<28s} {'devices':>7s} {'elements/s':>11s} {'µs/seed-step':>13s} "
          f"{'vs train calls':>15s} {'compile s':>10s}")
    for r in rows:
        how = "separate train calls" if r["mode"] == "calls" else "one sweep (Parquet, manifest)"
        print(f"{how:<28s} {r['devices']:>7d} {r['elements_per_s']:>11.1f} "
              f"{1e6 / r['seed_steps_per_s']:>13.1f} {base / r['best_s']:>14.2f}× "
              f"{r['compile_s']:>10.1f}")
    padding = measure_padding(args) if args.padding_seeds else None
    if padding:
        print(f"\nwidths 20, 50, 100 × {args.padding_seeds} seeds, {args.steps} steps: "
              "one group per width against one group padded to 100")
        print(f"{'how':<28s} {'first call s':>13s} {'steady s':>9s}")
        for name, r in padding.items():
            print(f"{name:<28s} {r['first_s']:>13.1f} {r['steady_s']:>9.2f}")
    folder = Path(__file__).with_name("results")
    folder.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"sweep_throughput-{stamp}.json"
    path.write_text(json.dumps({"args": vars(args), "machine": platform.platform(),
                                "cpus": os.cpu_count(), "rows": rows, "widths": padding},
                               indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
