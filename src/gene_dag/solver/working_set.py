"""Working-set coordinate descent for the batched masked lasso: cost that follows the sparsity.

The same problem as :func:`gene_dag.solver.lasso.batched_lasso`, for every target column j,

    min_v ½ vᵀ A v − bⱼᵀ v + Σᵢ tᵢⱼ |vᵢ|   (A = regulator correlation matrix),

solved the way glmnet, celer and skglm solve a lasso whose solution is sparse:

1. one product G = A V − B per outer round gives every coefficient's optimality (KKT)
   violation (:func:`gene_dag.solver.score.product`: dense at the hardware's GEMM rate,
   or through a sparse V, whose few nonzeros make it far cheaper at large k);
2. each column's working set is its support plus its worst violators (at most as many as
   the support, at least ``MIN_GROW``), so it doubles while the support is growing;
3. the small problems on the working sets (A restricted to them, gathered into a batch of
   m × m matrices) are solved together by cyclic coordinate descent, vectorised over the
   columns; each coordinate step is one exact soft-threshold. A column whose sweeps have
   settled is then solved exactly on its support with its signs (one small Cholesky
   solve), which is where coordinate descent on nearly collinear parents would crawl.

A column stops when no coefficient violates its optimality conditions by more than its
tolerance (in the units of B), which bounds the distance to the optimum as the FISTA
path's gradient-mapping rule does. A round costs one k × k by k × c product plus
O(c m²) per sweep, instead of a k × k by k × c product per FISTA step; where the supports
are dense (working sets of more than ``max_working_set`` coefficients), those columns are
handed to FISTA, which is then the cheaper method.

Statistics that needed float64 (:func:`gene_dag.solver.problem.working_precision`: genes
nearly determined by others) may be ill-conditioned enough that coordinate descent and
FISTA both crawl. How badly is a property of each column's allowed parents, not of the
whole matrix: the rate of coordinate descent on column j follows the conditioning of
A restricted to j's allowed entries. So each column with at most ``FEATURE_SIGN_MAX``
allowed entries whose allowed parents include one determined by the others up to a
residual fraction below ``FEATURE_SIGN_FRACTION`` is solved exactly by feature-sign
search (feature_sign.py), one column at a time; the rest, a screened problem's columns
mostly (a handful of candidate parents each, even when the whole matrix is singular
because cells are as few as genes), take the batched working sets, in float64.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch

from gene_dag.solver import score
from gene_dag.solver.feature_sign import feature_sign_column
from gene_dag.solver.lasso import LassoResult, batched_lasso
from gene_dag.solver.penalty import prox_bounds
from gene_dag.solver.threads import threads_for

log = logging.getLogger(__name__)

#: Elements of one batch of gathered working-set Gram matrices (c × m × m), about 64 MiB
#: in float32: bounds the memory of the inner solve whatever the working-set sizes.
GATHER_ELEMENTS = 2**24
#: Columns with at most this many allowed entries are solved by feature-sign search when
#: the statistics needed float64; wider ones by working sets and FISTA, in float64.
FEATURE_SIGN_MAX = 256
#: Such a column is solved by feature-sign search when some allowed parent's residual
#: variance given the other allowed parents is below this fraction of its variance:
#: coordinate descent's sweeps then shrink the error by as little as 1 − 10⁻⁴ each.
FEATURE_SIGN_FRACTION = 1e-4
#: Violators a working set gains at least per round (while it has that many).
MIN_GROW = 8
#: Columns whose support and violators exceed this many times the working-set cap go to
#: FISTA in the round that sees it (float32 statistics; in float64, ill-conditioned by
#: construction, FISTA crawls, and working sets that grow first cost less).
DENSE_VIOLATORS = 4


def kkt_violation(
    V: torch.Tensor,
    G: torch.Tensor,
    penalty: torch.Tensor,
    allowed: torch.Tensor,
    sign: torch.Tensor | None,
) -> torch.Tensor:
    """How far each coefficient is from the lasso's optimality conditions (0 where met).

    For vᵢ ≠ 0 the condition is gᵢ + tᵢ sign(vᵢ) = 0; for vᵢ = 0 it is |gᵢ| ≤ tᵢ, or the
    one-sided version under a sign constraint (a coefficient held at 0 by its sign may
    have any gradient pushing it the forbidden way). Edges that are not allowed never
    violate anything.
    """
    at_zero = V == 0
    nonzero = (G + penalty * torch.sign(V)).abs()
    if sign is None:
        zero = (G.abs() - penalty).clamp_min(0.0)
    else:
        # descent direction −g: a positive-only coefficient may only grow when g < 0
        up = (-G - penalty).clamp_min(0.0)
        down = (G - penalty).clamp_min(0.0)
        both = (G.abs() - penalty).clamp_min(0.0)
        zero = torch.where(sign > 0, up, torch.where(sign < 0, down, both))
    return torch.where(at_zero, zero, nonzero) * allowed


def working_set_lasso(
    A: torch.Tensor,
    B: torch.Tensor,
    penalty: torch.Tensor,
    *,
    allowed: torch.Tensor | None = None,
    sign: torch.Tensor | None = None,
    V0: torch.Tensor | None = None,
    tol: torch.Tensor | float = 1e-4,
    max_rounds: int = 100,
    max_sweeps: int = 500,
    max_working_set: int | None = None,
    L: float | None = None,
    deadline: float | None = None,
) -> LassoResult:
    """Solve the batched masked lasso of every column of B (k × c) by working-set CD.

    Parameters
    ----------
    A
        k × k symmetric PSD Gram matrix with unit diagonal where rows are live (a zero
        diagonal marks a constant regulator, which is never used).
    B
        k × c right-hand sides, one per target column.
    penalty
        L1 weights, k × c or broadcastable (k × 1).
    allowed, sign
        k × c masks as in :func:`gene_dag.solver.penalty.prox_l1_masked` (1 = may be
        nonzero; +1 / −1 / 0 sign constraints).
    V0
        k × c warm start (coefficients outside ``allowed`` are dropped).
    tol
        Per-column tolerance (c,) on the largest optimality violation, in B's units.
    max_rounds, max_sweeps
        Outer rounds (one dense gradient each) and coordinate sweeps per inner solve.
    max_working_set
        Columns needing more coefficients than this go to FISTA (default: k // 10, at
        least 32): on solutions that dense, coordinate descent's sweeps cost more than
        FISTA's dense products.
    L
        The Lipschitz constant of A for those FISTA columns (computed when not given).
    deadline
        A ``time.monotonic()`` value after which the solve returns unconverged.

    Returns
    -------
    LassoResult
        ``iterations`` counts outer rounds; ``max_residual`` is the largest violation at
        the last check.
    """
    k, c = B.shape
    problem = _Columns.of(A, B, penalty, allowed, sign)
    tol_t = torch.as_tensor(tol, dtype=B.dtype, device=B.device).expand(c).clone()
    V = torch.zeros_like(B) if V0 is None else V0.clone() * problem.mask
    todo, residual = torch.arange(c, device=B.device), torch.zeros_like(tol_t)
    if A.dtype == torch.float64:  # ill-conditioned: exact solves where affordable (module docstring)
        todo, exact_converged = problem.exact(V, tol_t, residual, deadline=deadline)
    cap = max_working_set or max(32, k // 10)
    dense_cols: list[torch.Tensor] = []
    rounds, timed_out = 0, False
    while todo.numel() and rounds < max_rounds:
        rounds += 1
        viol = problem.violations(V, todo)
        worst = viol.amax(dim=0)
        residual[todo] = worst
        active = worst > tol_t[todo]
        todo, viol, worst = todo[active], viol[:, active], worst[active]
        if not todo.numel():
            break
        support = V[:, todo] != 0
        # ill-conditioned (float64) statistics make FISTA crawl: there columns reach it
        # only once their working sets have grown past the cap
        n_ws, keep = _working_set_sizes(support, viol, cap, early_dense=A.dtype != torch.float64)
        dense_cols.append(todo[~keep])
        todo, support, viol, n_ws, worst = todo[keep], support[:, keep], viol[:, keep], n_ws[keep], worst[keep]
        if not todo.numel():
            break
        priority = torch.where(support, torch.full_like(viol, math.inf), torch.where(viol > 0, viol, -1.0))
        # early rounds need no exact inner solve (as in celer): a tenth of the column's
        # violation, and half its tolerance at the end
        inner_tol = torch.maximum(0.5 * tol_t[todo], 0.1 * worst)
        _solve_working_sets(problem, V, todo, priority=priority, n_ws=n_ws, tol=inner_tol, max_sweeps=max_sweeps)
        if rounds % 5 == 0:
            log.info("working-set lasso round %d: %d of %d columns still violating", rounds, todo.numel(), c)
        if deadline is not None and time.monotonic() > deadline:
            timed_out = True
            break
    converged = not todo.numel() and not timed_out and (A.dtype != torch.float64 or exact_converged)
    if todo.numel() and not timed_out:  # out of rounds: the last violations are not yet measured
        residual[todo] = problem.violations(V, todo).amax(dim=0)
    cols = torch.cat(dense_cols) if dense_cols else todo[:0]
    if cols.numel():
        converged &= problem.fista(V, cols, tol_t[cols], residual, L=L, deadline=deadline)
    return LassoResult(V, rounds, converged, float(residual.max()) if c else 0.0)


def _working_set_sizes(
    support: torch.Tensor, viol: torch.Tensor, cap: int, *, early_dense: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each column's next working-set size, and whether it stays with the working sets (else FISTA).

    The working set is the support plus as many violators as it has (at least
    ``MIN_GROW``). With ``early_dense``, a column with far more violators than any
    working set may hold is dense: it goes to FISTA at once, not after the rounds its
    working set would take to grow there.
    """
    n_support = support.sum(dim=0)
    n_violating = ((viol > 0) & ~support).sum(dim=0)
    n_ws = n_support + torch.minimum(n_violating, n_support.clamp_min(MIN_GROW))
    keep = n_ws <= cap
    if early_dense:
        keep &= n_support + n_violating <= DENSE_VIOLATORS * cap
    return n_ws, keep


@dataclass
class _Columns:
    """The batched problem's tensors, all k × c (the Gram matrix k × k)."""

    A: torch.Tensor
    B: torch.Tensor
    pen: torch.Tensor
    mask: torch.Tensor
    sign: torch.Tensor | None

    @classmethod
    def of(cls, A: torch.Tensor, B: torch.Tensor, penalty, allowed, sign) -> _Columns:
        """Broadcast the penalty and fold constant regulators (zero diagonal) into the mask."""
        k, c = B.shape
        mask = (torch.diagonal(A) > 0)[:, None].expand(k, c).to(B.dtype)
        if allowed is not None:
            mask = mask * (allowed > 0).to(B.dtype)
        pen = torch.as_tensor(penalty, dtype=B.dtype, device=B.device).expand(k, c)
        return cls(A, B, pen, mask, sign)

    def violations(self, V: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Return the KKT violations of V's columns ``cols`` (k × len(cols)), from one dense gradient."""
        k = self.A.shape[0]
        with threads_for(2.0 * k * k * cols.numel(), V.device):
            G = score.gradient(self.A, self.B[:, cols], V[:, cols])
        sign = None if self.sign is None else self.sign[:, cols]
        return kkt_violation(V[:, cols], G, self.pen[:, cols], self.mask[:, cols], sign)

    def fista(
        self,
        V: torch.Tensor,
        cols: torch.Tensor,
        tol: torch.Tensor,
        residual: torch.Tensor,
        *,
        L: float | None,
        deadline: float | None,
    ) -> bool:
        """Solve the dense columns ``cols`` by FISTA from V, in place (and their residuals); return convergence."""
        log.info("working-set lasso: %d dense column(s) handed to FISTA", cols.numel())
        k = self.A.shape[0]
        with threads_for(2.0 * k * k * cols.numel(), V.device):
            res = batched_lasso(
                self.A,
                self.B[:, cols],
                self.pen[:, cols],
                allowed=self.mask[:, cols],
                sign=None if self.sign is None else self.sign[:, cols],
                V0=V[:, cols],
                L=L,
                tol=tol,
                deadline=deadline,
            )
        V[:, cols] = res.V
        residual[cols] = res.max_residual
        return res.converged

    def exact(
        self, V: torch.Tensor, tol: torch.Tensor, residual: torch.Tensor, *, deadline: float | None
    ) -> tuple[torch.Tensor, bool]:
        """Solve by feature-sign search the columns with at most ``FEATURE_SIGN_MAX`` allowed entries.

        Returns the other columns (left to the working sets and FISTA: a factorisation per
        support change of hundreds of coefficients costs more than their dense products)
        and whether the solved ones converged.
        """
        n_allowed = self.mask.sum(dim=0)
        small = torch.nonzero(n_allowed <= FEATURE_SIGN_MAX).flatten()
        if small.numel():
            small = small[allowed_residual_fraction(self.A, self.mask[:, small]) < FEATURE_SIGN_FRACTION]
        converged = self.feature_sign(V, small, tol[small], residual, deadline=deadline) if small.numel() else True
        rest = torch.ones(n_allowed.numel(), dtype=torch.bool, device=V.device)
        rest[small] = False
        return torch.nonzero(rest).flatten(), converged

    def feature_sign(
        self, V: torch.Tensor, cols: torch.Tensor, tol: torch.Tensor, residual: torch.Tensor, *, deadline: float | None
    ) -> bool:
        """Solve columns ``cols`` exactly by feature-sign search (CPU, float64), in place; return convergence."""
        A = self.A.double().cpu().numpy()
        converged = True
        for j, t in zip(cols.tolist(), tol.tolist(), strict=True):
            sign = None if self.sign is None else self.sign[:, j].double().cpu().numpy()
            v, ok, worst = feature_sign_column(
                A,
                self.B[:, j].double().cpu().numpy(),
                self.pen[:, j].double().cpu().numpy(),
                allowed=self.mask[:, j].cpu().numpy() > 0,
                sign=sign,
                v0=V[:, j].double().cpu().numpy(),
                tol=t,
            )
            V[:, j] = torch.as_tensor(v, dtype=V.dtype, device=V.device)
            residual[j] = worst
            converged &= ok
            if deadline is not None and time.monotonic() > deadline:
                return False
        return converged


def allowed_residual_fraction(A: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Per column, the smallest residual variance fraction among its allowed parents.

    For column j with allowed set S, min over i in S of 1 / (A_SS⁻¹)ᵢᵢ: how nearly one
    allowed parent is a linear function of the others (1 for a single parent or an
    orthogonal set, 0 for a singular one). Columns are batched by their number of allowed
    parents, padded with the identity, so the memory stays within ``GATHER_ELEMENTS``.
    """
    counts = allowed.gt(0).sum(dim=0)
    out = torch.ones(counts.numel(), dtype=torch.float64, device=A.device)
    for batch, m in _batches_by_size(counts):
        mask = allowed[:, batch].gt(0).double()
        idx = torch.topk(mask, m, dim=0).indices.T  # c × m: the allowed rows first
        valid = torch.gather(mask.T, 1, idx)
        pair = valid[:, :, None] * valid[:, None, :]
        G = A[idx[:, :, None], idx[:, None, :]].double() * pair + torch.diag_embed(1.0 - valid)
        factor, info = torch.linalg.cholesky_ex(G)
        eye = torch.eye(m, dtype=G.dtype, device=G.device).expand_as(G)
        inv_diag = torch.linalg.solve_triangular(factor, eye, upper=False).square().sum(dim=1)
        frac = torch.where(valid > 0, 1.0 / inv_diag.clamp_min(1e-300), 1.0).amin(dim=1)
        out[batch] = torch.where((info == 0) & torch.isfinite(frac), frac, 0.0)
    return out


def _batches_by_size(sizes: torch.Tensor):
    """Yield (indices, m): columns sorted by size, batched so that c × m² stays within ``GATHER_ELEMENTS``."""
    order = torch.argsort(sizes)
    listed = sizes[order].tolist()
    start = 0
    while start < len(listed):
        m = max(int(listed[start]), 1)
        stop = start
        # grow the batch while its padded size fits the budget
        while stop < len(listed) and (stop - start + 1) * max(int(listed[stop]), 1) ** 2 <= GATHER_ELEMENTS:
            m = max(int(listed[stop]), 1)
            stop += 1
        stop = max(stop, start + 1)
        yield order[start:stop], m
        start = stop


def _solve_working_sets(
    prob: _Columns,
    V: torch.Tensor,
    cols: torch.Tensor,
    *,
    priority: torch.Tensor,
    n_ws: torch.Tensor,
    tol: torch.Tensor,
    max_sweeps: int,
) -> None:
    """Solve the lasso restricted to each column's working set, in place in V.

    ``n_ws``, ``tol`` and the columns of ``priority`` are per entry of ``cols``; ``tol`` is
    the largest coordinate step at which a column's inner solve stops.

    The working set of column ``cols[j]`` is its ``n_ws[j]`` highest-priority coefficients
    (the support first). Columns are sorted by working-set size and batched so that the
    gathered Gram matrices stay within ``GATHER_ELEMENTS``.
    """
    for batch, m in _batches_by_size(n_ws):
        _coordinate_descent(
            prob,
            V,
            cols[batch],
            priority=priority[:, batch],
            n_ws=n_ws[batch],
            m=m,
            tol=tol[batch],
            max_sweeps=max_sweeps,
        )


def _coordinate_descent(
    prob: _Columns,
    V: torch.Tensor,
    cols: torch.Tensor,
    *,
    priority: torch.Tensor,
    n_ws: torch.Tensor,
    m: int,
    tol: torch.Tensor,
    max_sweeps: int,
) -> None:
    """Cyclic coordinate descent on one batch of working sets of at most m coefficients.

    Sweeps follow glmnet's schedule: the slots holding a nonzero until they settle, then
    every slot once to see whether anything new enters; a column whose full sweep moved
    nothing by more than its ``tol`` is finished and leaves the batch.
    """
    A, B, pen, mask, sign = prob.A, prob.B, prob.pen, prob.mask, prob.sign
    idx = torch.topk(priority, m, dim=0).indices.T  # c × m coefficient rows, support first
    valid = (torch.arange(m, device=V.device)[None, :] < n_ws[:, None]).to(V.dtype)
    col = cols[:, None].expand_as(idx)
    A_s = A[idx[:, :, None], idx[:, None, :]] * (valid[:, :, None] * valid[:, None, :])
    ok = mask[idx, col] * valid
    # the diagonal is 1 on a correlation matrix; dividing keeps any PSD A exact
    dg = torch.where(valid > 0, torch.diagonal(A_s, dim1=1, dim2=2), torch.ones_like(valid)).clamp_min(1e-12)
    # coordinate i's exact minimiser is (bᵢ − Σ_{j≠i} Aᵢⱼ vⱼ) / Aᵢᵢ, soft-thresholded at tᵢ / Aᵢᵢ:
    # rows scaled by 1 / Aᵢᵢ with a zero diagonal make it one dot product and one clamp
    A_off = A_s / dg[:, :, None]
    A_off.diagonal(dim1=1, dim2=2).zero_()
    lo, hi = prox_bounds(pen[idx, col] / dg, ok, None if sign is None else sign[idx, col])
    state = {
        "A_off": A_off,
        "b_dg": B[idx, col] * valid / dg,
        "lo": lo,
        "hi": hi,
        "dg": dg,
        "ok": ok,
        "v": V[idx, col] * ok,
        "tol": tol,
        "idx": idx,
        "col": col,
    }
    V[:, cols] = 0.0
    slot = torch.arange(m, device=V.device)
    full = True
    with threads_for(2.0 * A_s.numel(), V.device):
        for _ in range(max_sweeps):
            v = state["v"]
            live_slots = slot[(v != 0).any(dim=0)]
            last = m if full else (int(live_slots.max()) + 1 if live_slots.numel() else 0)
            biggest = _sweep(state, last)
            settled = biggest <= state["tol"]
            if full and bool(settled.any()):
                _polish(state, settled)
                _write_back(V, state, settled)
                if bool(settled.all()):
                    return
                state = {key: x[~settled] for key, x in state.items()}
                settled = settled[~settled]
            full = bool(settled.all())
    everything = torch.ones_like(state["tol"], dtype=torch.bool)
    _polish(state, everything)
    _write_back(V, state, everything)


def _polish(state: dict, rows: torch.Tensor) -> None:
    """Solve each column of the batch ``rows`` exactly on its support, keeping its signs.

    Where coordinate descent stopped, the support and signs are usually final, and the
    optimum on them is one linear system, A_SS v_S = b_S − t_S sign(v_S). Genes nearly
    determined by others make A_SS ill-conditioned; there coordinate descent crawls
    (each sweep shrinks the error by about the squared correlation) while the system is
    solved in one step. The solution is taken (in float64) only where every sign holds,
    so it is the exact minimiser on that face and never worse than the sweeps' result.
    """
    live = (state["v"][rows] != 0).any(dim=0)  # the slots any support uses (the first ones, mostly)
    if not bool(live.any()):
        return
    v = state["v"][rows][:, live].double()
    on = v != 0
    onf = on.double()
    dg = state["dg"][rows][:, live].double()
    # back from rows scaled by 1 / Aᵢᵢ to the symmetric A_SS (Cholesky reads one triangle)
    eye = torch.diag_embed(torch.ones_like(v))
    A_ss = (state["A_off"][rows][:, live][:, :, live].double() + eye) * dg[:, :, None]
    M = A_ss * (onf[:, :, None] * onf[:, None, :]) + torch.diag_embed(1.0 - onf)  # the identity off the support
    bound = torch.where(v > 0, state["hi"][rows][:, live], state["lo"][rows][:, live]).double()
    rhs = torch.where(on, dg * (state["b_dg"][rows][:, live].double() - bound), 0.0)
    factor, info = torch.linalg.cholesky_ex(M)  # A_SS is positive definite unless singular
    sol = torch.cholesky_solve(rhs[:, :, None], factor)[:, :, 0]
    good = (info == 0) & torch.isfinite(sol).all(dim=1) & (~on | (torch.sign(sol) == torch.sign(v))).all(dim=1)
    if bool(good.any()):
        which = torch.nonzero(rows).flatten()[good]
        polished = torch.zeros_like(state["v"][which])
        polished[:, live] = sol[good].to(polished.dtype)
        state["v"][which] = polished


def _sweep(state: dict, last: int) -> torch.Tensor:
    """One cyclic pass over slots 0..last-1 of every column; return each column's largest step.

    The step of a coordinate is its change times Aᵢᵢ (in B's units); a sweep updates each
    slot once, so the largest step is read off the whole sweep's change.
    """
    if not last:
        return torch.zeros_like(state["tol"])
    A_off, b_dg, v, lo, hi = state["A_off"], state["b_dg"], state["v"], state["lo"], state["hi"]
    before = v[:, :last].clone()
    for i in range(last):
        z = b_dg[:, i] - torch.linalg.vecdot(A_off[:, i, :], v)
        v[:, i] = z - z.clamp(lo[:, i], hi[:, i])  # the prox (penalty.prox_bounds)
    return ((v[:, :last] - before).abs() * state["dg"][:, :last]).amax(dim=1)


def _write_back(V: torch.Tensor, state: dict, rows: torch.Tensor) -> None:
    """Scatter the working-set weights of the batch ``rows`` into V (whose columns were zeroed)."""
    V[state["idx"][rows], state["col"][rows]] = state["v"][rows] * state["ok"][rows]
