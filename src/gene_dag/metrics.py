"""Accuracy of a learned graph against a known one: SHD, TPR, FDR, AUPRC.

Counts follow NOTEARS' ``utils.count_accuracy`` so numbers are comparable with the
literature. Graphs are handled as sorted arrays of edge codes (row * d + column), so
sparse inputs with 10,000+ genes never become dense d x d matrices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from gene_dag.errors import InputError


def count_accuracy(B_true: sp.spmatrix | np.ndarray, W_est: sp.spmatrix | np.ndarray) -> dict[str, float | int]:
    """Compare an estimated graph with the true one; nonzero entries are edges (row = cause).

    Returns, as in NOTEARS:

    - ``n_correct``: predicted edges that are true edges; ``n_reversed``: predicted
      edges whose reverse (but not themselves) is true; ``n_extra``: predicted edges
      absent from the true skeleton (n_correct + n_reversed + n_extra = n_predicted).
    - ``n_missing``: true edges with no predicted edge between the same two genes.
    - ``tpr`` = n_correct / n_true; ``fdr`` = (n_reversed + n_extra) / n_predicted;
      ``fpr`` = (n_reversed + n_extra) / (d (d - 1) / 2 - n_true).
    - ``shd``: extra + missing gene pairs (undirected) + reversed edges, so a reversed
      edge counts once; equals n_extra + n_missing + n_reversed when neither graph has a
      2-cycle.
    - ``auprc``: average precision of predicted edges ranked by |weight| (ties share a
      threshold; true edges never predicted are never recalled). ``auprc_skeleton``:
      the same on undirected gene pairs (score = larger |weight| of the two directions),
      for judging structure alone or truths with cycles. Both are 0 without true edges.
    """
    t_rows, t_cols, _ = _edges(B_true)
    p_rows, p_cols, p_w = _edges(W_est)
    d = _square_size(B_true, "B_true")
    if _square_size(W_est, "W_est") != d:
        raise InputError(f"B_true and W_est have different sizes ({d} and {np.shape(W_est)[0]} genes)")

    true = t_rows * d + t_cols
    true_rev = t_cols * d + t_rows
    pred = p_rows * d + p_cols
    hit = np.isin(pred, true, assume_unique=True)
    reversed_ = ~hit & np.isin(pred, true_rev, assume_unique=True)
    true_pairs = np.unique(_pair_code(t_rows, t_cols, d))
    pred_pairs = np.unique(_pair_code(p_rows, p_cols, d))
    n_true, n_pred = true.size, pred.size
    n_correct, n_reversed = int(hit.sum()), int(reversed_.sum())
    n_extra = n_pred - n_correct - n_reversed
    n_missing = int((~np.isin(_pair_code(t_rows, t_cols, d), pred_pairs)).sum())
    shd = (
        int((~np.isin(pred_pairs, true_pairs, assume_unique=True)).sum())
        + int((~np.isin(true_pairs, pred_pairs, assume_unique=True)).sum())
        + n_reversed
    )

    # Skeleton ranking: one score per undirected pair, the larger |weight| of the two.
    pair = _pair_code(p_rows, p_cols, d)
    order = np.lexsort((-np.abs(p_w), pair))
    pair, weight = pair[order], np.abs(p_w[order])
    first = np.ones(pair.size, dtype=bool)
    first[1:] = pair[1:] != pair[:-1]
    skel_pairs, skel_w = pair[first], weight[first]

    return {
        "shd": shd,
        "tpr": n_correct / max(n_true, 1),
        "fdr": (n_reversed + n_extra) / max(n_pred, 1),
        "fpr": (n_reversed + n_extra) / max(d * (d - 1) / 2 - n_true, 1),
        "n_true": int(n_true),
        "n_predicted": int(n_pred),
        "n_correct": n_correct,
        "n_reversed": n_reversed,
        "n_extra": int(n_extra),
        "n_missing": n_missing,
        "auprc": average_precision(np.abs(p_w), hit, n_true),
        "auprc_skeleton": average_precision(
            skel_w, np.isin(skel_pairs, true_pairs, assume_unique=True), true_pairs.size
        ),
    }


def average_precision(scores: np.ndarray, is_true: np.ndarray, n_true: int) -> float:
    """Area under the precision-recall curve as step-wise average precision,
    sum over thresholds of (recall_k - recall_{k-1}) * precision_k (as scikit-learn's
    ``average_precision_score``), for ``scores`` of predicted items of which ``is_true``
    are hits, out of ``n_true`` positives in all (unpredicted positives lower the recall).
    Returns 0.0 when there are no positives."""
    scores = np.asarray(scores, dtype=np.float64)
    is_true = np.asarray(is_true, dtype=bool)
    if n_true <= 0 or scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    s, tp = scores[order], np.cumsum(is_true[order])
    last = np.r_[s[1:] != s[:-1], True]  # last item of each group of tied scores
    tp = tp[last]
    precision = tp / (np.flatnonzero(last) + 1)
    recall_step = np.diff(tp, prepend=0) / n_true
    return float(np.sum(recall_step * precision))


def adjacency_from_edges(
    sources: Sequence[str],
    targets: Sequence[str],
    genes: Sequence[str],
    weights: Sequence[float] | None = None,
) -> sp.csr_matrix:
    """CSR adjacency (row = source, column = target) over ``genes`` from an edge list of
    gene names; weights default to 1 and repeated edges keep their last weight. Raises
    InputError, counting and naming a few, if the edges name genes not in ``genes``."""
    import pandas as pd

    index = pd.Index(genes)
    if not index.is_unique:
        raise InputError("gene names are not unique")
    rows = index.get_indexer(pd.Index(sources))
    cols = index.get_indexer(pd.Index(targets))
    unknown = pd.Index([*sources, *targets])[np.r_[rows, cols] < 0].unique()
    if unknown.size:
        raise InputError(f"{unknown.size} genes not in the gene list: {', '.join(map(str, unknown[:5]))}")
    w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=np.float64)
    d = len(index)
    code = rows.astype(np.int64) * d + cols
    _, keep = np.unique(code[::-1], return_index=True)  # last occurrence of each edge
    keep = len(code) - 1 - keep
    return sp.csr_matrix((w[keep], (rows[keep], cols[keep])), shape=(d, d))


def edges_from_adjacency(A: sp.spmatrix | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, weights) of the nonzero entries of A, duplicates summed, explicit
    zeros dropped, in row-major order."""
    return _edges(A)


# ----------------------------------------------------------------------------- helpers


def _edges(A: sp.spmatrix | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    A = sp.csr_matrix(A, dtype=np.float64, copy=True)  # the caller's matrix is untouched
    A.sum_duplicates()
    A.data[np.isnan(A.data)] = 0.0
    A.eliminate_zeros()
    rows = np.repeat(np.arange(A.shape[0], dtype=np.int64), np.diff(A.indptr))
    return rows, A.indices.astype(np.int64), A.data


def _pair_code(rows: np.ndarray, cols: np.ndarray, d: int) -> np.ndarray:
    """Code of the undirected pair {row, col}."""
    return np.minimum(rows, cols) * d + np.maximum(rows, cols)


def _square_size(A: sp.spmatrix | np.ndarray, name: str) -> int:
    shape = A.shape if hasattr(A, "shape") else np.shape(A)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise InputError(f"{name} must be a square adjacency matrix, got shape {tuple(shape)}")
    return int(shape[0])
