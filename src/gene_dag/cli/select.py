"""``gene-dag select``: highly variable genes (or a list), with every gene the prior names forced in."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gene_dag.cli._types import positive_int

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gene-dag select`` subcommand and its options to ``subparsers``."""
    p = subparsers.add_parser(
        "select",
        help="select the genes a network is learned on",
        description="Keep the N most highly variable genes (scanpy flavors seurat, cell_ranger, seurat_v3, or "
        "plain variance), or the genes of a list, or all genes; add every gene the prior names "
        "(regulators, both ends of non-forbidden edges) that is present. Writes the restricted .h5ad "
        "with var['gene_dag_selection'] saying why each gene is there.",
    )
    p.add_argument("input", type=Path, metavar="INPUT.h5ad", help="preprocessed group")
    p.add_argument("--out", required=True, type=Path, metavar="OUT.h5ad", help="output file")
    p.add_argument("--method", choices=("hvg", "list", "all"), default="hvg", help="(default hvg)")
    p.add_argument(
        "--n-top-genes", type=positive_int, default=300, metavar="N", help="hvg: number of genes (default 300)"
    )
    p.add_argument(
        "--flavor",
        choices=("seurat", "cell_ranger", "seurat_v3", "variance"),
        default="seurat",
        help="hvg: how variability is ranked (default seurat)",
    )
    p.add_argument("--genes", type=Path, metavar="FILE", help="list: gene names, one per line")
    p.add_argument("--regulators", type=Path, metavar="FILE", help="regulator list to force in")
    p.add_argument("--prior", type=Path, metavar="EDGES.tsv", help="edge prior whose non-forbidden genes are forced in")
    p.add_argument("--no-force", action="store_true", help="do not force the prior's genes in")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gene-dag select`` with the parsed ``args``; return the exit status (0 on success)."""
    from gene_dag import io
    from gene_dag.errors import ConfigError
    from gene_dag.prior import read_edge_prior, read_regulators
    from gene_dag.select import prior_genes, select_genes

    if args.method == "list" and args.genes is None:
        raise ConfigError("--method list needs --genes FILE")
    io.check_outputs([args.out], inputs=[args.input, args.genes, args.regulators, args.prior])
    gene_list = io.read_gene_list(args.genes) if args.genes is not None else None
    force = None
    if not args.no_force:
        regulators = read_regulators(args.regulators) if args.regulators else None
        edges = read_edge_prior(args.prior) if args.prior else None
        force = prior_genes(regulators, edges)
    adata = io.read_expression(args.input)
    out = select_genes(
        adata,
        method=args.method,
        n_top_genes=args.n_top_genes,
        flavor=args.flavor,
        gene_list=gene_list,
        force=force,
        source=str(args.input),
    )
    io.write_h5ad(out, args.out)
    return 0
