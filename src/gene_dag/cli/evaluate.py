"""``gene-dag evaluate``: accuracy of a learned network against a known graph."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from gene_dag.errors import InputError

log = logging.getLogger(__name__)

_TABLE_ORDER = (
    "n_genes", "n_true", "n_predicted", "n_correct", "n_reversed", "n_extra", "n_missing",
    "shd", "tpr", "fdr", "fpr", "auprc", "auprc_skeleton",
)  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gene-dag evaluate`` subcommand and its options to ``subparsers``."""
    p = subparsers.add_parser(
        "evaluate",
        help="compare a learned network with a ground truth (SHD, TPR, FDR, AUPRC)",
        description="Compare the network in PRED.h5ad (varp[KEY], row = regulator, column = target) "
        "with a true graph, matching genes by name. Prints a table; --out writes JSON.",
    )
    p.add_argument("prediction", type=Path, metavar="PRED.h5ad", help="learned network")
    p.add_argument(
        "--truth",
        required=True,
        type=Path,
        metavar="TRUTH",
        help="true graph: .h5ad (varp[TRUTH_KEY]) or a TSV edge list with columns source, target[, weight]",
    )
    p.add_argument("--key", default="gene_dag", help="varp key of the prediction (default gene_dag)")
    p.add_argument("--truth-key", default="true_dag", help="varp key of an .h5ad truth (default true_dag)")
    p.add_argument("--out", type=Path, metavar="metrics.json", help="write the metrics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gene-dag evaluate`` with the parsed ``args``; return the exit status (0 on success)."""
    import pandas as pd

    from gene_dag.io import check_outputs
    from gene_dag.metrics import adjacency_from_edges, count_accuracy, edges_from_adjacency

    check_outputs([args.out], inputs=[args.prediction, args.truth])
    W_pred, genes = _read_varp(args.prediction, args.key)
    if not genes.is_unique:
        raise InputError("gene names (var_names) are not unique", args.prediction)
    if _is_h5ad(args.truth):
        W_true, truth_genes = _read_varp(args.truth, args.truth_key)
        rows, cols, weights = edges_from_adjacency(W_true)
        sources, targets = truth_genes[rows], truth_genes[cols]
    else:
        sources, targets, weights = _read_edge_tsv(args.truth)
        truth_genes = pd.Index(sources).append(pd.Index(targets)).unique()
    absent = truth_genes.difference(genes, sort=False)
    if absent.size:
        raise InputError(
            f"{absent.size} of its {truth_genes.size} genes are absent from the prediction "
            f"{args.prediction} (first: {', '.join(map(str, absent[:5]))})",
            args.truth,
        )

    metrics = {"n_genes": len(genes), **count_accuracy(adjacency_from_edges(sources, targets, genes, weights), W_pred)}
    width = max(map(len, _TABLE_ORDER))
    for name in _TABLE_ORDER:
        value = metrics[name]
        print(f"{name:<{width}}  {value:>10.4f}" if isinstance(value, float) else f"{name:<{width}}  {value:>10d}")
    if args.out is not None:
        from gene_dag.io import write_text

        write_text(json.dumps(metrics, indent=2) + "\n", args.out)
    return 0


def _is_h5ad(path: Path) -> bool:
    return path.suffix.lower() == ".h5ad"


def _read_varp(path: Path, key: str):
    """(adjacency as CSR, gene names) from ``varp[key]`` of an .h5ad, without loading X."""
    import numpy as np
    import scipy.sparse as sp

    from gene_dag.io import read_expression, validate_gene_names

    adata = read_expression(path, backed=True, validate=False)  # only varp and the gene names are used
    try:
        validate_gene_names(adata.var_names, path)
        if key not in adata.varp:
            have = ", ".join(adata.varp.keys()) or "none"
            raise InputError(f"no varp[{key!r}] (varp keys: {have})", path)
        W = sp.csr_matrix(adata.varp[key])
        if W.nnz and not np.isfinite(W.data).all():
            raise InputError(f"varp[{key!r}] holds NaN or infinite weights", path)
        return W, adata.var_names.copy()
    finally:
        adata.file.close()


def _read_edge_tsv(path: Path):
    """Read (sources, targets, weights or None) from a tab-separated edge list with a header."""
    import io

    import pandas as pd

    from gene_dag.io import one_line, read_text

    text = read_text(path, "edge list")
    if not text.strip():
        raise InputError("the edge list is empty (it needs a header: source, target[, weight])", path)
    try:
        edges = pd.read_csv(io.StringIO(text), sep="\t", dtype={"source": str, "target": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read as a tab-separated edge list ({one_line(exc)})", path) from exc
    if not len(edges):
        log.warning("%s: the true graph has no edges", path)
    missing = {"source", "target"}.difference(edges.columns)
    if missing:
        raise InputError(
            f"edge list lacks column(s) {', '.join(sorted(missing))} (has: {', '.join(map(str, edges.columns))})", path
        )
    if edges[["source", "target"]].isna().any().any():
        raise InputError("empty source or target names", path)
    weights = None
    if "weight" in edges:
        weights = pd.to_numeric(edges["weight"], errors="coerce")
        if weights.isna().any():
            raise InputError("non-numeric or empty weight values", path)
        weights = weights.to_numpy(dtype=float)
    return edges["source"].to_numpy(), edges["target"].to_numpy(), weights
