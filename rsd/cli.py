"""Command-line interface: a thin shell over ``rsd.experiments``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


# What `rsd demo` runs: networks trained and fitted by the theory, then the theory alone.
DEMO = ["two-point-fit", "theory-demo"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="rsd", description="Representation learning dynamics, theory and networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the main demonstration (quick, CPU)")
    demo.add_argument("--out", default="rsd-out", help="folder for figures and results (default: rsd-out)")
    runp = sub.add_parser("run", help="run one experiment by name")
    runp.add_argument("name")
    runp.add_argument("--out", default="rsd-out")
    sub.add_parser("list", help="list the experiments")
    args = parser.parse_args(argv)

    from . import experiments

    if args.command == "list":
        for name, module in experiments.REGISTRY.items():
            print(f"{name:20s} {module.__doc__.strip().splitlines()[0]}")
        return 0
    names = DEMO if args.command == "demo" else [args.name]
    for name in names:
        if name not in experiments.REGISTRY:
            print(f"rsd: unknown experiment {name!r}; choose from {', '.join(experiments.REGISTRY)}",
                  file=sys.stderr)
            return 2
    try:
        for name in names:
            _run(experiments.REGISTRY[name], name, Path(args.out))
    except ValueError as error:
        print(f"rsd: {error}", file=sys.stderr)
        return 2
    return 0


def _run(module, name, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    result = module.run(module.Config())
    print(module.summary(result))
    figure = module.plot(result)
    path = out / f"{name}.png"
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=120)
    tmp.replace(path)  # atomic: an interrupted run never leaves half a figure
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
