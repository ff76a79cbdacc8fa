"""Accuracy of a learned graph against a known one: SHD, TPR, FDR, AUPRC, early precision.

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
    """Area under the precision-recall curve as step-wise average precision.

    The sum over thresholds of (recall_k - recall_{k-1}) * precision_k (as scikit-learn's
    ``average_precision_score``), for ``scores`` of predicted items of which ``is_true``
    are hits, out of ``n_true`` positives in all (unpredicted positives lower the recall).
    Returns 0.0 when there are no positives.
    """
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


def ranking_accuracy(
    scores: sp.spmatrix | np.ndarray,
    B_true: sp.spmatrix | np.ndarray,
    *,
    regulators: Sequence[int] | np.ndarray | None = None,
    directed: bool = True,
) -> dict[str, float | int]:
    """How well a score for every ordered gene pair ranks the true edges (as BEELINE).

    Parameters
    ----------
    scores
        d x d scores, row = source, column = target, all >= 0 (pass ``|weight|``); a
        larger score ranks higher, 0 means "not predicted". Sparse input is made dense
        (d x d floats), so this is meant for benchmark sizes (a few thousand genes).
    B_true
        d x d true graph; nonzero entries are edges (row = cause).
    regulators
        Indices of the genes edges may leave (a TF list): candidates are then the pairs
        regulator -> other gene. Default: every ordered pair of distinct genes.
    directed
        False scores the skeleton: one item per unordered pair that holds a candidate,
        scored by the larger score of its candidate directions, true when either
        direction is a true edge.

    Returns
    -------
    dict
        ``n_candidates``; ``n_positive`` (true items among the candidates);
        ``auprc`` (:func:`average_precision` over every candidate, true edges outside
        the candidates count as never recalled); ``auprc_random`` = n_positive /
        n_candidates, the precision of a random ranking; ``auprc_ratio`` = auprc /
        auprc_random; ``n_scored`` (candidates with a score > 0); ``early_precision``:
        precision among the top k scored candidates, k = n_positive, where candidates
        tied with the k-th score are included and zero scores never are (BEELINE's
        rule; with fewer than k scored candidates, all of them); ``epr`` =
        early_precision / auprc_random. Ratios are 0 without positives.
    """
    d = _square_size(B_true, "B_true")
    S = scores.toarray() if sp.issparse(scores) else np.asarray(scores)
    S = np.asarray(S, dtype=np.float64)
    if S.shape != (d, d):
        raise InputError(f"scores must be {d} x {d} like B_true, got shape {S.shape}")
    if np.isnan(S).any():
        raise InputError("scores hold NaN; give every candidate pair a score (0 = not predicted)")
    if (S < 0).any():
        raise InputError("scores must be >= 0 (rank by |weight|)")
    t_rows, t_cols, _ = _edges(B_true)
    T = np.zeros((d, d), dtype=bool)
    T[t_rows, t_cols] = True
    np.fill_diagonal(T, False)  # a self-loop is never a candidate
    cand = ~np.eye(d, dtype=bool)
    if regulators is not None:
        reg = np.asarray(regulators, dtype=np.int64)
        if reg.size and (reg.min() < 0 or reg.max() >= d):
            raise InputError(f"regulator indices must be in 0..{d - 1}")
        is_reg = np.zeros(d, dtype=bool)
        is_reg[reg] = True
        cand &= is_reg[:, None]
    if directed:
        s, y, n_true = S[cand], T[cand], int(T.sum())
    else:
        iu = np.triu_indices(d, 1)
        up, down = cand[iu], cand.T[iu]
        keep = up | down
        s = np.maximum(np.where(up, S[iu], 0.0), np.where(down, S.T[iu], 0.0))[keep]
        pair_true = (T | T.T)[iu]
        y, n_true = pair_true[keep], int(pair_true.sum())
    n_cand, n_pos = int(s.size), int(y.sum())
    random = n_pos / n_cand if n_cand else 0.0
    auprc = average_precision(s, y, n_true)
    scored = s > 0
    n_scored = int(scored.sum())
    early = 0.0
    if n_pos and n_scored:
        k = min(n_pos, n_scored)
        kth = np.partition(s[scored], n_scored - k)[n_scored - k]  # k-th largest score
        top = scored & (s >= kth)
        early = float(y[top].mean())
    return {
        "n_candidates": n_cand,
        "n_positive": n_pos,
        "n_scored": n_scored,
        "auprc": auprc,
        "auprc_random": random,
        "auprc_ratio": auprc / random if random else 0.0,
        "early_precision": early,
        "epr": early / random if random else 0.0,
    }


def adjacency_from_edges(
    sources: Sequence[str],
    targets: Sequence[str],
    genes: Sequence[str],
    weights: Sequence[float] | None = None,
) -> sp.csr_matrix:
    """Build the CSR adjacency (row = source, column = target) over ``genes`` from an edge list.

    The edges are gene names; weights default to 1 and repeated edges keep their last weight. Raises
    InputError, counting and naming a few, if the edges name genes not in ``genes``.
    """
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
    """Return (rows, columns, weights) of the nonzero entries of A, in row-major order.

    Duplicates are summed and explicit zeros dropped.
    """
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
