"""``gene-dag plot``: the figures and tables of one network (the workflow's report draws on them)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from gene_dag.cli._types import positive_int

log = logging.getLogger("gene_dag.plot")

#: summary.json / metrics.json entries shown in the facts table, with their labels.
FACTS = (
    ("n_cells", "cells"), ("n_genes", "genes"), ("n_edges", "edges"), ("n_positive", "activating edges"),
    ("n_negative", "repressing edges"), ("n_regulators_with_targets", "genes with targets"),
    ("converged", "solver converged"),
)  # fmt: skip
METRICS = (
    ("shd", "structural Hamming distance (SHD) to the true graph"), ("tpr", "true positive rate (TPR)"),
    ("fdr", "false discovery rate (FDR)"), ("auprc", "area under the precision-recall curve (AUPRC)"),
    ("n_true", "true edges"), ("n_correct", "edges found"), ("n_reversed", "edges found reversed"),
    ("n_extra", "edges not in the true graph"), ("n_missing", "true edges missed"),
)  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gene-dag plot`` subcommand and its options to ``subparsers``."""
    p = subparsers.add_parser(
        "plot",
        help="draw a network: layered network plot, degrees, convergence, top regulators",
        description="Write the figures of NETWORK.h5ad into OUTDIR: network.png (the strongest edges, "
        "layered from causes to targets), degree.png, convergence.png, regulators.tsv (genes ranked by "
        "out-degree, total downstream effect and in-degree) and facts.tsv (size, convergence and, with "
        "--metrics, the accuracy against a known graph).",
    )
    p.add_argument("network", type=Path, metavar="NETWORK.h5ad", help="a learned network (network.h5ad)")
    p.add_argument("--outdir", required=True, type=Path, help="folder for the figures and tables")
    p.add_argument("--key", default="gene_dag", help="varp/uns key of the network (default gene_dag)")
    p.add_argument("--n-edges", type=positive_int, default=50, help="edges drawn in network.png (default 50)")
    p.add_argument("--n-top", type=positive_int, default=20, help="rows of regulators.tsv (default 20)")
    p.add_argument("--metrics", type=Path, metavar="metrics.json", help="gene-dag evaluate output to include")
    p.set_defaults(func=run)


def _facts(adata, key: str, metrics: dict | None):
    import pandas as pd

    from gene_dag.export import network_matrix, summarize

    summary = summarize(adata, network_matrix(adata, key), key)
    rows = [(label, summary[name]) for name, label in FACTS]
    run = summary["convergence"]
    rows += [
        ("score (least squares + penalty)", run.get("score", "-")),
        ("wall time (s)", run.get("total_wall_time_s", "-")),
    ]
    if metrics is not None:
        rows += [(label, metrics[name]) for name, label in METRICS if name in metrics]
    return pd.DataFrame(rows, columns=["what", "value"])


def run(args: argparse.Namespace) -> int:
    """Run ``gene-dag plot`` with the parsed ``args``; return the exit status (0 on success)."""
    import matplotlib

    matplotlib.use("Agg")
    from gene_dag import io, pl, tl
    from gene_dag.cli.effects import read_network
    from gene_dag.errors import InputError

    metrics = None
    if args.metrics is not None:
        try:
            metrics = json.loads(io.read_text(args.metrics, "metrics"))
        except ValueError as exc:
            raise InputError(f"cannot read the metrics as JSON ({io.one_line(exc)})", args.metrics) from None
    adata = read_network(args.network)
    table = tl.regulators(adata, key=args.key).head(args.n_top).reset_index()
    facts = _facts(adata, args.key, metrics)
    args.outdir.mkdir(parents=True, exist_ok=True)
    for name, draw in (
        ("network.png", lambda path: pl.network(adata, key=args.key, n_edges=args.n_edges, save=path)),
        ("degree.png", lambda path: pl.degree(adata, key=args.key, save=path)),
        ("convergence.png", lambda path: pl.convergence(adata, key=args.key, save=path)),
    ):
        with io.atomic_write(args.outdir / name) as tmp:
            draw(tmp)
    io.write_table(table, args.outdir / "regulators.tsv")
    io.write_table(facts, args.outdir / "facts.tsv")
    log.info("%s: figures in %s", args.network, args.outdir)
    return 0
