"""The rows of ``rsd bench``: each measures one thing rsd does against a named baseline,
both in this run, with the same statistic (best of ``repeats``) on both sides.

Also the problem generators the benchmark scripts share (the mixed population of
theory solves, synthetic fit trajectories, the MNIST floor loop). scipy and torch are
imported inside the row functions; nothing of rsd runs inside a baseline's timer.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from ._core import best_of, first_and_best, memory_bandwidth, result, timed
# The numpy field and stop rule of the scipy baselines: one definition, with the fits'.
from ._scipy_fit import numpy_floor, three_d_field

T_END = 6000.0  # training steps: the length of the paper's two-point runs
N_SAVE_MIXED = 61
FIT_DX2, FIT_DY2 = 1.0, 0.5

# Sizes per profile. "tiny" only exercises the code (the test); "quick" fits in a few
# minutes on a 2-core CPU; "full" is the issue-10 suite.
PROFILES = {
    "full": dict(
        repeats=3, theory_n=100_000, theory_subsample=200,
        default_seeds=(1, 4, 16, 64), default_budget=2000,
        narrow_seeds=(1, 64, 256, 1024), narrow_budget=51_200,
        min_steps=5, max_steps=400, torch_max_steps=50,
        fit_n=256, fit_steps=6000, fit_sample=8,
        cache_command=("run", "two-point-fit", "--size", "tiny"),
        mnist=dict(seeds=(1, 8, 32), epochs=3, n_train=4000)),
    "quick": dict(
        # The theory row at the size of its target (N = 100,000 costs rsd ~3 s); training
        # rows with >= 25 steps per seed, so the fixed cost per chunk stays small.
        repeats=2, theory_n=100_000, theory_subsample=40,
        default_seeds=(1, 4), default_budget=400,
        narrow_seeds=(64, 256), narrow_budget=25_600,
        min_steps=25, max_steps=200, torch_max_steps=10,
        fit_n=32, fit_steps=6000, fit_sample=2,
        cache_command=("run", "two-point-fit", "--size", "tiny"),
        mnist=dict(seeds=(1,), epochs=3, n_train=4000)),
    "tiny": dict(
        repeats=1, theory_n=256, theory_subsample=8,
        default_seeds=(1,), default_budget=3,
        narrow_seeds=(4,), narrow_budget=40,
        min_steps=3, max_steps=10, torch_max_steps=3, train_depth=2,
        fit_n=2, fit_steps=300, fit_sample=1,
        cache_command=("list",),
        mnist=dict(seeds=(1,), epochs=1, n_train=128)),
}
"""Sizes of the benchmark rows per profile name: "full" (``rsd bench``), "quick"
(``rsd bench --quick``, a few minutes on a 2-core CPU) and "tiny" (exercises the code
only; the tests). Each maps option names (repeats, seed counts, step budgets, problem
sizes) to values."""


def need_scipy():
    """Import scipy or say how to get it."""
    if importlib.util.find_spec("scipy") is None:
        raise ImportError("rsd bench needs scipy for its baselines: install rsd[bench] "
                          "(python -m pip install 'rsd[bench]').")
    import scipy

    return scipy


# ---------------------------------------------------------------------------
# Theory solves.

def sample_mixed(n: int, seed: int = 0, singular_share: float = 1e-3):
    """Issue 10's population of theory problems: (z0 [n, 3], eta_h, eta_y, dx2, dy2).

    Rates log-uniform over 1e-4…1e-2 per step, h0 uniform over 0.05…2, y0 = h0·10^U(−2, 0),
    dx2 uniform over 0.25…2.25, dy2 over 0.05…1, outputs aligned with the targets
    (w0 = y0 − cos·sqrt(y0·dy2), cos uniform over 0…1). A share ``singular_share`` is
    anti-aligned (cos = −1) with y0 = h0 and rates redrawn until η_h·dx2/η_y > 8·h0
    (invariant C < 0 by a margin): such trajectories run into h = 0.
    """
    rng = np.random.default_rng(seed)
    eta_h = 10 ** rng.uniform(-4, -2, n)
    eta_y = 10 ** rng.uniform(-4, -2, n)
    h0 = rng.uniform(0.05, 2.0, n)
    dx2 = rng.uniform(0.25, 2.25, n)
    dy2 = rng.uniform(0.05, 1.0, n)
    y0 = h0 * 10 ** rng.uniform(-2, 0, n)
    cos = rng.uniform(0, 1, n)
    anti = np.flatnonzero(rng.uniform(size=n) < singular_share)
    for i in anti:
        y0[i], cos[i] = h0[i], -1.0
        while eta_h[i] * dx2[i] / eta_y[i] <= 8.0 * h0[i]:
            eta_h[i], eta_y[i] = 10 ** rng.uniform(-4, -2, 2)
    w0 = y0 - cos * np.sqrt(y0 * dy2)
    return np.stack([h0, y0, w0], -1), eta_h, eta_y, dx2, dy2


def scipy_solve(z0, p, ts, method, rtol, atol, floor):
    """One trajectory by ``solve_ivp`` saved at ``ts``, stopped (a terminal event) where
    h < ``floor``; (zs [len(ts), 3] with nan after a stop, stopped?)."""
    from scipy.integrate import solve_ivp

    def event(t, z, *args):
        return z[0] - floor

    event.terminal = True
    sol = solve_ivp(three_d_field, (ts[0], ts[-1]), z0, method=method, t_eval=ts, args=p,
                    rtol=rtol, atol=atol, events=event)
    zs = np.full((len(ts), 3), np.nan)
    zs[: sol.y.shape[1]] = sol.y.T
    return zs, sol.status == 1


def rel_error(zs, ref) -> float:
    """Max over times of |error| / max |reference| per component, worst component."""
    scale = np.max(np.abs(ref), axis=0)
    return float(np.max(np.nanmax(np.abs(zs - ref), axis=0) / scale))


def theory_row(profile: dict, repeats: int) -> list[dict]:
    """Batched ``rsd.theory.solve`` on the mixed population against scipy RK45 (defaults),
    one problem at a time on a subsample; errors of both against DOP853 at rtol 1e-12."""
    need_scipy()
    import jax

    from rsd import theory

    n, n_sub = profile["theory_n"], profile["theory_subsample"]
    ts_np = np.linspace(0.0, T_END, N_SAVE_MIXED)
    data = sample_mixed(n)
    with jax.enable_x64(True):
        ts = jax.numpy.asarray(ts_np)
        first, best, sol = first_and_best(lambda: theory.solve(data[0], ts, *data[1:]), repeats)
        status = np.asarray(sol.status)
        zs = np.asarray(sol.zs)

    sub = np.random.default_rng(1).choice(n, size=min(n_sub, n), replace=False)
    problems = [(data[0][i], tuple(float(a[i]) for a in data[1:])) for i in sub]
    floors = [numpy_floor(z0, p) for z0, p in problems]  # before the timer: only scipy inside
    scipy_s, outs = best_of(lambda: [scipy_solve(z0, p, ts_np, "RK45", 1e-3, 1e-6, f)
                                     for (z0, p), f in zip(problems, floors)], repeats)
    refs = [scipy_solve(z0, p, ts_np, "DOP853", 1e-12, 1e-14, f)
            for (z0, p), f in zip(problems, floors)]
    ok = [j for j, (i, (_, hit)) in enumerate(zip(sub, refs))
          if not hit and status[i] == theory.Status.OK]
    err_rsd = [rel_error(zs[sub[j]], refs[j][0]) for j in ok]
    err_rk45 = [rel_error(outs[j][0], refs[j][0]) for j in ok]
    p99 = lambda e: float(np.quantile(e, 0.99)) if e else math.nan  # noqa: E731
    counts = np.bincount(status, minlength=len(theory.Status)).tolist()
    return [result(
        "theory", f"solve, {n:,} mixed-population problems in one call", "solves/s",
        n / best, f"scipy RK45 (defaults), one by one, {len(sub)}", len(sub) / scipy_s,
        notes=(f"p99 error vs DOP853: rsd {p99(err_rsd):.1e}, RK45 {p99(err_rk45):.1e}; "
               f"compile {max(first - best, 0):.1f} s"),
        n=n, rsd_seconds=best, rsd_first_call_seconds=first,
        compile_seconds=max(first - best, 0.0), baseline_n=len(sub), baseline_seconds=scipy_s,
        err_rsd_p99=p99(err_rsd), err_rk45_p99=p99(err_rk45), errors_over=len(ok),
        status_counts=counts, hit_zero=int(np.sum(status == theory.Status.HIT_ZERO)),
        rtol=1e-6, atol=1e-9, baseline_rtol=1e-3, baseline_atol=1e-6,
        save_points=N_SAVE_MIXED, t_end=T_END)]


# ---------------------------------------------------------------------------
# Training.

def train_rows(name: str, profile: dict, repeats: int, bandwidth: float) -> list[dict]:
    """``rsd.training.train`` on the paper's two-point setting ``name`` ("default" or
    "narrow") as a user calls it, per number of seeds, against batched PyTorch and the
    memory-traffic floor 16·L·P² bytes / B per seed-step, B the best of ``bandwidth``
    (measured at the start of the run) and copies timed just before and after."""
    from rsd.data import two_points
    from rsd.training import Setting, train

    base = Setting.from_paper("2_points", name)
    if profile.get("train_depth"):  # the tiny profile: a shallow network compiles fast
        depth = profile["train_depth"]
        base = base.replace(depth=depth, layers=(depth // 2,))
    width, depth = base.width, base.depth
    floor_bytes = 16 * depth * width**2
    x, y = two_points(base.dx2, base.dy2)
    budget = profile[f"{name}_budget"]
    torch_ok = importlib.util.find_spec("torch") is not None
    rows = []
    for num_seeds in profile[f"{name}_seeds"]:
        steps = int(np.clip(budget // num_seeds, profile["min_steps"], profile["max_steps"]))
        setting = base.replace(steps=steps)

        def call():
            return train(setting, x, y, seeds=np.arange(num_seeds), progress=False).h

        # B next to each measurement too (best of all, like the times): the load on a
        # shared machine moves the bandwidth as much as the training.
        before = memory_bandwidth(256, 3)
        first, best, _ = first_and_best(call, repeats)
        bandwidth_here = max(bandwidth, before, memory_bandwidth(256, 3))
        seed_steps = num_seeds * steps
        floor_fraction = (best / seed_steps) / (floor_bytes / bandwidth_here)
        torch_info, baseline_rate = None, None
        if torch_ok:
            from ._torch import torch_train_rate

            t_steps = min(steps, profile["torch_max_steps"])
            torch_info = torch_train_rate(width, depth, num_seeds, t_steps, lr=base.lr,
                                          gain=base.gain, activation=base.activation,
                                          threads=(1, 2), repeats=repeats, layers=base.layers)
            baseline_rate = torch_info["seed_steps_per_s"]
            baseline = (f"PyTorch {torch_info['torch_version']} batched over seeds "
                        f"({torch_info['variant']}, threads={torch_info['threads']})")
        else:
            baseline = "torch not installed"
        rows.append(result(
            f"train-{name}", f"train MLP {width}×{depth}, {num_seeds} seed{'s' * (num_seeds != 1)} × {steps} steps",
            "seed-steps/s", seed_steps / best, baseline, baseline_rate,
            floor_fraction=floor_fraction,
            notes=(f"{1e6 * best / seed_steps:.1f} µs/seed-step; B {bandwidth_here / 1e9:.1f} GB/s; "
                   + ("" if torch_info is None else f"torch {torch_info['steps']} steps; ")
                   + f"compile {max(first - best, 0):.1f} s"),
            setting=name, width=width, depth=depth, seeds=num_seeds, steps=steps,
            seed_steps=seed_steps, rsd_seconds=best, rsd_first_call_seconds=first,
            compile_seconds=max(first - best, 0.0), floor_bytes_per_seed_step=floor_bytes,
            bandwidth_bytes_per_s=bandwidth_here, torch=torch_info))
    return rows


# ---------------------------------------------------------------------------
# Fits.

def synthetic_trajectories(n: int, steps: int, seed: int = 0, noise: float = 1e-4):
    """``n`` theory trajectories of ``steps`` steps, alternately rich (tiny h0, y0) and
    lazy (h0 ≈ 2–5), rates log-uniform such that the dynamics happen within the window,
    times (1 + ``noise``·N(0, 1)). Returns (data [n, steps, 3] float64, true rates [n, 2],
    dx2 [n], dy2 [n]). Solved by scipy DOP853 at rtol 1e-10 (independent of rsd, and
    nothing to compile)."""
    need_scipy()
    from scipy.integrate import solve_ivp

    rng = np.random.default_rng(seed)
    rich = np.arange(n) % 2 == 0
    h0 = np.where(rich, 10 ** rng.uniform(-4, -2, n), 10 ** rng.uniform(0.3, 0.7, n))
    y0 = np.where(rich, 10 ** rng.uniform(-5, -3, n), rng.uniform(0.05, 0.3, n))
    w0 = y0 - np.sqrt(FIT_DY2 * y0)
    eta_h = np.where(rich, 10 ** rng.uniform(-2.5, -1.5, n), 10 ** rng.uniform(-3.5, -2.5, n))
    eta_y = eta_h * 10 ** rng.uniform(-0.5, 0.5, n)
    ts = np.arange(steps, dtype=np.float64)
    zs = np.empty((n, steps, 3))
    for i in range(n):
        sol = solve_ivp(three_d_field, (ts[0], ts[-1]), [h0[i], y0[i], w0[i]], method="DOP853",
                        t_eval=ts, args=(eta_h[i], eta_y[i], FIT_DX2, FIT_DY2),
                        rtol=1e-10, atol=1e-12)
        if not sol.success or sol.y.shape[1] != steps:
            raise RuntimeError(f"synthetic trajectory {i}: {sol.message}")
        zs[i] = sol.y.T
    zs = zs * (1.0 + noise * rng.standard_normal((n, steps, 3)))
    return zs, np.stack([eta_h, eta_y], -1), np.full(n, FIT_DX2), np.full(n, FIT_DY2)


def fit_rows(profile: dict, repeats: int, decades: float = 1.5) -> list[dict]:
    """``rsd.fitting.fit_rates`` on synthetic trajectories (one batch) against, one
    trajectory at a time on a subsample, (a) the same algorithm in scipy and (b) the
    paper's procedure; every loss re-evaluated by one tight reference solver."""
    need_scipy()
    import jax

    from rsd.fitting import fit_rates, initial_rates

    from ._scipy_fit import paper_fit, reference_loss, scipy_same_algorithm_fit

    n, steps = profile["fit_n"], profile["fit_steps"]
    zs, true_rates, dx2, dy2 = synthetic_trajectories(n, steps)
    ts = np.arange(steps, dtype=np.float64)
    h, y, w = zs[..., 0], zs[..., 1], zs[..., 2]
    with jax.enable_x64(True):
        first, best, fit = first_and_best(
            lambda: fit_rates(h, y, w, dx2, dy2, grid_decades=decades), repeats)
        rates = np.stack([np.asarray(fit.eta_h), np.asarray(fit.eta_y)], -1)
        fit_status = np.asarray(fit.status)
        centers = np.asarray(initial_rates(h, y, w, dx2, dy2))
    sample = np.unique(np.linspace(0, n - 1, min(profile["fit_sample"], n)).round().astype(int))
    rsd_loss = [reference_loss(rates[i], zs[i], ts, dx2[i], dy2[i]) for i in sample]
    rel_rate_error = float(np.nanmax(np.abs(rates / true_rates - 1)))

    baselines = {
        "same-algorithm": ("scipy, the same algorithm (RK45 + MINPACK LM)",
                           lambda i: scipy_same_algorithm_fit(zs[i], ts, dx2[i], dy2[i],
                                                              init=centers[i], grid_decades=decades)),
        "paper": ("the paper's procedure (scipy LSODA, 10×10 grid + BFGS)",
                  lambda i: paper_fit(zs[i], ts, dx2[i], dy2[i], centers[i], decades)),
    }
    rows = []
    for key, (label, one) in baselines.items():
        seconds, outs = best_of(lambda: [one(i) for i in sample], repeats)
        base_loss = [reference_loss(np.asarray(r), zs[i], ts, dx2[i], dy2[i])
                     for (r, _), i in zip(outs, sample)]
        no_worse = [a <= b * (1 + 1e-6) + 1e-300 for a, b in zip(rsd_loss, base_loss)]
        rows.append(result(
            f"fits/{key}", f"fit_rates, {n} trajectories × {steps} steps in one call", "fits/s",
            n / best, f"{label}, one by one, {len(sample)}", len(sample) / seconds,
            notes=(f"rsd loss ≤ baseline's on {sum(no_worse)}/{len(sample)}; "
                   f"compile {max(first - best, 0):.1f} s"),
            n=n, steps=steps, rsd_seconds=best, rsd_first_call_seconds=first,
            compile_seconds=max(first - best, 0.0), baseline_n=len(sample),
            baseline_seconds=seconds, sample=sample, rsd_reference_loss=rsd_loss,
            baseline_reference_loss=base_loss, rsd_no_worse=no_worse,
            rsd_no_worse_count=sum(no_worse), rsd_status_counts=np.bincount(fit_status, minlength=4),
            rsd_max_rel_rate_error=rel_rate_error, grid_decades=decades))
    return rows


# ---------------------------------------------------------------------------
# Compilation cache.

def compile_cache_row(profile: dict, repeats: int) -> list[dict]:
    """Wall seconds of one CLI command (``python -m rsd ...``) in a fresh process with an
    empty persistent compilation cache, then again with the cache it filled."""
    args = list(profile["cache_command"])
    with tempfile.TemporaryDirectory(prefix="rsd-bench-cache-") as tmp:
        env = {k: v for k, v in os.environ.items()
               if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE")}
        env["RSD_COMPILATION_CACHE"] = os.path.join(tmp, "cache")
        walls = []
        for k in range(2):
            cmd = [sys.executable, "-m", "rsd", *args]
            if args[0] == "run":
                cmd += ["--out", os.path.join(tmp, f"out{k}")]
            start = time.perf_counter()
            done = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
            walls.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[1:])} exited with {done.returncode}: "
                                   f"{done.stderr.strip()[-500:]}")
        files = sum(len(f) for _, _, f in os.walk(env["RSD_COMPILATION_CACHE"]))
    first, second = walls
    command = "rsd " + " ".join(args)
    return [result(
        "compile-cache", f"`{command}`, cache filled (2nd process)", "runs/s", 1 / second,
        "the same, empty cache (1st process)", 1 / first,
        notes=f"{first:.1f} s → {second:.1f} s; {files} cache files",
        command=command, first_seconds=first, second_seconds=second, cache_files=files)]


# ---------------------------------------------------------------------------
# MNIST minibatch training.

def mnist_setting_and_data(n_train: int, epochs: int):
    """(setting, x, y, steps per epoch): the paper's MNIST "trajectories" setting with
    quirks on the first ``n_train`` offline images, ``epochs`` epochs long."""
    from rsd.data import mnist
    from rsd.training import Setting

    x, y = mnist(limit=n_train)
    setting = Setting.from_paper("mnist", "trajectories", quirks=True, n_train=n_train)
    per_epoch = math.ceil(n_train / setting.batch_size)
    return setting.replace(steps=epochs * per_epoch), x, y, per_epoch


def mnist_rsd_call(setting, x, y, per_epoch: int, num_seeds: int):
    """A ``train`` call with ``num_seeds`` seeds and one record per epoch, as a user makes it."""
    from rsd.training import train

    def call():
        return train(setting, x, y, seeds=np.arange(num_seeds), pair=(0, 1),
                     record_every=per_epoch, progress=False).h

    return call


def mnist_floor_call(setting, x, y, num_seeds: int):
    """The minibatch-only floor: a jitted, vmapped ``lax.scan`` of minibatch gather,
    forward, backward and SGD update (same network and shapes, no records)."""
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
            # gathers its own rows, as in train(); no permutation is drawn.
            idx = (offset + t * batch + jnp.arange(batch)) % n
            g = jax.grad(loss)(p, x[idx], y[idx])
            return jax.tree.map(lambda a, b: a - lr * b, p, g), None

        return lax.scan(step, p, jnp.arange(steps, dtype=jnp.int32))[0]

    program = jax.jit(jax.vmap(one_seed))
    params = jax.vmap(net.init)(jax.random.split(jax.random.key(0), num_seeds))
    offsets = jnp.arange(num_seeds, dtype=jnp.int32) * 97
    return lambda: program(params, offsets)


def interleaved(calls: dict, repeats: int) -> dict:
    """{name: (best steady seconds, first call seconds)} of ``calls`` timed in turn, so
    that a shared machine's load changes hit them alike."""
    first = {name: timed(call)[0] for name, call in calls.items()}
    best = {name: math.inf for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            best[name] = min(best[name], timed(call)[0])
    return {name: (best[name], first[name]) for name in calls}


def mnist_rows(profile: dict, repeats: int) -> list[dict]:
    """rsd's minibatch training on MNIST against the minibatch-only floor loop."""
    cfg = profile["mnist"]
    setting, x, y, per_epoch = mnist_setting_and_data(cfg["n_train"], cfg["epochs"])
    steps = setting.steps
    rows = []
    for num_seeds in cfg["seeds"]:
        times = interleaved({"rsd": mnist_rsd_call(setting, x, y, per_epoch, num_seeds),
                             "floor": mnist_floor_call(setting, x, y, num_seeds)}, repeats)
        (t_rsd, f_rsd), (t_floor, f_floor) = times["rsd"], times["floor"]
        seed_steps = num_seeds * steps
        rows.append(result(
            "mnist-train", f"train MNIST MLP {setting.width}×{setting.depth}, batch "
                           f"{setting.batch_size}, {num_seeds} seed{'s' * (num_seeds != 1)} × {steps} steps", "seed-steps/s",
            seed_steps / t_rsd, "minibatch-only loop (jit+vmap scan, no records)", seed_steps / t_floor,
            floor_fraction=t_rsd / t_floor,
            notes=(f"{cfg['n_train']} images, 1 record/epoch; floor = the minibatch-only loop; "
                   f"compile {max(f_rsd - t_rsd, 0):.1f} s"),
            seeds=num_seeds, steps=steps, seed_steps=seed_steps, n_train=cfg["n_train"],
            rsd_seconds=t_rsd, floor_seconds=t_floor, rsd_first_call_seconds=f_rsd,
            floor_first_call_seconds=f_floor, compile_seconds=max(f_rsd - t_rsd, 0.0)))
    return rows


ROW_FUNCTIONS = {
    "theory": lambda p, r, b: theory_row(p, r),
    "train-default": lambda p, r, b: train_rows("default", p, r, b),
    "train-narrow": lambda p, r, b: train_rows("narrow", p, r, b),
    "fits": lambda p, r, b: fit_rows(p, r),
    "compile-cache": lambda p, r, b: compile_cache_row(p, r),
    "mnist-train": lambda p, r, b: mnist_rows(p, r),
}
