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


def bic_penalty(n_cells: int, discount: float = 1.0, *, gamma: float = 0.0, n_candidates: int = 1) -> float:
    """Return the penalty per parent in the units of the score (minus the log-likelihood).

    ``discount * log(n) / 2`` is the BIC's; ``gamma > 0`` adds the extended BIC's
    ``gamma * log(p)`` for p candidate parents (Chen & Chen 2008), the criterion that
    stays consistent when candidates are many relative to cells.
    """
    return discount * math.log(max(n_cells, 2)) / 2.0 + gamma * math.log(max(n_candidates, 1))


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
    steps = max(0, min(m - 1, n_cells // 2) if max_parents is None else max_parents)
    half_n, diag = n_cells / 2.0, np.diag(C)
    rss_out = np.maximum(C[targets, targets], 1e-300)  # a constant gene: no log of 0
    sel_out = np.zeros((B, m), dtype=bool)
    picked_out = np.full((B, steps), -1, dtype=np.int64)
    # the targets still growing, compacted as they stop (one that stops never resumes)
    act, avail, force = np.arange(B), available, forced
    floor = np.maximum(rss_out * RSS_FLOOR, 1e-300)
    rss, pcov = rss_out.copy(), C[targets].copy()  # cov(target, node | selected)
    pvar = np.broadcast_to(diag, (B, m)).copy()  # var(node | selected)
    sel = np.zeros((B, m), dtype=bool)
    U = np.zeros((B, min(steps, 16), m))  # normalised residual columns of the parents added
    for step in range(steps):
        r = np.arange(act.size)
        todo = force & ~sel
        must = todo.any(axis=1)
        # a node (nearly) determined by the parents already chosen adds nothing but rounding
        free = pvar > diag * RSS_FLOOR
        red = np.where(free, pcov**2 / np.where(free, pvar, 1.0), 0.0)  # fall of the residual variance
        choice = np.where(must[:, None], todo, avail & ~sel & free)
        i = np.argmax(np.where(choice, red, -np.inf), axis=1)
        gain = np.where(choice[r, i], red[r, i], 0.0)
        better = half_n * np.log(rss / np.maximum(rss - gain, floor)) > penalty
        add = choice[r, i] & (must | ((gain > 0) & better))
        if not add.all():
            rss_out[act[~add]] = rss[~add]
            sel_out[act[~add]] = sel[~add]
            act, i, avail, force, floor = act[add], i[add], avail[add], force[add], floor[add]
            rss, pcov, pvar, sel, U = rss[add], pcov[add], pvar[add], sel[add], U[add]
            r = np.arange(act.size)
        if act.size == 0:
            break
        if step == U.shape[1]:
            U = np.concatenate([U, np.zeros_like(U)], axis=1)
        # residualise the chosen node on the parents before it (Gram-Schmidt on C)
        v = C[i] - np.einsum("bsm,bs->bm", U[:, :step], U[r, :step, i])
        scale = np.sqrt(np.maximum(v[r, i], 1e-300))
        u = v / scale[:, None]
        U[:, step] = u
        u_target = pcov[r, i] / scale
        rss = np.maximum(rss - u_target**2, floor)
        pcov -= u * u_target[:, None]
        pvar -= u**2
        picked_out[act, step] = i
        sel[r, i] = True
    rss_out[act], sel_out[act] = rss, sel
    rss_out = _shrink(C, targets, picked_out, forced, rss=rss_out, n_cells=n_cells, penalty=penalty, sel=sel_out)
    return half_n * np.log(rss_out) + penalty * sel_out.sum(axis=1), sel_out


def _shrink(C, targets, picked, forced, *, rss, n_cells, penalty, sel) -> np.ndarray:
    """Backward step of :func:`grow_shrink`: drop parents whose removal lowers the BIC (``sel`` in place).

    One inverse per target, then a rank-one downdate of it per parent dropped. Only
    targets with two or more parents that may go can change: a lone parent was added
    because it lowered the score, and dropping it would raise the score by as much.
    """
    half_n = n_cells / 2.0
    rss = rss.copy()
    on = picked >= 0
    on &= ~forced[np.arange(picked.shape[0])[:, None], np.where(on, picked, 0)]
    todo = np.flatnonzero(on.sum(axis=1) >= 2)
    if todo.size == 0:
        return rss
    # pack each row's parents to the left, so the matrices are only as wide as needed
    live = picked[todo] >= 0
    width = int(live.sum(axis=1).max())
    packed = np.take_along_axis(picked[todo], np.argsort(~live, axis=1, kind="stable")[:, :width], axis=1)
    on = packed >= 0
    idx = np.where(on, packed, 0)
    Css = C[idx[:, :, None], idx[:, None, :]] * (on[:, :, None] & on[:, None, :])
    Css[:, np.arange(width), np.arange(width)] += ~on
    try:
        inv = np.linalg.inv(Css)
    except np.linalg.LinAlgError:  # forced parents that are constant or collinear
        inv = np.linalg.pinv(Css, hermitian=True)
    beta = np.einsum("bij,bj->bi", inv, np.where(on, C[idx, targets[todo][:, None]], 0.0))
    removable = on & ~forced[todo[:, None], idx]
    rows = np.arange(todo.size)
    while rows.size:
        inc = np.where(removable[rows], beta[rows] ** 2 / np.diagonal(inv[rows], axis1=1, axis2=2), np.inf)
        j = np.argmin(inc, axis=1)
        best = inc[np.arange(rows.size), j]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            drop = np.isfinite(best) & (half_n * np.log((rss[todo[rows]] + best) / rss[todo[rows]]) < penalty)
        rows, j, best = rows[drop], j[drop], best[drop]
        if rows.size == 0:
            break
        rss[todo[rows]] += best
        sel[todo[rows], packed[rows, j]] = False
        # the inverse of the parents left: downdate by the dropped one's row and column
        col = inv[rows, :, j]
        piv = inv[rows, j, j]
        inv[rows] -= col[:, :, None] * col[:, None, :] / piv[:, None, None]
        beta[rows] -= col * (beta[rows, j] / piv)[:, None]
        inv[rows, j, :] = 0.0
        inv[rows, :, j] = 0.0
        inv[rows, j, j] = 1.0
        beta[rows, j] = 0.0
        removable[rows, j] = False
    return rss


def explained_last_order(C: np.ndarray, n_targets: int) -> np.ndarray:
    """Return a start for the search: the target best explained by the rest last, repeatedly.

    The target with the largest diagonal of the precision matrix (the highest R² given
    every other node) goes last, is removed (a rank-one downdate of the precision), and
    so on. Sinks of a linear SEM are often its best-explained genes, and where a gene is
    nearly determined by others a random start can settle in an order with many more
    edges; the search then keeps whichever start ends with the lower BIC. The first
    ``len(C) - n_targets`` nodes are fixed parents, never placed.
    """
    m = C.shape[0]
    e = m - n_targets
    # a small ridge keeps the inverse defined with fewer cells than genes
    P = np.linalg.inv(C + 1e-6 * max(float(np.trace(C)) / max(m, 1), 1e-12) * np.eye(m))
    live = np.arange(m)
    out = []
    for _ in range(n_targets):
        d = np.where(live >= e, np.diag(P), -np.inf)
        i = int(np.argmax(d))
        out.append(int(live[i]) - e)
        col = P[:, i].copy()
        P = np.delete(np.delete(P - np.outer(col, col) / P[i, i], i, axis=0), i, axis=1)
        live = np.delete(live, i)
    return np.array(out[::-1], dtype=np.int64)


def best_order_search(
    C: np.ndarray,
    n_cells: int,
    order: np.ndarray,
    *,
    allowed: np.ndarray,
    required: np.ndarray | None = None,
    penalty_discount: float = 1.0,
    gamma: float = 0.0,
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
    penalty_discount, gamma
        The penalty per parent, :func:`bic_penalty` with p = m - 1 candidates; larger
        gives sparser DAGs.
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
    penalty = bic_penalty(n_cells, penalty_discount, gamma=gamma, n_candidates=m - 1)
    search = _Search(C, n_cells=n_cells, allowed=allowed, required=required, penalty=penalty)
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
        # every gene that may take j as a parent, with and without it: the side the
        # current order has (j before it or not) is the score already kept
        idx = np.flatnonzero(self.allowed[self.e + j, rest])
        now_after = idx >= p0
        masks_k = masks[idx]
        masks_k[:, self.e + j] = ~now_after
        s_new, sel_new = self.select(rest[idx], masks_k)
        s_now, sel_now = scores[rest[idx]], parents[rest[idx]]
        s_in = np.where(now_after, s_now, s_new)
        s_out = np.where(now_after, s_new, s_now)
        sel_in = np.where(now_after[:, None], sel_now, sel_new)
        sel_out = np.where(now_after[:, None], sel_new, sel_now)
        delta = np.zeros(rest.size)
        delta[idx] = s_in - s_out
        tail = np.concatenate([np.cumsum(delta[::-1])[::-1], [0.0]])
        # the moved gene: its score given every other gene bounds its score at any
        # position from below (exactly for the best subset, nearly for grow-shrink), so
        # only positions that could beat the current one are tried
        current = scores[j] + tail[p0]
        s_all, _ = self.select(np.array([j]), masks[-1:])
        tol = 1e-9 * max(1.0, abs(current))
        try_at = np.flatnonzero((tail + s_all[0] < current - tol) & self._valid_positions(rest, j))
        if try_at.size == 0:
            return order, scores, parents, False
        sj, selj = self.select(np.full(try_at.size, j), masks[try_at])
        total = sj + tail[try_at]
        best = int(np.argmin(total))
        if not total[best] < current - tol:
            return order, scores, parents, False
        p = int(try_at[best])
        new_order = np.insert(rest, p, j)
        scores, parents = scores.copy(), parents.copy()
        scores[j], parents[j] = sj[best], selj[best]
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
