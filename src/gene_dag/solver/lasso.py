"""Batched masked lasso on a shared Gram matrix: every target column solved at once.

For target j:  min_v ½ vᵀ A v − bⱼᵀ v + Σᵢ tᵢⱼ |vᵢ|   (A = regulator correlation matrix).

Columns are independent, so a block of columns is one matrix product per FISTA step,
which BLAS and GPUs run at full speed. A is a correlation matrix (regulators rescaled to
unit variance), so one step size 1/λmax(A) suits every column, and columns that have
converged leave the working set (shrinking), so late iterations cost little.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from gene_dag.solver import score
from gene_dag.solver.penalty import prox_bounds
from gene_dag.solver.threads import threads_for

if TYPE_CHECKING:
    from gene_dag.solver.problem import Problem

log = logging.getLogger(__name__)


def lipschitz(A: torch.Tensor, iters: int = 100, seed: int = 0) -> float:
    """Largest eigenvalue of the symmetric PSD matrix A by power iteration (with margin)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.rand(A.shape[0], 1, generator=gen, dtype=torch.float64).to(A.device, A.dtype)
    lam = 0.0
    for _ in range(iters):
        y = A @ x
        new = float(y.norm())
        x = y / max(new, 1e-30)
        if abs(new - lam) <= 1e-6 * new:
            lam = new
            break
        lam = new
    return 1.01 * lam + 1e-12


@dataclass
class LassoResult:
    """Weights, iterations, whether every column converged, and the largest last step."""

    V: torch.Tensor
    iterations: int
    converged: bool
    max_residual: float
    #: each column's residual variance at V (float64), where :func:`lasso_columns` computed it
    residual_variance: torch.Tensor | None = None


#: Elements of one FISTA block (k × columns): its half-dozen live tensors then stay in the
#: CPU's cache between the passes of a step, which otherwise cost as much as the product.
FISTA_BLOCK_ELEMENTS = 2**19


def batched_lasso(
    A: torch.Tensor,
    B: torch.Tensor,
    penalty: torch.Tensor,
    *,
    allowed: torch.Tensor | None = None,
    sign: torch.Tensor | None = None,
    V0: torch.Tensor | None = None,
    L: float | None = None,
    tol: torch.Tensor | float = 1e-4,
    max_iter: int = 5000,
    check_every: int = 10,
    deadline: float | None = None,
) -> LassoResult:
    """FISTA with adaptive restart on all columns of B (k × c), block of columns by block.

    ``penalty`` (k × c, or broadcastable) is the L1 weight per entry; ``tol`` the
    per-column tolerance (c,) on the gradient-mapping norm, in the units of B.
    Returns when every column has converged, at ``max_iter`` iterations of a block, or
    past ``deadline`` (a time.monotonic() value; later blocks then keep ``V0``).
    Columns are independent, so on the CPU they are solved in blocks of about
    ``FISTA_BLOCK_ELEMENTS`` that stay in cache; on a GPU in one block.
    """
    k, c = B.shape
    L = L or lipschitz(A)
    V = torch.zeros_like(B) if V0 is None else V0.clone()
    tol_t = torch.as_tensor(tol, dtype=B.dtype, device=B.device).expand(c)
    pen = torch.as_tensor(penalty, dtype=B.dtype, device=B.device)
    residual = torch.full((c,), math.inf, dtype=B.dtype, device=B.device)
    width = c if B.device.type == "cuda" else max(64, FISTA_BLOCK_ELEMENTS // max(k, 1))
    iterations, converged, logged = 0, True, time.monotonic()
    for a in range(0, c, width):
        cols = slice(a, min(c, a + width))
        it, done = _fista_block(
            A,
            B[:, cols],
            *(_columns(x, cols) for x in (pen, allowed, sign)),
            V=V[:, cols],
            tol=tol_t[cols],
            residual=residual[cols],
            L=L,
            max_iter=max_iter,
            check_every=check_every,
            deadline=deadline,
        )
        iterations, converged = max(iterations, it), converged and done
        if time.monotonic() - logged > 10.0:
            logged = time.monotonic()
            log.info("lasso (FISTA): %d of %d columns done, up to %d iterations a block", cols.stop, c, iterations)
        if deadline is not None and time.monotonic() > deadline and cols.stop < c:
            converged = False
            break
    return LassoResult(V, iterations, converged, float(residual.max()) if c else 0.0)


def _columns(x: torch.Tensor | None, cols: slice | torch.Tensor) -> torch.Tensor | None:
    """Return the columns ``cols`` of a k × c tensor (a broadcast k × 1 or scalar one as it is)."""
    if x is None or x.dim() == 0 or x.shape[-1] == 1:
        return x
    return x[cols] if x.dim() == 1 else x[:, cols]


def _fista_block(
    A: torch.Tensor,
    B: torch.Tensor,
    pen: torch.Tensor,
    allowed: torch.Tensor | None,
    sign: torch.Tensor | None,
    *,
    V: torch.Tensor,
    tol: torch.Tensor,
    residual: torch.Tensor,
    L: float,
    max_iter: int,
    check_every: int,
    deadline: float | None,
) -> tuple[int, bool]:
    """FISTA on one block of columns, writing ``V`` and ``residual`` in place; (iterations, converged).

    Each column restarts its momentum on its own (gradient restart, O'Donoghue & Candès
    2015), and leaves the block once its gradient-mapping step is within its tolerance.
    """
    lo, hi = prox_bounds(pen / L, allowed, sign)
    work = torch.arange(B.shape[1], device=B.device)
    B_L, Vw, tol_w = B / L, V.clone(), tol
    Y = Vw.clone()
    t = torch.ones(B.shape[1], dtype=B.dtype, device=B.device)
    it = 0
    while it < max_iter and work.numel() > 0:
        it += 1
        Z = torch.addmm(B_L, A, Y, alpha=-1.0 / L).add_(Y)  # Y − (A Y − B) / L
        Vn = Z.sub_(torch.clamp(Z, lo, hi))  # the prox (penalty.prox_bounds)
        D = Vn - Vw
        restart = Y.sub_(Vn).mul_(D).sum(dim=0) > 0  # Y is rebuilt below
        t = torch.where(restart, torch.ones_like(t), t)
        t_next = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
        Y = torch.addcmul(Vn, D, ((t - 1.0) / t_next)[None, :])
        Vw, t = Vn, t_next
        if it % check_every == 0 or it == max_iter:
            step = D.abs().amax(dim=0) * L
            residual[work] = step
            V[:, work] = Vw
            done = step <= tol_w
            if bool(done.any()):
                keep = ~done
                work, tol_w, t = work[keep], tol_w[keep], t[keep]
                B_L, lo, hi = (_columns(x, keep) for x in (B_L, lo, hi))
                Vw, Y = Vw[:, keep], Y[:, keep]
            if deadline is not None and time.monotonic() > deadline:
                break
    V[:, work] = Vw
    return it, work.numel() == 0


#: Solves of one batch at most: the first at the tolerance relative to each target's sd,
#: then tightened to its residual sd where that is ten times smaller.
RESIDUAL_TOL_ROUNDS = 3
#: The tightest relative tolerance a float type resolves.
RESIDUAL_TOL_FLOOR = {torch.float32: 1e-6, torch.float64: 1e-12}


def lasso_columns(
    prob: Problem,
    columns: np.ndarray,
    allowed: np.ndarray,
    V0: torch.Tensor,
    *,
    L: float | None = None,
    deadline: float | None = None,
    lambda1: float | None = None,
    penalty: np.ndarray | None = None,
) -> LassoResult:
    """Solve the batched lasso of ``prob``'s target ``columns`` on the given ``allowed`` k × c block.

    Every lasso of the solver (the independent columns, the order
    refit, the automatic λ path) is this call: penalties, signs and per-column
    tolerances come from ``prob``; ``lambda1`` overrides the settings' λ, ``penalty``
    (k × c, scaled space) the whole L1 weight block.
    """
    dev, dtype = prob.device, prob.dtype
    sign = prob.sign(columns)
    pen = prob.penalty(columns, lambda1) if penalty is None else penalty
    args = (prob.A, prob.B[:, columns], torch.as_tensor(pen, dtype=dtype, device=dev))
    variances = torch.as_tensor(prob.variances[columns], dtype=torch.float64, device=dev)
    tol = prob.s.tuning.lasso_tol * torch.sqrt(variances)
    options = {
        "allowed": torch.as_tensor(allowed, dtype=dtype, device=dev),
        "sign": None if sign is None else torch.as_tensor(sign, dtype=dtype, device=dev),
        "L": L,
        "deadline": deadline,
    }
    method = lasso_method(prob.s.tuning.lasso_method, dev)
    for _ in range(RESIDUAL_TOL_ROUNDS):
        if method == "working_set":
            from gene_dag.solver.working_set import working_set_lasso

            res = working_set_lasso(*args, V0=V0, tol=tol.to(dtype), **options)  # sets its own threads
        else:
            with threads_for(2.0 * prob.k * prob.k * len(columns), dev):
                res = batched_lasso(*args, V0=V0, tol=tol.to(dtype), **options)
        # The tolerance is relative to the target's sd; a target its regulators almost
        # determine has a residual sd far below it, and the weights the solve leaves
        # inexact would be judged against that residual: tighten and solve again.
        res.residual_variance = score.residual_variance(score.product(prob.A, res.V), args[1], res.V, variances)
        residual_sd = torch.sqrt(res.residual_variance)
        tighter = torch.maximum(
            prob.s.tuning.lasso_tol * residual_sd, RESIDUAL_TOL_FLOOR[dtype] * torch.sqrt(variances)
        )
        if not bool((tighter < 0.1 * tol).any()) or (deadline is not None and time.monotonic() > deadline):
            break
        tol, V0 = torch.minimum(tol, tighter), res.V
    return res


def lasso_method(method: str, device: torch.device) -> str:
    """Resolve ``Tuning.lasso_method`` ("auto": working sets on the CPU, FISTA on a GPU)."""
    if method == "auto":
        return "fista" if device.type == "cuda" else "working_set"
    if method not in ("fista", "working_set"):
        raise ValueError(f"lasso_method must be 'auto', 'fista' or 'working_set', not {method!r}")
    return method
