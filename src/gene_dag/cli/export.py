"""``gene-dag export``: a solved network to network.h5ad, edges.tsv, network.graphml and summary.json."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gene-dag export`` subcommand and its options to ``subparsers``."""
    p = subparsers.add_parser(
        "export",
        help="write a learned network as .h5ad, edge table, GraphML and summary",
        description="Check that varp[KEY] of INPUT.h5ad is a DAG over its genes and write it: the AnnData "
        "(varp/uns, loads with sc.read_h5ad), edges.tsv (source, target, weight; sorted by |weight|), "
        "GraphML (Cytoscape, networkx) and a JSON summary (counts, degrees, top regulators, convergence).",
    )
    p.add_argument("input", type=Path, metavar="INPUT.h5ad", help="solved network (gene-dag solve output)")
    p.add_argument("--key", default="gene_dag", help="varp/uns key of the network (default gene_dag)")
    p.add_argument("--h5ad", type=Path, metavar="network.h5ad", help="AnnData to write")
    p.add_argument("--edges", type=Path, metavar="edges.tsv", help="edge table to write")
    p.add_argument("--graphml", type=Path, metavar="network.graphml", help="GraphML to write")
    p.add_argument("--summary", type=Path, metavar="summary.json", help="JSON summary to write")
    p.add_argument(
        "--decoupler", type=Path, metavar="FILE.tsv", help="decoupler network to write (source, target, weight)"
    )
    p.add_argument(
        "--pyscenic",
        type=Path,
        metavar="FILE.tsv",
        help="pySCENIC adjacencies to write (TF, target, importance = |weight|)",
    )
    p.add_argument("--prior-report", type=Path, metavar="FILE", help="gene-dag prior report to include")
    p.add_argument("--dataset", default=None, help="dataset name recorded in the outputs")
    p.add_argument("--group", default=None, help="group name recorded in the outputs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gene-dag export`` with the parsed ``args``; return the exit status (0 on success)."""
    from gene_dag import io
    from gene_dag.errors import InputError
    from gene_dag.export import export_network

    io.check_outputs(
        [args.h5ad, args.edges, args.graphml, args.summary, args.decoupler, args.pyscenic],
        inputs=[args.input, args.prior_report],
    )
    report = None
    if args.prior_report is not None:
        text = io.read_text(args.prior_report, "prior report")
        try:
            report = json.loads(text)
        except ValueError as exc:
            raise InputError(f"cannot read the prior report as JSON ({io.one_line(exc)})", args.prior_report) from None
        if not isinstance(report, dict):
            raise InputError(f"the prior report is a JSON {type(report).__name__}, not an object", args.prior_report)
    extra = {k: v for k, v in (("dataset", args.dataset), ("group", args.group)) if v is not None}
    adata = io.read_expression(args.input)
    export_network(
        adata,
        key=args.key,
        h5ad=args.h5ad,
        edges=args.edges,
        graphml=args.graphml,
        summary=args.summary,
        decoupler=args.decoupler,
        pyscenic=args.pyscenic,
        prior_report=report,
        extra=extra,
        source=str(args.input),
    )
    return 0
