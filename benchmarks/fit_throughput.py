"""Throughput of rate fits: rsd.fitting (one batch) against the paper-style scipy procedure.

Both fit (η_h, η_y) of the 3-D theory to the same trajectories of (h, y, w) per
training step by minimising the paper's objective, the sum over ALL steps of the
squared residuals of h, y and w:

* rsd: ``rsd.fitting.fit_rates`` on the whole set at once (grid, Levenberg–Marquardt
  through diffrax in forward mode, polish on every step);
* paper-style, one trajectory at a time: a 10×10 (100-point) log-grid search, then
  ``scipy.optimize.minimize(method="BFGS")`` with finite-difference gradients, each
  objective call a stiff ``scipy.integrate.solve_ivp`` (LSODA by default, or Radau)
  of the same vector field saved at every step. It gets the same grid center
  (``rsd.fitting.initial_rates``) and span as rsd, so both start from the same
  information.

scipy is timed on a subsample of the trajectories and its throughput extrapolated
per fit (said so in the output). The loss each reached is re-evaluated for both by
one reference evaluator (scipy LSODA, rtol 1e-10), so the comparison does not depend
on either method's own solver error.

    python benchmarks/fit_throughput.py --n 256 --scipy-sample 8
    python benchmarks/fit_throughput.py --networks   # plus trained-network trajectories
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from rsd.bench._rows import synthetic_trajectories  # noqa: E402
# The paper-style procedure (also the tests' reference) lives in rsd.bench._scipy_fit.
from rsd.bench._scipy_fit import paper_fit as scipy_fit  # noqa: E402
from rsd.bench._scipy_fit import reference_loss  # noqa: E402
from rsd.fitting import fit_rates, initial_rates  # noqa: E402


# ---------------------------------------------------------------------------
# Trajectories.

def synthetic(n, steps, seed, noise=1e-4):
    """n theory trajectories (rich and lazy, relative noise); see
    ``rsd.bench._rows.synthetic_trajectories`` (scipy DOP853), shared with `rsd bench`'s fits row."""
    return synthetic_trajectories(n, steps, seed, noise)


def networks(n_seeds, width, depth, steps):
    """Trajectories of trained two-point networks (all hidden layers, shared y, w)."""
    from rsd.data import two_points
    from rsd.training import Setting, train

    setting = Setting.from_paper("2_points", "default").replace(
        width=width, depth=depth, steps=steps, layers=None)
    x, y = two_points(setting.dx2, setting.dy2)
    run = train(setting, x, y, seeds=np.arange(n_seeds))
    h = np.moveaxis(np.asarray(run.h, np.float64), -1, 1)         # [S, K, T]
    k = h.shape[1]
    yy = np.broadcast_to(np.asarray(run.y, np.float64)[:, None], h.shape)
    ww = np.broadcast_to(np.asarray(run.w, np.float64)[:, None], h.shape)
    zs = np.stack([h, yy, ww], -1).reshape(-1, steps, 3)
    ok = np.repeat(np.asarray(run.status) == 0, k)
    n = zs.shape[0]
    return zs[ok], None, np.full(n, float(run.dx2))[ok], np.full(n, float(run.dy2))[ok]


# ---------------------------------------------------------------------------

def bench(label, zs, true_rates, dx2, dy2, args):
    n, steps, _ = zs.shape
    ts = np.arange(steps, dtype=np.float64)
    h, y, w = zs[..., 0], zs[..., 1], zs[..., 2]
    kw = dict(grid_decades=args.decades)

    t0 = time.perf_counter()
    fit = jax.block_until_ready(fit_rates(h, y, w, dx2, dy2, **kw))
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fit = jax.block_until_ready(fit_rates(h, y, w, dx2, dy2, **kw))
        times.append(time.perf_counter() - t0)
    run_s = min(times)
    rsd_fps = n / run_s

    centers = np.asarray(initial_rates(h, y, w, dx2, dy2))
    sample = np.unique(np.linspace(0, n - 1, min(args.scipy_sample, n)).round().astype(int))
    rows, scipy_times = [], []
    for i in sample:
        t0 = time.perf_counter()
        rates, _ = scipy_fit(zs[i], ts, dx2[i], dy2[i], centers[i], args.decades, args.scipy_method)
        scipy_times.append(time.perf_counter() - t0)
        mine = np.array([fit.eta_h[i], fit.eta_y[i]])
        l_rsd = reference_loss(mine, zs[i], ts, dx2[i], dy2[i])
        l_sp = reference_loss(rates, zs[i], ts, dx2[i], dy2[i])
        rows.append(dict(
            index=int(i), rsd_status=int(fit.status[i]),
            rsd_eta=mine.tolist(), scipy_eta=rates.tolist(),
            true_eta=None if true_rates is None else true_rates[i].tolist(),
            rsd_loss=l_rsd, scipy_loss=l_sp, rsd_reported_loss=float(fit.loss[i]),
            rsd_no_worse=bool(l_rsd <= l_sp * (1 + 1e-6) + 1e-300),
            r2=np.asarray(fit.r2[i]).tolist(), scipy_s=scipy_times[-1],
        ))
    scipy_fps = 1.0 / np.mean(scipy_times)
    result = dict(
        label=label, n=n, steps=steps, rsd_first_call_s=first, rsd_run_s=run_s,
        rsd_compile_s_estimate=first - run_s, rsd_fits_per_s=rsd_fps,
        scipy_method=args.scipy_method, scipy_sample=len(sample),
        scipy_mean_s_per_fit=float(np.mean(scipy_times)), scipy_fits_per_s=scipy_fps,
        scipy_extrapolated_s_for_all=float(np.mean(scipy_times) * n),
        speedup=rsd_fps / scipy_fps,
        rsd_status_counts=np.bincount(np.asarray(fit.status), minlength=4).tolist(),
        rsd_no_worse_all=all(r["rsd_no_worse"] for r in rows), per_trajectory=rows,
    )
    if true_rates is not None:
        err = np.abs(np.stack([fit.eta_h, fit.eta_y], -1) / true_rates - 1)
        result["rsd_max_rel_rate_error"] = float(np.nanmax(err))
    return result


def report(res):
    print(f"\n== {res['label']}: {res['n']} trajectories × {res['steps']} steps ==")
    print(f"rsd   : first call {res['rsd_first_call_s']:.1f} s (compile ≈ {res['rsd_compile_s_estimate']:.1f} s), "
          f"run {res['rsd_run_s']:.2f} s → {res['rsd_fits_per_s']:.1f} fits/s; "
          f"status counts {res['rsd_status_counts']}")
    print(f"scipy : {res['scipy_method']}, timed on {res['scipy_sample']} trajectories, "
          f"{res['scipy_mean_s_per_fit']:.2f} s/fit → {res['scipy_fits_per_s']:.2f} fits/s "
          f"(extrapolated {res['scipy_extrapolated_s_for_all']:.0f} s for all {res['n']})")
    print(f"speedup (fits/s rsd / scipy): {res['speedup']:.1f}×")
    print(f"{'idx':>5} {'status':>6} {'loss rsd':>12} {'loss scipy':>12} {'rsd/scipy':>10} "
          f"{'R² h':>7} {'R² y':>7} {'R² w':>7} {'scipy s':>8}")
    for r in res["per_trajectory"]:
        ratio = r["rsd_loss"] / r["scipy_loss"] if r["scipy_loss"] > 0 else float("nan")
        print(f"{r['index']:>5} {r['rsd_status']:>6} {r['rsd_loss']:>12.4e} {r['scipy_loss']:>12.4e} "
              f"{ratio:>10.6f} {r['r2'][0]:>7.4f} {r['r2'][1]:>7.4f} {r['r2'][2]:>7.4f} {r['scipy_s']:>8.2f}")
    print(f"rsd no worse than scipy on every sampled trajectory: {res['rsd_no_worse_all']}")
    if "rsd_max_rel_rate_error" in res:
        print(f"rsd max relative error of the rates vs the truth: {res['rsd_max_rel_rate_error']:.2e}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=256, help="synthetic trajectories")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--scipy-sample", type=int, default=8)
    p.add_argument("--scipy-method", default="LSODA", choices=["LSODA", "Radau", "BDF"])
    p.add_argument("--decades", type=float, default=1.5, help="grid half-span (both methods)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--networks", action="store_true", help="also fit trained-network trajectories")
    p.add_argument("--net-seeds", type=int, default=8)
    p.add_argument("--net-width", type=int, default=128)
    p.add_argument("--net-depth", type=int, default=4)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                 "fit_throughput.json"))
    args = p.parse_args()

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; "
          f"float64 for both methods")
    results = [bench("synthetic", *synthetic(args.n, args.steps, args.seed), args)]
    report(results[-1])
    if args.networks:
        results.append(bench(f"networks (width {args.net_width}, depth {args.net_depth}, all layers)",
                             *networks(args.net_seeds, args.net_width, args.net_depth, args.steps),
                             args))
        report(results[-1])

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    meta = dict(argv=vars(args), jax=jax.__version__, platform=platform.platform(),
                cpu_count=os.cpu_count(), time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dict(meta=meta, results=results), f, indent=1)
    os.replace(tmp, args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
