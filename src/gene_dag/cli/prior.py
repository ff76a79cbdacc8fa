"""``gene-dag prior``: the prior files restricted to a network's genes, and a report of what was found."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)

NO_LIST_HEADER = "# no regulator list configured: every gene may regulate\n"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gene-dag prior`` subcommand and its options to ``subparsers``."""
    p = subparsers.add_parser(
        "prior",
        help="restrict the prior files to the selected genes and report found / missing genes",
        description="Build the edge mask of the prior (regulator list and/or edge prior TSV) over the genes "
        "of INPUT.h5ad, checking it (at least one allowed edge, no cycle among required edges), and write "
        "the regulator list and edge prior restricted to those genes, plus a JSON report of the genes found "
        "and missing and the number of allowed, forbidden, required and signed edges.",
    )
    p.add_argument("input", type=Path, metavar="INPUT.h5ad", help="the selected genes (var_names)")
    p.add_argument("--regulators", type=Path, metavar="FILE", help="regulator list, one gene per line")
    p.add_argument("--prior", type=Path, metavar="EDGES.tsv", help="edge prior: source, target, type[, weight]")
    p.add_argument("--out-regulators", required=True, type=Path, metavar="FILE", help="restricted regulator list")
    p.add_argument("--out-edges", required=True, type=Path, metavar="FILE", help="restricted edge prior (TSV)")
    p.add_argument("--report", required=True, type=Path, metavar="FILE", help="JSON report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gene-dag prior`` with the parsed ``args``; return the exit status (0 on success)."""
    import pandas as pd

    from gene_dag import io
    from gene_dag.prior import build_mask, prior_report, read_edge_prior, read_regulators

    io.check_outputs(
        [args.out_regulators, args.out_edges, args.report], inputs=[args.input, args.regulators, args.prior]
    )
    adata = io.read_expression(args.input, backed=True)
    try:
        genes = adata.var_names.astype(str).to_numpy()
    finally:
        if adata.isbacked:
            adata.file.close()
    regulators = read_regulators(args.regulators) if args.regulators else None
    table = read_edge_prior(args.prior) if args.prior else None
    source = " + ".join(str(p) for p in (args.regulators, args.prior) if p) or "prior"
    mask = build_mask(genes, regulators, table, source=source)

    reg_names = [str(g) for g in mask.regulator_names()]
    io.write_text(
        "".join(f"{g}\n" for g in reg_names) if regulators is not None else NO_LIST_HEADER, args.out_regulators
    )

    kept = pd.DataFrame(columns=["source", "target", "type", "weight"])
    if table is not None and len(table):
        in_genes = table["source"].isin(set(genes)) & table["target"].isin(set(genes))
        from_reg = table["source"].isin(set(reg_names))
        kept = table[in_genes & from_reg]
    io.write_table(kept, args.out_edges)

    report = prior_report(mask)
    report.update(
        {
            "regulator_list": str(args.regulators) if args.regulators else None,
            "edge_prior": str(args.prior) if args.prior else None,
            "n_regulators_listed": len(regulators) if regulators is not None else None,
            "regulators_found": reg_names if regulators is not None else [],
            "n_edge_prior_rows": int(len(table)) if table is not None else 0,
            "n_edge_prior_rows_kept": int(len(kept)),
        }
    )
    io.write_json(report, args.report)
    if regulators is not None:
        log.info(
            "%s: %d of %d listed regulators among the %d genes",
            source,
            len(reg_names),
            len(regulators),
            len(genes),
        )
    log.info("%s: %d allowed edges, %d prior edge rows kept", source, report["n_allowed_edges"], len(kept))
    return 0
