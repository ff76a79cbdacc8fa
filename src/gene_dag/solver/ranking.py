"""Edge scores to rank every candidate edge, and weights in the data's and standardised units.

The score of a candidate edge i -> j comes from target j's neighbourhood regression on
standardised genes (the lasso path of :mod:`gene_dag.solver.lambda_path`): edges selected
at the network's λ rank first, by their standardised coefficient; the other candidates
follow, by their coefficient at the path's last (smaller) λ, or, when λ is the user's,
by the coordinate step each would take at λ / 2 (``lambda_path.half_lambda_step``, the
order in which they would enter a path below λ). Both parts map |β| to
[0, 1) by |β| / (1 + |β|), so the score lies in [0, 2) and orders lexicographically::

    score = [β*_ij != 0] + |β_ij| / (1 + |β_ij|),   β = β* where selected, else β_last

The DAG decides direction: where the solved DAG (before the threshold) holds j -> i
and not i -> j, the score of i -> j is halved, so a pair's DAG direction ranks above
its reverse. The score is a ranking (as GRNBoost2's importance is), not a probability;
stability frequencies (:mod:`gene_dag.stability`) say how reproducible an edge is.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def to_gene_rows(V: torch.Tensor | np.ndarray, regulators: np.ndarray, d: int) -> sp.csr_matrix:
    """Return a k × d block (regulator rows) as a d × d CSR with the regulators' gene rows."""
    Vn = V.cpu().numpy() if isinstance(V, torch.Tensor) else np.asarray(V)
    rows, cols = np.nonzero(Vn)
    M = sp.csr_matrix((Vn[rows, cols].astype(np.float64), (regulators[rows], cols)), shape=(d, d))
    M.setdiag(0)
    M.eliminate_zeros()
    return M


def rescale(W: sp.spmatrix, row_scale: np.ndarray, col_scale: np.ndarray) -> sp.csr_matrix:
    """``W[i, j] * row_scale[i] * col_scale[j]`` on the stored entries (CSR)."""
    W = sp.csr_matrix(W, dtype=np.float64, copy=True)
    coo = W.tocoo()
    W = sp.csr_matrix((coo.data * row_scale[coo.row] * col_scale[coo.col], (coo.row, coo.col)), shape=W.shape)
    W.eliminate_zeros()
    return W


def unit_weights(W: sp.spmatrix, std: np.ndarray, *, standardized: bool) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(data-unit weights, standardised weights) of a DAG solved in either unit.

    For x_j = Σ_i w_ij x_i + e_j, the standardised weight is w_ij σ_i / σ_j.
    Zero-variance genes have no edges, so their scale never divides.
    """
    safe = np.where(std > 0, std, 1.0)
    if standardized:
        return rescale(W, 1.0 / safe, safe), sp.csr_matrix(W, dtype=np.float64)
    return sp.csr_matrix(W, dtype=np.float64), rescale(W, safe, 1.0 / safe)


def edge_scores(beta_chosen: sp.csr_matrix, beta_last: sp.csr_matrix, dag: sp.spmatrix) -> sp.csr_matrix:
    """Return the ranking score of every candidate edge (module docstring), as a d × d CSR.

    ``beta_chosen`` and ``beta_last`` are the standardised neighbourhood coefficients
    at the chosen and the last λ of the path; ``dag`` is the solved DAG's support.
    """
    chosen = abs(sp.csr_matrix(beta_chosen))
    last = abs(sp.csr_matrix(beta_last))
    selected = chosen.astype(bool)
    unselected = last - last.multiply(selected)
    score = selected.astype(np.float64) + _squash(chosen) + _squash(unselected)
    support = sp.csr_matrix(dag, dtype=bool)
    reverse_only = support.T - support.T.multiply(support)
    halved = score.multiply(reverse_only.astype(bool))
    score = score - 0.5 * halved
    score = sp.csr_matrix(score)
    score.eliminate_zeros()
    return score


def _squash(M: sp.csr_matrix) -> sp.csr_matrix:
    M = sp.csr_matrix(M, dtype=np.float64, copy=True)
    M.eliminate_zeros()
    M.data = M.data / (1.0 + M.data)
    return M
