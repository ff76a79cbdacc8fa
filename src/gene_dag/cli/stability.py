"""``gene-dag stability`` and ``gene-dag merge-stability``: stability resamples as separate jobs.

``stability`` solves a block of the resamples that ``gene-dag solve --stability-resamples B``
would solve in one process (same pass over the cells, same λ, same resample plan from the
seed) and writes their edge counts; ``merge-stability`` sums the blocks' counts into a
solved network's selection and orientation frequencies. The blocks of B resamples give
exactly the frequencies of one in-process solve.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gene_dag.cli._types import fraction
from gene_dag.cli.solve import add_solver_options, solver_options

log = logging.getLogger("gene_dag.stability")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``gene-dag stability`` and ``gene-dag merge-stability`` to ``subparsers``."""
    p = subparsers.add_parser(
        "stability",
        help="solve a block of stability resamples and write their edge counts",
        description="Solve the resamples --ids (of the --stability-resamples B that `gene-dag solve` "
        "would solve with the same options) and write their edge counts (.npz) for merge-stability.",
    )
    p.add_argument("input", help="expression .h5ad (cells × genes), as given to gene-dag solve")
    p.add_argument("--ids", required=True, help="resample ids: FIRST-LAST (inclusive) or a comma-separated list")
    p.add_argument("--out", required=True, type=Path, metavar="counts.npz", help="edge counts to write")
    add_solver_options(p)
    p.set_defaults(func=run_block)
    m = subparsers.add_parser(
        "merge-stability",
        help="add summed stability counts to a solved network",
        description="Sum edge counts of blocks of resamples and store selection and orientation "
        "frequencies in NETWORK.h5ad's varp (gene_dag_selection, gene_dag_orientation).",
    )
    m.add_argument("network", type=Path, metavar="NETWORK.h5ad", help="a solved network (gene-dag solve)")
    m.add_argument("counts", nargs="+", type=Path, metavar="counts.npz", help="edge counts of gene-dag stability")
    m.add_argument("--out", required=True, type=Path, help="output .h5ad")
    m.add_argument("--min-frequency", type=fraction, help="drop network edges selected less often than this")
    m.add_argument("--key", default="gene_dag", help="varp key of the network (default gene_dag)")
    m.set_defaults(func=run_merge)


def parse_ids(text: str) -> list[int]:
    """``3-7`` or ``0,2,5`` as a list of ints; ConfigError for anything else."""
    from gene_dag.errors import ConfigError

    try:
        if "-" in text:
            first, last = (int(v) for v in text.split("-", 1))
            ids = list(range(first, last + 1))
        else:
            ids = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--ids {text!r}: expected FIRST-LAST or a comma-separated list of integers") from None
    if not ids or min(ids) < 0:
        raise ConfigError(f"--ids {text!r}: no resample, or a negative id")
    return ids


def run_block(args: argparse.Namespace) -> int:
    """Run ``gene-dag stability``; return the exit status."""
    from gene_dag import io
    from gene_dag.solver.api import stability_block

    ids = parse_ids(args.ids)
    io.check_output_path(args.out, [args.input])
    adata = io.read_expression(args.input, layer=args.layer)
    options = solver_options(args)
    regulators, prior, groupby = options.pop("regulators"), options.pop("prior"), options.pop("groupby")
    counts = stability_block(adata, ids, regulators=regulators, prior=prior, groups=groupby, **options)
    counts.save(args.out)
    log.info("%s: %d resample(s) (%s)", args.out.name, counts.n_resamples, args.ids)
    return 0


def run_merge(args: argparse.Namespace) -> int:
    """Run ``gene-dag merge-stability``; return the exit status."""
    from functools import reduce

    from gene_dag import io
    from gene_dag.errors import InputError
    from gene_dag.stability import EdgeCounts
    from gene_dag.tl import add_stability

    io.check_output_path(args.out, [args.network, *args.counts])
    parts = [EdgeCounts.load(path) for path in args.counts]
    try:
        total = reduce(lambda a, b: a + b, parts)
    except ValueError as exc:
        raise InputError(str(exc), " + ".join(map(str, args.counts))) from None
    adata = io.read_expression(args.network, validate=False)
    add_stability(adata, total, key=args.key, min_frequency=args.min_frequency)
    io.write_h5ad(adata, args.out)
    log.info("%s: frequencies over %d resamples from %d block(s)", args.out.name, total.n_resamples, len(parts))
    return 0
