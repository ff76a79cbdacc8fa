"""Best-order search on the Gaussian BIC: an orientation that does not lean on variances.

On standardised genes the equal-variance least-squares score of the constrained solve
is misspecified: it prefers orders that put well-explained genes last, so a hub tends
to land after its children, and the children then need edges between each other to
explain their shared parent. The Gaussian likelihood with one noise variance per gene
is invariant to the scale of every gene and equal for Markov-equivalent DAGs; with the
BIC's per-edge penalty the sparsest DAG that explains the covariance wins, and a hub
after its children costs those sibling edges.

The search is best-order score search (BOSS; Andrews, Ramsey, Sanchez-Romero, Camchong
and Kummerfeld, NeurIPS 2023): take one gene at a time out of the order and put it back
where the order scores best, until no move improves. Each gene's parents are chosen
among the genes before it by grow-shrink (forward then backward) selection on the BIC.
Everything works on the covariance of the genes, so cells are never touched again.

The selections of one move (the moved gene at every position, and every gene that can
take it as a parent, with and without it) are independent; they run as one batch,
vectorised over targets (a Gram-Schmidt pass on the covariance per added parent).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from gene_dag.graph import topological_order

#: Relative residual variance below which a gene counts as determined by its parents.
RSS_FLOOR = 1e-10


@dataclass
class OrderSearchResult:
    """Outcome of :func:`best_order_search`.

    Attributes
    ----------
    order
        Target indices (0..q-1) in the order found.
    parents
        Boolean (m, q): ``parents[i, t]`` when node ``i`` is a selected parent of target ``t``.
    score
        BIC of the order (lower is better): sum over targets of
        ``n/2 log(residual variance) + penalty * number of parents``.
    sweeps
        Sweeps over the targets made.
    converged
        False when ``max_sweeps`` or the deadline stopped a sweep that still improved.
    """

    order: np.ndarray
    parents: np.ndarray
    score: float
    sweeps: int
    converged: bool


def bic_penalty(n_cells: int, discount: float = 1.0) -> float:
    """Return the BIC penalty per parent, ``discount * log(n) / 2``, in the units of the score."""
    return discount * math.log(max(n_cells, 2)) / 2.0


def grow_shrink(
    C: np.ndarray,
    targets: np.ndarray,
    available: np.ndarray,
    forced: np.ndarray,
    *,
    n_cells: int,
    penalty: float,
    max_parents: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Select parents for a batch of targets by forward then backward selection on the BIC.

    Parameters
    ----------
    C
        (m, m) covariance of the nodes.
    targets
        (B,) node index of each target.
    available
        (B, m) boolean: the nodes each target may take as parents (never itself).
    forced
        (B, m) boolean: parents every selection keeps (required edges), a subset of
        ``available``.
    n_cells
        Number of cells behind ``C`` (the likelihood's weight).
    penalty
        Score cost of one parent (see :func:`bic_penalty`).
    max_parents
        At most this many parents per target (default ``min(m - 1, n_cells // 2)``).

    Returns
    -------
    scores, parents
        (B,) ``n/2 log(residual variance) + penalty * |parents|`` and the (B, m) boolean
        selection.
    """
    B, m = available.shape
    rows = np.arange(B)
    steps = max(0, min(m - 1, n_cells // 2) if max_parents is None else max_parents)
    half_n = n_cells / 2.0
    var_k = C[targets, targets].copy()
    floor = np.maximum(var_k * RSS_FLOOR, 1e-300)
    pcov = C[targets].copy()  # cov(target, node | selected)
    diag = np.diag(C)
    pvar = np.broadcast_to(diag, (B, m)).copy()  # var(node | selected)
    rss = var_k.copy()
    U: list[np.ndarray] = []  # normalised residual columns of the parents added, one per step
    picked: list[np.ndarray] = []
    sel = np.zeros((B, m), dtype=bool)
    going = np.ones(B, dtype=bool)
    for _ in range(steps):
        todo = forced & ~sel
        must = todo.any(axis=1)
        # a node (nearly) determined by the parents already chosen adds nothing but rounding
        free = pvar > diag * RSS_FLOOR
        red = np.where(free, pcov**2 / np.where(free, pvar, 1.0), 0.0)  # fall of the residual variance
        choice = np.where(must[:, None], todo, available & ~sel & free)
        i = np.argmax(np.where(choice, red, -np.inf), axis=1)
        gain = np.where(choice[rows, i], red[rows, i], 0.0)
        new = np.maximum(rss - gain, floor)
        better = half_n * np.log(rss / new) > penalty
        add = going & choice[rows, i] & (must | ((gain > 0) & better))
        if not add.any():
            break
        going &= add
        # residualise the chosen node on the parents before it (Gram-Schmidt on C)
        v = C[i] - sum(u_s * u_s[rows, i][:, None] for u_s in U) if U else C[i].copy()
        scale = np.sqrt(np.maximum(v[rows, i], 1e-300))
        u = np.where(add[:, None], v / scale[:, None], 0.0)
        U.append(u)
        u_target = np.where(add, pcov[rows, i] / scale, 0.0)
        rss = np.where(add, np.maximum(rss - u_target**2, floor), rss)
        pcov -= u * u_target[:, None]
        pvar -= u**2
        picked.append(np.where(add, i, -1))
        sel[rows[add], i[add]] = True
    picked_arr = np.stack(picked, axis=1) if picked else np.zeros((B, 0), dtype=np.int64)
    rss = _shrink(C, targets, picked_arr, forced, rss=rss, n_cells=n_cells, penalty=penalty, sel=sel)
    return half_n * np.log(rss) + penalty * sel.sum(axis=1), sel


def _shrink(C, targets, picked, forced, *, rss, n_cells, penalty, sel) -> np.ndarray:
    """Backward step of :func:`grow_shrink`: drop parents whose removal lowers the BIC (``sel`` in place).

    Only targets with two or more parents that may go can change: a lone parent was
    added because it lowered the score, and dropping it would raise the score by as much.
    """
    half_n = n_cells / 2.0
    rss = rss.copy()
    live = picked >= 0
    live &= ~forced[np.arange(picked.shape[0])[:, None], np.where(live, picked, 0)]
    todo = np.flatnonzero(live.sum(axis=1) >= 2)
    picked = picked[todo]
    while todo.size:
        live = picked >= 0
        width = int(live.sum(axis=1).max())
        # pack each row's parents to the left, so the matrices are only as wide as needed
        order = np.argsort(~live, axis=1, kind="stable")[:, :width]
        packed = np.take_along_axis(picked, order, axis=1)
        on = packed >= 0
        idx = np.where(on, packed, 0)
        Css = C[idx[:, :, None], idx[:, None, :]] * (on[:, :, None] & on[:, None, :])
        Css[:, np.arange(width), np.arange(width)] += ~on
        c = np.where(on, C[idx, targets[todo][:, None]], 0.0)
        inv = np.linalg.inv(Css)
        beta = np.einsum("bij,bj->bi", inv, c)
        inc = beta**2 / np.diagonal(inv, axis1=1, axis2=2)
        inc = np.where(on & ~forced[todo[:, None], idx], inc, np.inf)
        j = np.argmin(inc, axis=1)
        best = inc[np.arange(todo.size), j]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            drop = np.isfinite(best) & (half_n * np.log((rss[todo] + best) / rss[todo]) < penalty)
        if not drop.any():
            break
        gone = packed[np.arange(todo.size), j]
        rss[todo[drop]] += best[drop]
        sel[todo[drop], gone[drop]] = False
        picked = np.where(picked == np.where(drop, gone, -2)[:, None], -1, picked)
        keep = drop & ((picked >= 0).sum(axis=1) >= 2)
        todo, picked = todo[keep], picked[keep]
    return rss


def best_order_search(
    C: np.ndarray,
    n_cells: int,
    order: np.ndarray,
    *,
    allowed: np.ndarray,
    required: np.ndarray | None = None,
    penalty_discount: float = 1.0,
    max_sweeps: int = 20,
    deadline: float | None = None,
) -> OrderSearchResult:
    """Search the order of q targets that minimises the Gaussian BIC (BOSS).

    Parameters
    ----------
    C
        (m, m) covariance: the first ``m - q`` nodes are fixed parents available to every
        target (regulators outside the searched set), the last ``q`` are the targets.
    n_cells
        Number of cells behind ``C``.
    order
        Starting order of the targets (indices 0..q-1), for example the topological
        order of a DAG already found; moved as little as needed to put every required
        parent first.
    allowed
        (m, q) boolean: node ``i`` may be a parent of target ``t`` (the prior's mask).
    required
        (m, q) boolean edges every DAG keeps (a subset of ``allowed``), or None.
    penalty_discount
        Multiplies the BIC penalty ``log(n) / 2`` per parent; larger gives sparser DAGs.
    max_sweeps
        At most this many sweeps over the targets.
    deadline
        ``time.monotonic()`` value after which no new sweep starts.

    Returns
    -------
    OrderSearchResult
    """
    m, q = allowed.shape
    e = m - q
    C = np.asarray(C, dtype=np.float64)  # differences of log residual variances need float64
    required = np.zeros_like(allowed) if required is None else required & allowed
    search = _Search(
        C, n_cells=n_cells, allowed=allowed, required=required, penalty=bic_penalty(n_cells, penalty_discount)
    )
    order = np.asarray(order, dtype=np.int64).copy()
    if required[e:].any():
        # the start must keep required parents first: the nearest order that does
        rank = np.empty(q, dtype=np.int64)
        rank[order] = np.arange(q)
        order = topological_order(required[e:].astype(np.int8), rank)
    scores, parents = search.initial(order)
    sweeps, converged = 0, True
    for sweep in range(1, max_sweeps + 1):
        sweeps, moved = sweep, False
        for j in order.copy():
            order, scores, parents, did = search.move(order, scores, parents, int(j))
            moved |= did
        if not moved:
            break
        if deadline is not None and time.monotonic() > deadline:
            converged = False
            break
    else:
        converged = False
    return OrderSearchResult(order, parents.T.copy(), float(scores.sum()), sweeps, converged)


class _Search:
    """The state-free parts of one BOSS run: masks and the batched selections of a move."""

    def __init__(self, C, *, n_cells, allowed, required, penalty):
        self.C, self.n, self.allowed, self.required, self.penalty = C, n_cells, allowed, required, penalty
        self.q = allowed.shape[1]
        self.e = allowed.shape[0] - self.q

    def select(self, targets: np.ndarray, available: np.ndarray):
        """Grow-shrink for targets (0..q-1) over ``available`` nodes (B, m)."""
        avail = available & self.allowed[:, targets].T
        forced = avail & self.required[:, targets].T
        return grow_shrink(self.C, targets + self.e, avail, forced, n_cells=self.n, penalty=self.penalty)

    def prefix_masks(self, order: np.ndarray) -> np.ndarray:
        """(len(order) + 1, m): row p marks the fixed nodes and the first p targets of ``order``."""
        masks = np.zeros((order.size + 1, self.e + self.q), dtype=bool)
        masks[:, : self.e] = True
        steps = np.zeros((order.size + 1, self.q), dtype=bool)
        steps[np.arange(1, order.size + 1), order] = True
        masks[:, self.e :] = np.cumsum(steps, axis=0) > 0
        return masks

    def initial(self, order: np.ndarray):
        masks = self.prefix_masks(order)[:-1]
        scores, sel = self.select(order, masks)
        s = np.empty(self.q)
        s[order] = scores
        parents = np.zeros((self.q, self.e + self.q), dtype=bool)
        parents[order] = sel
        return s, parents

    def move(self, order, scores, parents, j):
        """Put target ``j`` where the order scores best; return the new state and whether it moved."""
        rest = order[order != j]
        p0 = int(np.flatnonzero(order == j)[0])
        masks = self.prefix_masks(rest)  # row p: the prefix before position p
        # the moved gene at every position
        sj, selj = self.select(np.full(rest.size + 1, j), masks)
        # every later gene that may take j as a parent, with and without it
        takes = self.allowed[self.e + j, rest]
        idx = np.flatnonzero(takes)
        without_j, with_j = masks[idx], masks[idx].copy()
        with_j[:, self.e + j] = True
        s_out, sel_out = self.select(rest[idx], without_j)
        s_in, sel_in = self.select(rest[idx], with_j)
        delta = np.zeros(rest.size)
        delta[idx] = s_in - s_out
        tail = np.concatenate([np.cumsum(delta[::-1])[::-1], [0.0]])
        total = sj + tail
        total[~self._valid_positions(rest, j)] = np.inf
        p = int(np.argmin(total))
        if not total[p] < total[p0] - 1e-9 * max(1.0, abs(total[p0])):
            return order, scores, parents, False
        new_order = np.insert(rest, p, j)
        scores, parents = scores.copy(), parents.copy()
        scores[j], parents[j] = sj[p], selj[p]
        after = idx >= p
        scores[rest[idx]] = np.where(after, s_in, s_out)
        parents[rest[idx]] = np.where(after[:, None], sel_in, sel_out)
        return new_order, scores, parents, True

    def _valid_positions(self, rest: np.ndarray, j: int) -> np.ndarray:
        """Positions of ``rest`` where ``j`` keeps its required parents before and children after."""
        valid = np.ones(rest.size + 1, dtype=bool)
        req_par = np.flatnonzero(self.required[self.e + rest, j])
        if req_par.size:
            valid[: req_par.max() + 1] = False
        req_child = np.flatnonzero(self.required[self.e + j, rest])
        if req_child.size:
            valid[req_child.min() + 1 :] = False
        return valid
