"""Command-line interface: a thin shell over ``rsd.experiments``.

Bad input is one line on stderr and exit code 2; Ctrl-C is one line and exit code
130, with no half-written file left under a finished-looking name.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time

# What `rsd demo` runs: networks trained and fitted by the theory, then the theory alone.
DEMO = ["two-point-fit", "theory-demo"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the usage too)
        self.exit(2, f"rsd: {message} (see rsd --help)\n")


def _size_flags(parser):
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", dest="size", action="store_const", const="quick",
                       help="reduced sizes for a CPU, minutes (default)")
    group.add_argument("--paper", dest="size", action="store_const", const="paper",
                       help="the reference protocol's sizes (meant for an accelerator)")
    group.add_argument("--size", dest="size", choices=("tiny", "quick", "cpu", "paper"),
                       help="tiny (seconds, a smoke test), quick, cpu (the paper's widths and step "
                            "counts with fewer seeds, ~100 min on 2 cores) or paper")
    parser.set_defaults(size="quick")


def _devices_flag(parser):
    parser.add_argument("--devices", metavar="N|all",
                        help="shard the networks' seed axis over the first N local devices or all "
                             "of them (default: all with --paper, else one); results do not change")


def _processes_flags(parser):
    parser.add_argument("--num-processes", type=int, default=1, metavar="N",
                        help="split the units of work (rows, regimes) over N processes that share "
                             "--out on one file system, each started with its own --process-id")
    parser.add_argument("--process-id", type=int, default=0, metavar="I",
                        help="this process's id, 0 … N-1 (process 0 writes the results)")


def _devices(args):
    """--devices as train's argument: "all", an int, or None (one device); --paper means all."""
    if args.devices is None:
        return "all" if args.size == "paper" else None
    if args.devices == "all":
        return "all"
    try:
        return int(args.devices)
    except ValueError:
        raise ValueError(f"--devices must be a number of devices or 'all'; got {args.devices!r}.") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rsd", description="Representation learning dynamics: the effective theory "
                                             "of van Rossem & Saxe next to real networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="the main demonstration (quick, CPU)")
    demo.add_argument("--out", default="rsd-out", help="folder for results (default: rsd-out)")
    demo.add_argument("--force", action="store_true", help="recompute finished results")
    runp = sub.add_parser("run", help="run one experiment by name")
    runp.add_argument("name")
    _size_flags(runp)
    runp.add_argument("--seeds", type=int, help="number of seeds (experiments that have seeds)")
    runp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="change one setting of the experiment's Config (repeatable)")
    runp.add_argument("--out", default="rsd-out", help="folder for results (default: rsd-out)")
    runp.add_argument("--force", action="store_true", help="recompute a finished run")
    _devices_flag(runp)
    _processes_flags(runp)
    rep = sub.add_parser("reproduce", help="run the paper's experiments and write report.md")
    _size_flags(rep)
    rep.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments")
    rep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="change a setting of every experiment run (repeatable)")
    rep.add_argument("--out", default="rsd-out", help="folder for results (default: rsd-out)")
    rep.add_argument("--force", action="store_true", help="recompute finished experiments")
    _devices_flag(rep)
    _processes_flags(rep)
    rep.add_argument("--dry-run", action="store_true",
                     help="print each experiment's networks, steps, memory and time estimate; train nothing")
    rep.add_argument("--bandwidth", type=float, default=1e10, metavar="BYTES_PER_S",
                     help="memory bandwidth for the dry run's floor (default 1e10; 4.8e12 for an H200)")
    sub.add_parser("list", help="list the experiments")
    sweep = sub.add_parser("sweep", help="run a grid of settings × seeds from a TOML spec (resumable)")
    sweep.add_argument("spec", help="the sweep spec (TOML; see rsd/sweeps/examples/two_points.toml)")
    sweep.add_argument("--out", help="the sweep's folder (required unless --dry-run)")
    sweep.add_argument("--dry-run", action="store_true", help="print the plan; train nothing")
    sweep.add_argument("--force", action="store_true",
                       help="delete the folder's sweep files (another spec's too) and start over")
    sweep.add_argument("--devices", type=int, metavar="N", help="use the first N local devices (default: all)")
    sweep.add_argument("--num-processes", type=int, metavar="N", help="processes of a multi-host run")
    sweep.add_argument("--process-id", type=int, metavar="I", help="this process's id, 0 … N-1")
    sweep.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    sweep.add_argument("--distributed", action="store_true",
                       help="join a multi-process run whose layout JAX detects (SLURM, Open MPI, TPU pod)")
    sweep.add_argument("--plugins", action="append", default=[], metavar="FILE_OR_MODULE",
                       help="a .py file or module that registers tasks or analyses "
                            "(rsd.sweeps.register_task / register_analysis); repeatable")
    sweep.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                       help="no progress bar")
    bench = sub.add_parser("bench", help="the benchmark suite: one table, rsd against named "
                                         "baselines measured in the same run")
    bench.add_argument("--quick", action="store_true", help="reduced sizes (a few minutes on a CPU)")
    bench.add_argument("--only", nargs="+", metavar="ROW",
                       help="run only these rows: theory, train-default, train-narrow, fits, "
                            "compile-cache, mnist-train")
    bench.add_argument("--out", default="rsd-bench.json", metavar="FILE.json",
                       help="where to write the results as JSON (default: rsd-bench.json)")
    bench.add_argument("--repeats", type=int, metavar="K",
                       help="timings per side, the best kept (default: 3, or 2 with --quick)")
    bench.add_argument("--profile", choices=("full", "quick", "tiny"), help=argparse.SUPPRESS)
    return parser


# Python runs a signal handler wherever the main thread is next; inside a garbage
# collector callback (JAX registers one) or a __del__ the KeyboardInterrupt is printed as
# "Exception ignored" and lost, and the run carries on to the end (measured: half of the
# Ctrl-Cs of a tiny run). There the interrupt is deferred: sent again a moment later.
_SWALLOWING_FRAMES = frozenset({"_xla_gc_callback", "__del__"})


def _on_sigint(signum, frame):
    f = frame
    while f is not None:
        if f.f_code.co_name in _SWALLOWING_FRAMES:
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
            return
        f = f.f_back
    raise KeyboardInterrupt


@contextlib.contextmanager
def _deliverable_interrupts():
    try:
        previous = signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv=None) -> int:
    try:
        with _deliverable_interrupts():
            args = build_parser().parse_args(argv)
            return _dispatch(args)
    except (ValueError, FileNotFoundError) as error:
        # Bad input (arguments, --set values, a missing or corrupt data file): one line.
        message = error.args[0] if isinstance(error, FileNotFoundError) and error.args else error
        print(f"rsd: {message}", file=sys.stderr)
        return 2
    except TimeoutError as error:
        # A process of a multi-process run waited in vain (another was lost): one line.
        print(f"rsd: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rsd: interrupted", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "bench":
        return _bench(args)
    import matplotlib

    matplotlib.use("Agg")
    from . import experiments

    if args.command == "list":
        for name, module in experiments.REGISTRY.items():
            tag = "reproduce" if name in experiments.REPRODUCE else \
                "demo" if name in DEMO else "extra"
            print(f"{name:16s} [{tag:9s}] {module.__doc__.strip().splitlines()[0]}")
        return 0
    if args.command == "demo":
        experiments.prepare_output(args.out)
        for name in DEMO:
            outcome = experiments.run_experiment(name, size="quick", out=args.out, force=args.force)
            _say_files(outcome)
        return 0
    if args.command == "run":
        outcome = experiments.run_experiment(args.name, size=args.size, overrides=args.overrides,
                                             seeds=args.seeds, out=args.out, force=args.force,
                                             devices=_devices(args), num_processes=args.num_processes,
                                             process_id=args.process_id)
        _say_files(outcome)
        return 0
    if args.dry_run:
        text, _ = experiments.estimate_reproduction(args.only, size=args.size, overrides=args.overrides,
                                                    bandwidth=args.bandwidth)
        print(text)
        return 0
    report, _ = experiments.reproduce(args.only, size=args.size, out=args.out, force=args.force,
                                      overrides=args.overrides, header=_report_header(args),
                                      devices=_devices(args), num_processes=args.num_processes,
                                      process_id=args.process_id)
    print(f"report: {report}  (figures and data in {report.parent}/)")
    return 0


def _report_header(args) -> str:
    """The report's first lines: the command that made it and the machine it ran on."""
    import platform

    import jax

    from . import __version__

    command = "rsd " + " ".join(sys.argv[1:]) if sys.argv[1:] else "rsd reproduce"
    device = jax.devices()[0]
    return (f"Made by `{command}` with rsd {__version__}, jax {jax.__version__}, on "
            f"{platform.machine()} {device.platform} ({os.cpu_count()} CPU cores, {len(jax.devices())} "
            f"{device.platform} device{'s' if len(jax.devices()) > 1 else ''}), "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")


def _sweep(args) -> int:
    from . import sweeps

    sweeps.load_plugins(*args.plugins)
    spec = sweeps.load_spec(args.spec)
    layout = (args.coordinator, args.num_processes, args.process_id)
    if args.dry_run:
        print(sweeps.describe_plan(sweeps.make_plan(spec), num_processes=args.num_processes or 1))
        return 0
    if args.out is None:
        raise ValueError("rsd sweep needs --out DIR (or --dry-run).")
    if args.distributed or any(v is not None for v in layout):
        if args.distributed and any(v is not None for v in layout):
            raise ValueError("--distributed detects the layout; do not also give --coordinator, "
                             "--num-processes or --process-id.")
        if args.num_processes != 1:
            sweeps.init_distributed(*layout)
    devices = "all" if args.devices is None else args.devices
    print(sweeps.run_sweep(spec, args.out, force=args.force, devices=devices,
                           progress=args.progress))
    return 0


def _bench(args) -> int:
    from . import bench

    try:
        results = bench.run(args.only, quick=args.quick, profile=args.profile,
                            repeats=args.repeats, out=args.out)
    except ImportError as error:  # scipy missing: say how to install it
        print(f"rsd: {error}", file=sys.stderr)
        return 2
    print(bench.format_table(results))
    print(f"wrote {args.out}")
    return 1 if any("error" in r for r in results) else 0


def _say_files(outcome) -> None:
    if outcome.summary:
        print(outcome.summary)
    figures = ", ".join(f"{f}.png" for f in outcome.figures)
    print(f"wrote {outcome.folder}/ ({figures}, result.npz, metrics.json)")


def entry() -> None:
    """Console-script entry point: exit with main's code; after Ctrl-C leave at once
    (interpreter shutdown with XLA's threads mid-computation can crash). JAX's persistent
    compilation cache is on for the command line (``rsd._compilation_cache``:
    ``RSD_COMPILATION_CACHE`` moves it, ``=off`` disables it); ``main`` alone leaves it
    alone, so programs calling it do not write to the user's cache."""
    from ._compilation_cache import enable

    enable()
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    entry()
