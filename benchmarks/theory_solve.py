"""Throughput and accuracy of batched theory solves against scipy, one trajectory at a time.

N random parameter sets (rates over four decades, initial conditions from the
rich to the lazy regime, a small share anti-aligned so that they run into the
h = 0 singularity) are solved by ``rsd.theory.solve`` as one batch and, on a
subsample in the same run, one by one by scipy ``solve_ivp`` (RK45 and Radau)
on the same vector field and tolerances. Both are compared with a tight float64
reference (DOP853, rtol 1e-12). Prints a table and writes JSON.

    python benchmarks/theory_solve.py --sizes 1000 10000 100000
    python benchmarks/theory_solve.py --population mixed --sizes 100000 --repeats 3

``--population mixed`` is the population of issue 10: rates 1e-4…1e-2 (log-uniform,
per step), h0 0.05…2, dx2 0.25…2.25, dy2 0.05…1, 0.1% of elements built to run into
h = 0 (outputs anti-aligned), 61 save points over 6,000 steps. Every rate is the best
of ``--repeats`` timings on both sides; scipy's timer holds only ``solve_ivp`` (the
h ≈ 0 floor of its terminal event is computed beforehand, in numpy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from rsd import theory  # noqa: E402
# The mixed population, the numpy field, the stop rule and the error measure are shared
# with `rsd bench` (its theory row).
from rsd.bench._rows import (  # noqa: E402
    T_END,
    numpy_floor,
    rel_error,
    sample_mixed,
    scipy_solve,
)
N_SAVE = {"wide": 101, "mixed": 61}


def sample(n, seed=0, singular_share=0.005):
    """The "wide" population: (z0 [n, 3], eta_h, eta_y, dx2, dy2)."""
    rng = np.random.default_rng(seed)
    eta_h = 10 ** rng.uniform(-5, -1, n)
    eta_y = 10 ** rng.uniform(-5, -1, n)
    dx2 = 10 ** rng.uniform(-1, 1, n)
    dy2 = 10 ** rng.uniform(-1, 1, n)
    h0 = 10 ** rng.uniform(-4, 1, n)  # rich (small weights) to lazy (large)
    y0 = h0 * 10 ** rng.uniform(-2, 0, n)
    cos = rng.uniform(0, 1, n)  # angle between output and target differences
    anti = rng.uniform(size=n) < singular_share
    cos[anti] = -0.95  # outputs pointing the wrong way: some pass through h = 0
    w0 = y0 - cos * np.sqrt(y0 * dy2)
    return np.stack([h0, y0, w0], -1), eta_h, eta_y, dx2, dy2


def run_rsd(args, ts, repeats):
    """(solution, first call seconds, best of ``repeats`` later calls)."""
    z0, eta_h, eta_y, dx2, dy2 = args
    t = time.perf_counter()
    sol = theory.solve(z0, ts, eta_h, eta_y, dx2, dy2)
    sol.zs.block_until_ready()
    first = time.perf_counter() - t
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        sol = theory.solve(z0, ts, eta_h, eta_y, dx2, dy2)
        sol.zs.block_until_ready()
        best = min(best, time.perf_counter() - t)
    return sol, first, best


def run_scipy(data, sub, ts_np, method, rtol, atol, repeats):
    """Best of ``repeats`` timings of the subsample solved one by one; (seconds, outputs)."""
    problems = [(data[0][i], tuple(float(a[i]) for a in data[1:])) for i in sub]
    floors = [numpy_floor(z0, p) for z0, p in problems]
    best, outs = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        outs = [scipy_solve(z0, p, ts_np, method, rtol, atol, f) for (z0, p), f in zip(problems, floors)]
        best = min(best, time.perf_counter() - t)
    return best, outs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", choices=["wide", "mixed"], default="wide")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--subsample", type=int, default=200, help="trajectories solved by scipy")
    parser.add_argument("--repeats", type=int, default=3, help="timings per side; the best is kept")
    parser.add_argument("--no-radau", action="store_true", help="skip scipy Radau (slow)")
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()

    n_save = N_SAVE[opts.population]
    draw = sample if opts.population == "wide" else sample_mixed
    ts_np = np.linspace(0.0, T_END, n_save)
    ts = jnp.asarray(ts_np)
    rtol, atol = 1e-6, 1e-9  # rsd's float64 defaults; scipy gets the same
    methods = [("RK45", "RK45", rtol, atol), ("RK45_default_tol", "RK45", 1e-3, 1e-6)]
    if not opts.no_radau:
        methods.append(("Radau", "Radau", rtol, atol))
    load = os.getloadavg()
    rows = []
    for n in opts.sizes:
        data = draw(n)
        sol, first, elapsed = run_rsd(data, ts, opts.repeats)
        status = np.asarray(sol.status)
        zs = np.asarray(sol.zs)
        row = dict(n=n, rsd_seconds=elapsed, rsd_first_call_seconds=first,
                   rsd_per_s=n / elapsed, status_counts=np.bincount(status, minlength=5).tolist(),
                   stiff=int(np.sum(sol.stiff)), median_steps=float(np.median(sol.num_steps)),
                   max_steps=int(np.max(sol.num_steps)))

        # scipy one at a time on a subsample, and a tight reference for both.
        rng = np.random.default_rng(1)
        sub = rng.choice(n, size=min(opts.subsample, n), replace=False)
        refs = [scipy_solve(data[0][i], tuple(float(a[i]) for a in data[1:]), ts_np, "DOP853",
                            1e-12, 1e-14, numpy_floor(data[0][i], tuple(float(a[i]) for a in data[1:])))
                for i in sub]
        errs = {"rsd": [e for (ref, hit), i in zip(refs, sub)
                        if not hit and status[i] == theory.Status.OK
                        for e in [rel_error(zs[i], ref)]]}
        for name, method, rt, at in methods:
            seconds, outs = run_scipy(data, sub, ts_np, method, rt, at, opts.repeats)
            row[f"scipy_{name}_per_s"] = len(sub) / seconds
            row[f"speedup_vs_{name}"] = row["rsd_per_s"] / row[f"scipy_{name}_per_s"]
            errs[name] = [rel_error(out, ref) for (out, _), (ref, hit) in zip(outs, refs) if not hit]
        for name, e in errs.items():
            row[f"err_{name}_median"] = float(np.median(e))
            row[f"err_{name}_p99"] = float(np.quantile(e, 0.99))
        row["subsample"] = len(sub)
        row["subsample_hit_zero"] = dict(rsd=int(np.sum(status[sub] == theory.Status.HIT_ZERO)),
                                         reference=int(sum(hit for _, hit in refs)))
        rows.append(row)
        print(f"n={n}: rsd {row['rsd_per_s']:.0f}/s (first call {first:.1f}s)", flush=True)

    radau = not opts.no_radau
    header = (f"{'N':>7} {'rsd/s':>9} {'RK45/s':>7} {'×RK45':>6} "
              + (f"{'Radau/s':>7} {'×Radau':>7} " if radau else "")
              + f"{'RK45(1e-3)/s':>12} {'×':>5} {'err rsd':>9} {'err RK45':>9} {'err RK45(1e-3)':>14} "
              f"{'stiff':>5} {'h→0':>4}")
    print(f"population {opts.population}, {n_save} save points over {T_END:.0f} steps, best of "
          f"{opts.repeats}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(header)
    for r in rows:
        print(f"{r['n']:>7} {r['rsd_per_s']:>9.0f} {r['scipy_RK45_per_s']:>7.0f} "
              f"{r['speedup_vs_RK45']:>6.1f} "
              + (f"{r['scipy_Radau_per_s']:>7.0f} {r['speedup_vs_Radau']:>7.1f} " if radau else "")
              + f"{r['scipy_RK45_default_tol_per_s']:>12.0f} {r['speedup_vs_RK45_default_tol']:>5.1f} "
              f"{r['err_rsd_p99']:>9.1e} {r['err_RK45_p99']:>9.1e} {r['err_RK45_default_tol_p99']:>14.1e} "
              f"{r['stiff']:>5} {r['status_counts'][1]:>4}")
    print("errors: 99th percentile over the subsample of max relative error against DOP853 at rtol 1e-12")

    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                machine=platform.machine(), processor=platform.processor(), cpus=os.cpu_count(),
                jax=jax.__version__, backend=jax.default_backend(), rtol=rtol, atol=atol,
                t_end=T_END, n_save=n_save, population=opts.population, repeats=opts.repeats,
                load_average=load)
    out = Path(opts.out or f"benchmarks/results/theory_solve_{opts.population}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
