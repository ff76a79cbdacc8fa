"""The ``gene-dag`` command: one subcommand per module in this package, one per workflow rule.

Each subcommand module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments. Heavy imports (torch, scanpy) stay
inside those callables so that ``gene-dag --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from gene_dag.errors import GeneDagError
from gene_dag.signals import Interrupted, stop_on_signals

log = logging.getLogger("gene_dag")


def build_parser() -> argparse.ArgumentParser:
    """Parser with every subcommand found in ``gene_dag.cli``."""
    parser = argparse.ArgumentParser(
        prog="gene-dag",
        description="Learn causal gene regulatory networks (DAGs) from expression data.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with stop_on_signals():
            status = args.func(args)
    except GeneDagError as exc:
        print(f"gene-dag {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        # temporaries are gone (finally blocks ran); the step's own log says what was kept
        print(f"gene-dag {args.command}: {exc}; no output written", file=sys.stderr)
        return exc.exit_status
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
