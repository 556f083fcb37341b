"""Throughput and accuracy of batched theory solves against scipy, one trajectory at a time.

N random parameter sets (rates over four decades, initial conditions from the
rich to the lazy regime, a small share anti-aligned so that they run into the
h = 0 singularity) are solved by ``rsd.theory.solve`` as one batch and, on a
subsample in the same run, one by one by scipy ``solve_ivp`` (RK45 and Radau)
on the same vector field and tolerances. Both are compared with a tight float64
reference (DOP853, rtol 1e-12). Prints a table and writes JSON.

    python benchmarks/theory_solve.py --sizes 1000 10000 100000
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
from scipy.integrate import solve_ivp  # noqa: E402

from rsd import theory  # noqa: E402

T_END = 6000.0  # training steps, the length of the paper's two-point runs
N_SAVE = 101


def sample(n, seed=0, singular_share=0.005):
    """Random parameter sets: (z0 [n, 3], eta_h, eta_y, dx2, dy2)."""
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


def numpy_field(t, z, eta_h, eta_y, dx2, dy2):
    """The vector field of rsd.theory.vector_field, in numpy for scipy."""
    h, y, w = z
    a = eta_h * dx2
    return np.array([
        -a * w,
        -w * (eta_y * h + a * y / h),
        -0.5 * eta_y * (3 * w - y + dy2) * h - 0.5 * a * (y + w) * w / h,
    ])


def scipy_solve(z0, p, ts, method, rtol, atol, h_floor=1e-6):
    h_inf = float(theory.final_distance(z0[0], z0[1], *p))
    floor = h_floor * min(z0[0], h_inf)
    event = lambda t, z, *a: z[0] - floor
    event.terminal = True
    sol = solve_ivp(numpy_field, (ts[0], ts[-1]), z0, method=method, t_eval=ts, args=p,
                    rtol=rtol, atol=atol, events=event)
    zs = np.full((len(ts), 3), np.nan)
    zs[: sol.y.shape[1]] = sol.y.T
    return zs, sol.status == 1  # status 1: terminated by the event


def rel_error(zs, ref):
    """Max over times of |error| / max |reference| per component, worst component."""
    scale = np.max(np.abs(ref), axis=0)
    return float(np.max(np.nanmax(np.abs(zs - ref), axis=0) / scale))


def run_rsd(args, ts):
    z0, eta_h, eta_y, dx2, dy2 = args
    t = time.perf_counter()
    sol = theory.solve(z0, ts, eta_h, eta_y, dx2, dy2)
    sol.zs.block_until_ready()
    first = time.perf_counter() - t
    t = time.perf_counter()
    sol = theory.solve(z0, ts, eta_h, eta_y, dx2, dy2)
    sol.zs.block_until_ready()
    return sol, first, time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--subsample", type=int, default=200, help="trajectories solved by scipy")
    parser.add_argument("--out", default="benchmarks/results/theory_solve.json")
    opts = parser.parse_args()

    ts_np = np.linspace(0.0, T_END, N_SAVE)
    ts = jnp.asarray(ts_np)
    rtol, atol = 1e-6, 1e-9  # rsd's float64 defaults; scipy gets the same
    rows = []
    for n in opts.sizes:
        data = sample(n)
        sol, first, elapsed = run_rsd(data, ts)
        status = np.asarray(sol.status)
        zs = np.asarray(sol.zs)
        row = dict(n=n, rsd_seconds=elapsed, rsd_first_call_seconds=first,
                   rsd_per_s=n / elapsed, status_counts=np.bincount(status, minlength=4).tolist(),
                   stiff=int(np.sum(sol.stiff)), median_steps=float(np.median(sol.num_steps)),
                   max_steps=int(np.max(sol.num_steps)))

        # scipy one at a time on a subsample, and a tight reference for both.
        rng = np.random.default_rng(1)
        sub = rng.choice(n, size=min(opts.subsample, n), replace=False)
        errs = {"rsd": [], "RK45": [], "Radau": [], "RK45_default_tol": []}
        times = {"RK45": 0.0, "Radau": 0.0, "RK45_default_tol": 0.0}
        hit = {"rsd": 0, "RK45": 0}
        for i in sub:
            z0 = data[0][i]
            p = tuple(float(a[i]) for a in data[1:])
            ref, ref_hit = scipy_solve(z0, p, ts_np, "DOP853", 1e-12, 1e-14)
            for name, method, rt, at in [("RK45", "RK45", rtol, atol), ("Radau", "Radau", rtol, atol),
                                         ("RK45_default_tol", "RK45", 1e-3, 1e-6)]:
                t = time.perf_counter()
                out, out_hit = scipy_solve(z0, p, ts_np, method, rt, at)
                times[name] += time.perf_counter() - t
                if not ref_hit:
                    errs[name].append(rel_error(out, ref))
                hit["RK45"] += int(out_hit and name == "RK45")
            hit["rsd"] += int(status[i] == theory.Status.HIT_ZERO)
            if not ref_hit and status[i] == theory.Status.OK:
                errs["rsd"].append(rel_error(zs[i], ref))
        m = len(sub)
        for name, total in times.items():
            row[f"scipy_{name}_per_s"] = m / total
        row["speedup_vs_RK45"] = row["rsd_per_s"] / row["scipy_RK45_per_s"]
        row["speedup_vs_RK45_default_tol"] = row["rsd_per_s"] / row["scipy_RK45_default_tol_per_s"]
        row["speedup_vs_Radau"] = row["rsd_per_s"] / row["scipy_Radau_per_s"]
        for name, e in errs.items():
            row[f"err_{name}_median"] = float(np.median(e))
            row[f"err_{name}_p99"] = float(np.quantile(e, 0.99))
        row["subsample"] = m
        row["subsample_hit_zero"] = hit
        rows.append(row)
        print(f"n={n}: rsd {row['rsd_per_s']:.0f}/s (first call {first:.1f}s)", flush=True)

    header = (f"{'N':>7} {'rsd/s':>9} {'RK45/s':>7} {'×RK45':>6} {'Radau/s':>7} {'×Radau':>7} "
              f"{'RK45(1e-3)/s':>12} {'×':>5} {'err rsd':>9} {'err RK45':>9} {'err RK45(1e-3)':>14} "
              f"{'stiff':>5} {'h→0':>4}")
    print(header)
    for r in rows:
        print(f"{r['n']:>7} {r['rsd_per_s']:>9.0f} {r['scipy_RK45_per_s']:>7.0f} {r['speedup_vs_RK45']:>6.1f} "
              f"{r['scipy_Radau_per_s']:>7.0f} {r['speedup_vs_Radau']:>7.1f} "
              f"{r['scipy_RK45_default_tol_per_s']:>12.0f} {r['speedup_vs_RK45_default_tol']:>5.1f} "
              f"{r['err_rsd_p99']:>9.1e} {r['err_RK45_p99']:>9.1e} {r['err_RK45_default_tol_p99']:>14.1e} "
              f"{r['stiff']:>5} {r['status_counts'][1]:>4}")
    print("errors: 99th percentile over the subsample of max relative error against DOP853 at rtol 1e-12")

    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                machine=platform.machine(), processor=platform.processor(), cpus=os.cpu_count(),
                jax=jax.__version__, backend=jax.default_backend(), rtol=rtol, atol=atol,
                t_end=T_END, n_save=N_SAVE)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
