"""``gene-dag preprocess``: QC, normalisation and one AnnData per group (the workflow's checkpoint)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gene_dag.cli._types import nonnegative_int, positive_float, positive_int

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gene-dag preprocess`` subcommand and its options to ``subparsers``."""
    p = subparsers.add_parser(
        "preprocess",
        help="QC filter, normalise (counts) and split an expression matrix by group",
        description="Read an expression matrix (.h5ad, .loom, .csv, .tsv, or scanpy:pbmc68k_reduced / "
        "scanpy:krumsiek11), filter cells and genes, normalise_total + log1p when the values are counts, "
        "split by obs[GROUPBY] (groups below --min-group-size are skipped with the reason), drop genes "
        "constant within a group, optionally scale, and write OUTDIR/<group slug>.h5ad plus a manifest "
        "(TSV: group, slug, status, n_cells, n_genes, has_truth, reason).",
    )
    p.add_argument("input", metavar="INPUT", help="expression file or scanpy:<dataset>")
    p.add_argument("--outdir", required=True, type=Path, metavar="DIR", help="directory for the per-group .h5ad files")
    p.add_argument("--manifest", required=True, type=Path, metavar="groups.tsv", help="groups manifest to write")
    p.add_argument("--layer", default=None, help="layer to read instead of X ('raw' for adata.raw.X)")
    p.add_argument(
        "--orientation",
        choices=("cells_x_genes", "genes_x_cells"),
        default="cells_x_genes",
        help="layout of a .csv/.tsv input (default cells_x_genes)",
    )
    p.add_argument(
        "--values",
        choices=("counts", "log", "scaled"),
        default="counts",
        help="counts: normalise + log1p here; log: log-normalised already; scaled: used as they are (default counts)",
    )
    p.add_argument("--groupby", default=None, metavar="COLUMN", help="obs column: one network per value")
    p.add_argument(
        "--min-group-size", type=positive_int, default=50, metavar="N", help="skip groups with fewer cells (default 50)"
    )
    p.add_argument(
        "--min-genes", type=nonnegative_int, default=0, metavar="N", help="QC: drop cells expressing fewer genes"
    )
    p.add_argument(
        "--min-cells", type=nonnegative_int, default=0, metavar="N", help="QC: drop genes expressed in fewer cells"
    )
    p.add_argument(
        "--target-sum", type=positive_float, default=None, metavar="F", help="normalize_total target (default: median)"
    )
    p.add_argument("--scale", action="store_true", help="scale every gene to unit variance within its group")
    p.add_argument("--max-value", type=positive_float, default=None, metavar="F", help="clip scaled values at F")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gene-dag preprocess`` with the parsed ``args``; return the exit status (0 on success)."""
    from gene_dag import io
    from gene_dag.errors import InputError
    from gene_dag.preprocess import preprocess

    # every output is checked before any work: a directory gene-dag did not write is never replaced
    io.check_output_dir(args.outdir, inputs=[args.input])
    io.check_output_path(args.manifest, inputs=[args.input])
    if args.outdir.resolve() in args.manifest.resolve().parents:
        raise InputError(
            "lies inside --outdir, which is replaced as a whole; write the manifest elsewhere", args.manifest
        )
    with io.atomic_output_dir(args.outdir, inputs=[args.input]) as tmpdir:
        adata = io.read_expression(args.input, layer=args.layer, orientation=args.orientation)
        groups, manifest = preprocess(
            adata,
            values=args.values,
            groupby=args.groupby,
            min_group_size=args.min_group_size,
            min_genes=args.min_genes,
            min_cells=args.min_cells,
            target_sum=args.target_sum,
            scale_values=args.scale,
            max_value=args.max_value,
            source=str(args.input),
        )
        for group in groups:
            io.write_h5ad(group.adata, tmpdir / f"{group.slug}.h5ad")
        io.write_table(manifest, args.manifest)  # inside: a failed write leaves the old directory in place
    kept = manifest["status"].eq("kept").sum()
    log.info("%d group(s) kept, %d skipped; manifest %s", kept, len(manifest) - kept, args.manifest)
    return 0
