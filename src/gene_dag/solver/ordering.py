"""A causal order from the statistics alone: least residual variance first.

Under a linear SEM whose noise variances are equal, a source has the smallest variance,
and, given any set S of genes that contains all the parents of the genes not yet
ordered, the next gene in a causal order has the smallest variance conditional on S
(Chen, Drton & Wang 2019, "On causal discovery with an equal-variance assumption",
their top-down procedure). The order is built greedily: each step takes the gene with
the smallest residual variance given those already taken. This is a pivoted Cholesky
factorisation of the covariance with the smallest pivot first, d³/2 flops.

The constrained solve finds an order by continuous optimisation, whose answer can miss
by a few positions; each wrongly ordered true edge then brings in the co-parents of its
target as false edges. The least-residual order is a second candidate, not a
replacement: the refit keeps whichever order gives the lower score (refit.py), so on
data where equal variances do not hold the constrained solve's order stays.

After a candidate screen (no regulator list, thousands of genes), the residual variance
of a gene is taken given its placed candidate parents only
(:func:`screened_ordered_residuals`). That is the same quantity under the model as long
as the screen kept every parent (a gene's variance given its parents and other
non-descendants is its noise variance), and it stays an estimate of it when there are
about as many cells as genes: given every gene before it, a late gene's residual
variance collapses to 0 (with n cells, n genes determine any other), which is what rules
the dense order out there. It costs one small triangular solve per candidate edge
instead of d³/2 flops, so it has no size limit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg
import scipy.sparse as sp

#: Genes of the largest core ordered this way (d³/2 flops: seconds at 4,096 on a CPU).
LEAST_RESIDUAL_MAX = 4096


def least_residual_order(cov: np.ndarray, required: np.ndarray | None = None) -> np.ndarray:
    """Return a causal order of the genes of ``cov``: smallest residual variance first.

    The order of :func:`ordered_residuals`, whose parameters it takes.
    """
    return ordered_residuals(cov, required)[0]


def ordered_residuals(cov: np.ndarray, required: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return the least-residual order of the genes of ``cov`` and each one's residual variance.

    Parameters
    ----------
    cov
        q × q covariance of the genes (data units: the variances carry the order).
    required
        Optional q × q boolean: ``required[i, j]`` puts i before j (known edges of the
        prior). They must form a DAG; among the genes whose required parents are all
        placed, the one with the smallest residual variance comes next.

    Returns
    -------
    order
        The q gene positions in causal order.
    residuals
        The variance of each gene (by position in ``order``) given all genes before it:
        under equal noise variances, estimates of that one variance.
    """
    C = np.asarray(cov, dtype=np.float64)
    q = C.shape[0]
    residual = np.diag(C).copy()
    factors = np.zeros((q, q))

    def place(i: int, t: int) -> float:
        column = C[:, i] - factors[:, :t] @ factors[i, :t]
        pivot = column[i]
        # a gene its predecessors determine exactly adds no direction to the factor
        if pivot > 1e-12 * max(C[i, i], 1e-300):
            factors[:, t] = column / np.sqrt(pivot)
            residual[:] -= factors[:, t] ** 2
        return pivot

    return _greedy_order(residual, required, place)


def _greedy_order(
    residual: np.ndarray, required: np.ndarray | None, place: Callable[[int, int], float]
) -> tuple[np.ndarray, np.ndarray]:
    """Take the ready gene with the smallest residual, q times; ``place(gene, step)`` updates the residuals.

    A gene is ready when its required parents are placed; ``place`` returns its pivot.
    """
    q = residual.size
    waiting = np.zeros(q, dtype=np.int64) if required is None else required.sum(axis=0).astype(np.int64)
    placed = np.zeros(q, dtype=bool)
    order = np.empty(q, dtype=np.int64)
    pivots = np.zeros(q)
    for t in range(q):
        ready = ~placed & (waiting == 0)
        if not ready.any():
            raise ValueError("the required edges form a cycle")
        i = int(np.flatnonzero(ready)[np.argmin(residual[ready])])
        placed[i] = True
        pivots[t] = max(place(i, t), 0.0)
        order[t] = i
        if required is not None:
            waiting -= required[i].astype(np.int64)
    return order, pivots


def screened_ordered_residuals(
    cov_block: Callable[[np.ndarray, np.ndarray], np.ndarray],
    candidates: np.ndarray,
    required: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the least-residual order with each gene's variance given its placed candidates only.

    Parameters
    ----------
    cov_block
        ``cov_block(rows, cols)``: that block of the q × q covariance (data units), so the
        whole matrix is never built.
    candidates
        q × q boolean, dense or sparse: ``candidates[i, j]`` when i may be a parent of j
        (the screen).
    required
        As in :func:`ordered_residuals`.

    Returns
    -------
    order, residuals
        As in :func:`ordered_residuals`; a gene's residual is its variance given those of
        its candidate parents placed before it.
    """
    q = candidates.shape[0]
    cand = sp.csr_matrix(candidates, dtype=bool)
    cand.setdiag(False)
    cand.eliminate_zeros()
    by_column = cand.tocsc()
    parents = [by_column.indices[by_column.indptr[j] : by_column.indptr[j + 1]] for j in range(q)]
    children = [cand.indices[cand.indptr[i] : cand.indptr[i + 1]] for i in range(q)]
    local = [cov_block(np.append(p, j), np.append(p, j)) for j, p in enumerate(parents)]
    position = [{int(g): a for a, g in enumerate(p)} for p in parents]
    residual = np.array([c[-1, -1] for c in local], dtype=np.float64)
    fit = [_GivenPlaced() for _ in range(q)]
    placed = np.zeros(q, dtype=bool)

    def place(i: int, t: int) -> float:
        placed[i] = True
        for j in children[i]:
            if not placed[j]:
                residual[j] -= fit[j].add(local[j], position[j][i])
        return residual[i]

    return _greedy_order(residual, required, place)


class _GivenPlaced:
    """One gene's regression on its placed candidate parents, grown one parent at a time.

    Keeps the Cholesky factor L of the placed parents' covariance and w = L⁻¹ c, c their
    covariances with the gene; the gene's residual variance is its variance minus |w|².
    """

    def __init__(self) -> None:
        self.slots: list[int] = []
        self.L = np.zeros((0, 0))
        self.w = np.zeros(0)

    def add(self, C: np.ndarray, slot: int) -> float:
        """Add the parent at ``slot`` of the local covariance C (the gene last); return the variance it explains."""
        row = scipy.linalg.solve_triangular(self.L, C[self.slots, slot], lower=True) if self.slots else np.zeros(0)
        d2 = C[slot, slot] - row @ row
        # a parent its placed co-parents determine adds no direction
        if d2 <= 1e-12 * max(C[slot, slot], 1e-300):
            return 0.0
        d = np.sqrt(d2)
        new = (C[slot, -1] - row @ self.w) / d
        m = len(self.slots)
        L = np.zeros((m + 1, m + 1))
        L[:m, :m], L[m, :m], L[m, m] = self.L, row, d
        self.L, self.w = L, np.append(self.w, new)
        self.slots.append(slot)
        return float(new * new)
