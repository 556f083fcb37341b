"""A few minutes on an accelerator: what rsd does there, in one table.

Installs nothing beyond a JAX GPU (or TPU) install. Prints the device, then

* theory solves per second at N = 10⁶ trajectories (``rsd.theory.solve``, float64, the
  mixed population of ``benchmarks/theory_solve.py``: rates 1e-4…1e-2 per step, h0
  0.05…2, dx2 0.25…2.25, dy2 0.05…1, 61 save points over 6,000 steps);
* training seed-steps per second of the default two-point setting (MLP 500 × 20) with
  1,024 seeds, against the memory-traffic floor 16·L·P² bytes per seed-step over the
  device bandwidth measured in the same run (a large on-device copy), float32;
* rate fits per second on 4,096 synthetic trajectories (``rsd.fitting.fit_rates``).

Float64 where the theory and the fits need it (``jax_enable_x64`` on for those rows:
their stiff, long trajectories lose digits in float32), float32 for the networks (as
the paper's PyTorch runs). ``--small`` runs the same code at tiny sizes (a smoke test on
a CPU). Then ``benchmarks/gpu_check.sh`` runs the tests marked ``gpu``.

    python benchmarks/gpu_check.py            # on the accelerator
    python benchmarks/gpu_check.py --small    # anywhere, seconds
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np


def _best(fn, repeats):
    fn()  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def bandwidth(megabytes, repeats=5):
    """Bytes per second of a large on-device copy (read + write)."""
    a = jnp.ones(megabytes * 2**20 // 4, jnp.float32)
    copy = jax.jit(lambda x: x + 0.0)
    return 2 * a.nbytes / _best(lambda: copy(a), repeats)


def population(n, rng):
    from rsd import theory

    eta_h = 10 ** rng.uniform(-4, -2, n)
    eta_y = 10 ** rng.uniform(-4, -2, n)
    dx2 = rng.uniform(0.25, 2.25, n)
    dy2 = rng.uniform(0.05, 1.0, n)
    h0 = rng.uniform(0.05, 2.0, n)
    y0 = h0 * rng.uniform(0.01, 1.0, n)
    sign = np.where(rng.random(n) < 0.001, -1.0, 1.0)  # a few anti-aligned: run into h = 0
    w0 = y0 - sign * np.sqrt(y0 * dy2) * 0.5
    z0 = np.stack([h0, y0, w0], -1)
    ts = np.linspace(0.0, 6000.0, 61)
    return theory, z0, ts, eta_h, eta_y, dx2, dy2


def theory_row(n, repeats):
    jax.config.update("jax_enable_x64", True)
    try:
        theory, z0, ts, eta_h, eta_y, dx2, dy2 = population(n, np.random.default_rng(0))
        best = _best(lambda: theory.solve(z0, ts, eta_h, eta_y, dx2, dy2).zs, repeats)
    finally:
        jax.config.update("jax_enable_x64", False)
    return {"row": "theory solves", "n": n, "seconds": best, "per_s": n / best}


def training_row(seeds, steps, repeats, bw):
    from rsd import data, training

    s = training.Setting.from_paper("2_points", "default").replace(steps=steps)
    x, y = data.two_points(s.dx2, s.dy2, in_dim=s.in_dim, out_dim=s.out_dim)
    best = _best(lambda: training.train(s, x, y, seeds=range(seeds), chunk_size=seeds,
                                        progress=False).h, repeats)
    seed_steps = seeds * steps / best
    floor = 16 * s.depth * s.width ** 2 / bw
    return {"row": "training (default 500 × 20)", "seeds": seeds, "steps": steps,
            "seconds": best, "per_s": seed_steps, "floor_s_per_seed_step": floor,
            "time_over_floor": (1 / seed_steps) / floor}


def fit_row(n, repeats):
    jax.config.update("jax_enable_x64", True)
    try:
        from rsd import fitting, theory

        rng = np.random.default_rng(1)
        ts = np.arange(2000.0)
        eta_h, eta_y = 10 ** rng.uniform(-3.5, -2.5, n), 10 ** rng.uniform(-3.5, -2.5, n)
        h0 = 10 ** rng.uniform(-2, 0.5, n)
        z0 = np.stack([h0, 0.5 * h0, 0.5 * h0 - 0.3], -1)
        sol = theory.solve(z0, ts, eta_h, eta_y, 1.0, 0.5)
        zs = np.asarray(sol.zs)
        best = _best(lambda: fitting.fit_rates(zs[..., 0], zs[..., 1], zs[..., 2], 1.0, 0.5).eta_h,
                     repeats)
    finally:
        jax.config.update("jax_enable_x64", False)
    return {"row": "rate fits", "n": n, "seconds": best, "per_s": n / best}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny sizes: a smoke test anywhere")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    small = args.small
    device = jax.devices()[0]
    bw = bandwidth(64 if small else 2048)
    print(f"device: {device.device_kind} ({device.platform}), {len(jax.devices())} device(s); "
          f"copy bandwidth {bw / 1e9:.0f} GB/s")
    rows = [theory_row(1000 if small else 10**6, args.repeats),
            training_row(8 if small else 1024, 20 if small else 200, args.repeats, bw),
            fit_row(64 if small else 4096, args.repeats)]
    for r in rows:
        extra = f"  time / memory floor {r['time_over_floor']:.2f}" if "time_over_floor" in r else ""
        print(f"{r['row']:<30s} {r['per_s']:>14,.0f} /s  ({r['seconds']:.2f} s){extra}")
    print(json.dumps({"device": str(device), "bandwidth": bw, "rows": rows}))


if __name__ == "__main__":
    main()
