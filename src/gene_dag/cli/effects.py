"""``gene-dag effects``: total causal effect of do(gene + 1) on every other gene of a network."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gene_dag.cli._types import positive_int

log = logging.getLogger("gene_dag.effects")

EFFECT_COLUMNS = ("intervened", "gene", "total_effect", "direct_effect", "n_paths")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gene-dag effects`` subcommand and its options to ``subparsers``."""
    p = subparsers.add_parser(
        "effects",
        help="total causal effects of raising genes by one unit (rows of (I - W)^-1)",
        description="For each gene in --genes, the total causal effect of do(gene + 1) on every gene of "
        "NETWORK.h5ad (varp[KEY], row = regulator, column = target) under its linear SEM: the sum over "
        "all directed paths of the product of the weights. Writes a TSV with one row per (intervened, gene) "
        "pair with a nonzero effect: intervened, gene, total_effect, direct_effect, n_paths.",
    )
    add_network_arguments(p)
    p.add_argument("--out", required=True, type=Path, metavar="effects.tsv", help="table to write")
    p.add_argument("--plot", type=Path, metavar="effects.png", help="also draw the top effects of each gene")
    p.add_argument("--n-top", type=positive_int, default=20, help="genes per panel in --plot (default 20)")
    p.set_defaults(func=run)


def add_network_arguments(p: argparse.ArgumentParser) -> None:
    """NETWORK.h5ad, --genes, --key and --skip-missing (shared with ``gene-dag knockout``)."""
    p.add_argument("network", type=Path, metavar="NETWORK.h5ad", help="a learned network (network.h5ad)")
    p.add_argument("--genes", required=True, help="comma-separated gene names, e.g. SPI1,IRF8")
    p.add_argument("--key", default="gene_dag", help="varp key of the network (default gene_dag)")
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out (with a warning) genes that are not in the network instead of failing",
    )


def read_network(path: Path, *, backed: bool = False):
    """Read the AnnData of a network file; InputError when it is missing or unreadable."""
    import anndata

    from gene_dag.errors import InputError
    from gene_dag.io import one_line

    if not path.is_file():
        raise InputError("file not found", path)
    try:
        return anndata.read_h5ad(path, backed="r" if backed else None)
    except Exception as exc:  # h5py/anndata raise many types for a bad file
        raise InputError(f"cannot read as .h5ad ({one_line(exc)})", path) from exc


def chosen_genes(adata, args: argparse.Namespace) -> list[str]:
    """Return the --genes present in the network; absent ones are an error, or a warning with --skip-missing."""
    from gene_dag.errors import InputError

    genes = [g.strip() for g in args.genes.split(",") if g.strip()]
    if not genes:
        raise InputError("--genes names no gene")
    missing = [g for g in genes if g not in adata.var_names]
    if missing and not args.skip_missing:
        raise InputError(f"not genes of the network: {', '.join(missing)}", args.network)
    if missing:
        log.warning("%s: leaving out genes that are not in the network: %s", args.network, ", ".join(missing))
    return [g for g in genes if g not in missing]


def run(args: argparse.Namespace) -> int:
    """Run ``gene-dag effects`` with the parsed ``args``; return the exit status (0 on success)."""
    import numpy as np
    import pandas as pd

    from gene_dag import io, tl

    adata = read_network(args.network, backed=True)
    genes = chosen_genes(adata, args)
    if not genes:
        log.warning("%s: none of the genes asked for is in the network; writing an empty table", args.network)
        io.write_table(pd.DataFrame(columns=list(EFFECT_COLUMNS)), args.out)
        return 0
    tl.effects(adata, genes, key=args.key)
    parts = []
    for g in genes:
        part = pd.DataFrame({
            "intervened": g,
            "gene": adata.var_names.astype(str),
            "total_effect": adata.varm["effects"][g].to_numpy(),
            "direct_effect": adata.varm["effects_direct"][g].to_numpy(),
            "n_paths": adata.varm["effects_n_paths"][g].to_numpy().astype(np.int64),
        })  # fmt: skip
        part = part[(part["gene"] != g) & (part["total_effect"] != 0)]
        parts.append(part.iloc[np.argsort(-part["total_effect"].abs().to_numpy(), kind="stable")])
    table = pd.concat(parts, ignore_index=True)
    io.write_table(table, args.out)
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from gene_dag import pl

        fig, axes = plt.subplots(len(genes), 1, figsize=(6.5, len(genes) * (0.28 * args.n_top + 1.6)), squeeze=False)
        for g, ax in zip(genes, axes[:, 0], strict=True):
            pl.effects(adata, g, key=args.key, n_top=args.n_top, ax=ax)
        fig.tight_layout()
        with io.atomic_write(args.plot) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
        plt.close(fig)
    for g in genes:
        log.info("%s: do(%s + 1) changes %d gene(s)", args.network.name, g, int((table["intervened"] == g).sum()))
    return 0
