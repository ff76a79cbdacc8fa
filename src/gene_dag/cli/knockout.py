"""``gene-dag knockout``: predicted expression when genes are set to a value (in-silico perturbation)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gene_dag.cli._types import finite_float, nonnegative_float, positive_int
from gene_dag.cli.effects import add_network_arguments, chosen_genes, read_network

log = logging.getLogger("gene_dag.knockout")

KNOCKOUT_COLUMNS = ("group", "gene", "observed", "predicted", "shift")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gene-dag knockout`` subcommand and its options to ``subparsers``."""
    p = subparsers.add_parser(
        "knockout",
        help="predicted expression after setting genes to a value (knockout, knockdown, overexpression)",
        description="Set the genes in --genes (together) to --value (default 0: a knockout) or to --fraction "
        "times their observed level, cut their incoming edges and propagate the change along the network "
        "of NETWORK.h5ad in topological order, in the units of its expression (X or --layer). Writes a TSV "
        "with the mean of every gene per group: group, gene, observed, predicted, shift; sorted by |shift|.",
    )
    add_network_arguments(p)
    how = p.add_mutually_exclusive_group()
    how.add_argument("--value", type=finite_float, default=0.0, help="level to set the genes to (default 0)")
    how.add_argument(
        "--fraction",
        type=nonnegative_float,
        help="set the genes to this multiple of their observed level (0.3: knockdown, 2: overexpression)",
    )
    p.add_argument("--groupby", help="obs column: one mean per group (default: all cells together)")
    p.add_argument("--layer", help="expression to start from: a layer, or raw (default X)")
    p.add_argument("--out", required=True, type=Path, metavar="knockout.tsv", help="table to write")
    p.add_argument("--plot", type=Path, metavar="knockout.png", help="also draw the genes that change most")
    p.add_argument("--n-top", type=positive_int, default=20, help="genes in --plot (default 20)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gene-dag knockout`` with the parsed ``args``; return the exit status (0 on success)."""
    import numpy as np
    import pandas as pd

    from gene_dag import io, tl

    adata = read_network(args.network)
    genes = chosen_genes(adata, args)
    if not genes:
        log.warning("%s: none of the genes asked for is in the network; writing an empty table", args.network)
        io.write_table(pd.DataFrame(columns=list(KNOCKOUT_COLUMNS)), args.out)
        return 0
    tl.knockout(
        adata, genes, value=args.value, fraction=args.fraction, groupby=args.groupby, layer=args.layer, key=args.key
    )
    rec = adata.uns["knockout"]
    long = {name: rec[name].rename_axis("gene").reset_index().melt("gene", var_name="group", value_name=name)
            for name in ("observed", "predicted", "shift")}  # fmt: skip
    table = long["observed"].merge(long["predicted"], on=["gene", "group"]).merge(long["shift"], on=["gene", "group"])
    table = table[list(KNOCKOUT_COLUMNS)]
    table = table.iloc[np.lexsort((table["gene"], -table["shift"].abs().to_numpy()))].reset_index(drop=True)
    io.write_table(table, args.out)
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        from gene_dag import pl

        with io.atomic_write(args.plot) as tmp:
            pl.knockout(
                adata,
                genes,
                value=args.value,
                fraction=args.fraction,
                groupby=args.groupby,
                layer=args.layer,
                key=args.key,
                n_top=args.n_top,
                save=tmp,
            )
    for group, n in rec["n_changed"].items():
        log.info("%s: setting %s changes %d other gene(s) in %s", args.network.name, ", ".join(genes), n, group)
    return 0
