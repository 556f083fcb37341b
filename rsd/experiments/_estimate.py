"""What an experiment will cost, before it runs: ``rsd reproduce --dry-run``.

Each experiment module lists its training programs as :class:`Workload` records
(``workloads(config)``); :func:`estimate` turns them into networks, steps, memory and
time. The time model is the performance model of the training engine:

- a step of one network streams its parameters about four times (forward, backward,
  read and write of the update): 16 bytes per float32 parameter with SGD, 32 with Adam
  (its two moments are read and written too); minibatches and full-data records add
  2 flops per parameter per example (forward) and 4 more per trained example (backward);
  the step takes the longer of the two at bandwidth B and the machine's flop rate;
- on a CPU every compiled step also pays a fixed cost per layer of the network (about
  2 µs: ~20 XLA operations of a few hundred ns each, measured with ``rsd bench``) once
  per chunk of networks trained together;
- each distinct training program compiles once (about 5 s here) and each fitted
  trajectory costs about 15 ms (``rsd bench``'s fit row: 76 fits/s), plus about 15 s
  to compile each distinct fit (the rate fit, the loss-rate fit, one per vector field).

Two times are reported: on this machine (B measured now, the CPU constants above) and
the memory floor at a bandwidth you give (``--bandwidth 4.8e12`` for an H200), which an
accelerator approaches only for wide networks and many seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Workload", "Estimate", "estimate", "describe_estimates"]

STEP_COST_PER_LAYER = 2e-6
"""Seconds of fixed cost per layer per compiled step on a CPU (per chunk of networks)."""
COMPILE_SECONDS = 5.0
"""Seconds to compile one training program on a CPU."""
FIT_SECONDS = 0.015
"""Seconds per fitted trajectory on a CPU (one batched fit; ``rsd bench``: 76 fits/s)."""
FIT_COMPILE_SECONDS = 15.0
"""Seconds to compile one fit program (and the theory solves around it) on a CPU."""
FLOPS = 1e11
"""Floating-point operations per second of XLA's CPU matrix products on 2 cores (MNIST
minibatch steps of width 200 measured at about this rate)."""
CACHE_BYTES = 16 * 2**20
"""Parameters and optimizer state per chunk on a CPU (the training engine's rule)."""


@dataclass(frozen=True)
class Workload:
    """One training program of an experiment: ``networks`` copies of ``setting`` (seeds,
    or grid points) trained for ``setting.steps`` steps each (at most, with early
    stopping) on ``n_data`` examples of ``in_dim`` → ``out_dim``; ``records`` full-data
    records per network (None: the two points, every step); ``fits``: trajectories
    fitted afterwards, by ``fit_programs`` distinct compiled fits (one per vector field;
    workloads of one experiment share theirs)."""

    label: str
    setting: object
    networks: int
    in_dim: int
    out_dim: int
    n_data: int = 2
    records: int | None = None
    fits: int = 0
    fit_programs: int = 1


@dataclass(frozen=True)
class Estimate:
    """The cost of one experiment: networks trained, the longest run's steps, seed-steps,
    parameters of its largest network, peak memory of one chunk (bytes), seconds on this
    machine, and seconds at the memory floor of the given bandwidth."""

    experiment: str
    networks: int
    steps: int
    seed_steps: int
    parameters: int
    memory_bytes: int
    seconds_here: float
    seconds_floor: float


def _parameters(w: Workload) -> int:
    from ..training import parameter_count

    return parameter_count(w.setting.network(w.in_dim, w.out_dim))


def estimate(experiment: str, workloads, *, bandwidth_here: float, bandwidth: float) -> Estimate:
    """Sum the workloads' costs (see the module docstring for the model)."""
    networks = steps = seed_steps = parameters = memory = 0
    here = floor = 0.0
    fits = fit_programs = 0
    programs = set()
    for w in workloads:
        s = w.setting
        n = _parameters(w)
        adam = s.optimizer == "adam"
        state = 4 * n * (3 if adam else 1)
        per_step_bytes = (32 if adam else 16) * n
        batch = s.batch_size or w.n_data
        records = s.steps if w.records is None else w.records
        record_cost = 4 * (records * (len(s.layers or ()) + 3) + 1)
        chunk = max(1, min(64, 1 << (max(1, CACHE_BYTES // state).bit_length() - 1)))
        chunks = -(-w.networks // chunk)
        memory = max(memory, min(chunk, w.networks) * (state + 4 * n + record_cost))
        step_flops = 6 * batch * n
        per_network = max(per_step_bytes / bandwidth_here, step_flops / FLOPS)
        depth_cost = STEP_COST_PER_LAYER * (s.depth + 2)
        record_flops = 0.0 if w.records is None else w.records * 2 * w.n_data * n
        here += s.steps * (w.networks * per_network + chunks * depth_cost) + w.networks * record_flops / FLOPS
        floor += s.steps * w.networks * per_step_bytes / bandwidth
        programs.add((s.structure(), w.in_dim, w.out_dim))
        networks += w.networks
        steps = max(steps, s.steps)
        seed_steps += w.networks * s.steps
        parameters = max(parameters, n)
        fits += w.fits
        fit_programs = max(fit_programs, w.fit_programs if w.fits else 0)
    here += COMPILE_SECONDS * len(programs) + fits * FIT_SECONDS + FIT_COMPILE_SECONDS * fit_programs
    return Estimate(experiment, networks, steps, seed_steps, parameters, memory, here, floor)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def describe_estimates(estimates, *, size: str, bandwidth_here: float, bandwidth: float) -> str:
    """The dry run's table (Markdown) and its totals."""
    lines = [f"Dry run, size {size}: nothing is trained. Time here: this machine (memory bandwidth "
             f"{bandwidth_here / 1e9:.3g} GB/s measured now, CPU constants of rsd.experiments._estimate); "
             f"floor: the memory traffic at {bandwidth / 1e9:.4g} GB/s.", "",
             "| experiment | networks | steps (longest) | seed-steps | parameters (largest) | memory per chunk "
             "| time here | floor at bandwidth |", "|---|---|---|---|---|---|---|---|"]
    for e in estimates:
        lines.append(f"| {e.experiment} | {e.networks:,} | {e.steps:,} | {e.seed_steps:.3g} | {e.parameters:,} "
                     f"| {e.memory_bytes / 1e6:.3g} MB | {_duration(e.seconds_here)} | {_duration(e.seconds_floor)} |")
    lines.append(f"| **total** | {sum(e.networks for e in estimates):,} | | "
                 f"{sum(e.seed_steps for e in estimates):.3g} | | | "
                 f"**{_duration(sum(e.seconds_here for e in estimates))}** | "
                 f"**{_duration(sum(e.seconds_floor for e in estimates))}** |")
    return "\n".join(lines)
