"""Automatic λ: a warm-started lasso path on the statistics, selected by the extended BIC.

Each target's regression on its allowed regulators (its neighbourhood, without the
acyclicity constraint) is solved along a geometric path of λ, from the smallest λ that
selects nothing downwards, each point warm-started from the last. The criterion is the
extended BIC (Chen & Chen 2008; Foygel & Drton 2010) of the Gaussian linear model,
summed over targets, with each target's coefficients refitted without penalty on its
selected support (the lasso's shrinkage would otherwise favour larger supports)::

    EBIC(λ) = Σ_j  n log(RSS_j / var_j) + |S_j| (log n + 2 γ log p_j)

with n cells, S_j the support of target j, p_j its number of allowed regulators. The
extra 2γ log p_j term keeps the criterion consistent when p_j grows with n, as it does
for thousands of genes; γ = 0 is BIC. The sum is the criterion of the structural
equation model whose parents are the neighbourhoods, so one λ is chosen for the whole
network, and the constrained solve then runs at that λ. The path needs only the
statistics, so it costs no pass over the cells.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
import scipy.linalg
import torch

from gene_dag.prior import EdgeMask
from gene_dag.solver import score
from gene_dag.solver.lasso import lasso_columns
from gene_dag.solver.penalty import prox_l1_masked
from gene_dag.solver.problem import Problem
from gene_dag.solver.settings import SolverSettings

log = logging.getLogger(__name__)


@dataclass
class LambdaPath:
    """The λ values tried, their criterion, and the neighbourhood coefficients at the choice.

    ``V_chosen`` and ``V_last`` are k × d in the solver's scaled space (regulators at unit
    variance), at the chosen λ and at the last λ of the path.
    """

    lambdas: np.ndarray
    criterion: np.ndarray
    n_edges: np.ndarray
    chosen: int
    complete: bool  # the path reached its smallest λ (not stopped after the minimum)
    V_chosen: torch.Tensor
    V_last: torch.Tensor
    automatic: bool = True  # False: λ was the user's, the path only its two points
    floor: float = 0.0  # the noise-level λ below which the DAG's λ does not go
    lambda1: float = math.nan  # the DAG's λ: max(criterion's choice, floor); set in __post_init__

    def __post_init__(self) -> None:
        """Default the DAG's λ to the criterion's choice."""
        if math.isnan(self.lambda1):
            self.lambda1 = float(self.lambdas[self.chosen])

    @property
    def at_end(self) -> str | None:
        """``"largest"`` or ``"smallest"`` when the choice sits at an end of the path, else None."""
        if not self.automatic:
            return None
        if self.chosen == 0:
            return "largest"
        if self.complete and self.chosen == len(self.lambdas) - 1 and self.floor < self.lambdas[self.chosen]:
            return "smallest"
        return None

    def record(self) -> dict:
        """Return the path as ``uns`` stores it (lists of floats)."""
        return {
            "lambda1_selected": self.lambda1,
            "lambda1_automatic": self.automatic,
            "lambda1_ebic": float(self.lambdas[self.chosen]),
            "lambda1_noise_floor": float(self.floor),
            "lambda_path": [float(v) for v in self.lambdas],
            "lambda_path_ebic": [float(v) for v in self.criterion],
            "lambda_path_edges": [int(v) for v in self.n_edges],
            "lambda_at_path_end": self.at_end or "no",
        }


def lambda_max(prob: Problem) -> float:
    """Return the smallest λ at which every penalised neighbourhood coefficient is 0."""
    top = 0.0
    for a in range(0, prob.d, prob.column_block_size()):
        cols = np.arange(a, min(prob.d, a + prob.column_block_size()))
        allowed = prob.allowed(cols) & ~prob.required(cols)
        pen = np.broadcast_to(prob.penalty(cols, 1.0), allowed.shape)
        live = allowed & (pen > 0)
        if live.any():
            B = prob.B[:, cols].cpu().numpy().astype(np.float64)
            top = max(top, float(np.max(np.abs(B[live]) / pen[live])))
    return top


def select_lambda(
    cov_rows: np.ndarray, variances: np.ndarray, mask: EdgeMask, settings: SolverSettings, n_cells: int
) -> LambdaPath:
    """Choose λ for ``settings`` from the statistics (see the module docstring).

    Parameters
    ----------
    cov_rows, variances, mask
        As for :func:`gene_dag.solver.driver.solve`.
    settings
        The solve's settings; ``tuning`` gives the path's length, its ratio, its patience
        and the EBIC's γ.
    n_cells
        The number of cells the statistics come from.
    """
    t = settings.tuning
    prob = Problem(cov_rows, variances, mask, replace(settings, lambda1=1.0))
    top = lambda_max(prob)
    if not top > 0:  # nothing to select: every candidate is uncorrelated with its target
        zero = torch.zeros_like(prob.B)
        return LambdaPath(np.array([0.0]), np.array([0.0]), np.array([0]), 0, True, zero, zero)
    lambdas = top * np.geomspace(1.0, t.path_ratio, t.path_length)
    V = torch.zeros_like(prob.B)
    criterion = Ebic(prob, n_cells, t.ebic_gamma)
    tried, crit, edges = [], [], []
    best, V_best = 0, V.clone()
    for i, lam in enumerate(lambdas):
        V = neighbourhood_fit(prob, float(lam), V)
        value, count = criterion(V)
        tried.append(lam), crit.append(value), edges.append(count)
        log.info("lambda path %d/%d: lambda1 %.4g, %d edges, EBIC %.6g", i + 1, len(lambdas), lam, count, value)
        if value < crit[best] or i == 0:
            best, V_best = i, V.clone()
        elif i - best >= t.path_patience:
            break
    complete = len(tried) == len(lambdas)
    floor = noise_floor(prob, n_cells) if settings.standardize else 0.0
    lam = float(tried[best])
    if floor > lam:
        lam, V_best = floor, neighbourhood_fit(prob, floor, V_best)
    return LambdaPath(
        np.array(tried), np.array(crit), np.array(edges), best, complete, V_best, V, floor=floor, lambda1=lam
    )


def noise_floor(prob: Problem, n_cells: int) -> float:
    """Return the noise-level λ, sqrt(2 log p / n), p the most candidate parents of any target.

    On standardised genes this is the penalty at which a candidate independent of its
    unit-variance target rarely enters (Bickel, Ritov & Tsybakov 2009). The criterion
    judges which dependencies are real; the constrained solve also needs a penalty at
    least this large to prefer the sparser of the DAGs that explain them, and the sparser
    DAG is the one whose directions are right more often: on standardised data, below
    it, wrongly oriented edges bring the extra edges that compensate them.
    """
    p = max(int(prob.mask.n_regulators) - 1, 2)
    return math.sqrt(2.0 * math.log(p) / max(n_cells, 2))


def at_lambda(cov_rows: np.ndarray, variances: np.ndarray, mask: EdgeMask, settings: SolverSettings) -> LambdaPath:
    """Fit the neighbourhoods at the user's λ; rank the rest by the step each would take at λ / 2.

    With λ given there is nothing to choose, so no criterion is computed (``nan`` in the
    record; on a dense raw problem it cost minutes of per-target least squares). The
    candidates below λ are ranked without a second fit: the coordinate step each would
    take at λ / 2 from the solution at λ (:func:`half_lambda_step`), one dense product.
    """
    lam = float(settings.lambda1)
    prob = Problem(cov_rows, variances, mask, settings)
    V = neighbourhood_fit(prob, lam, torch.zeros_like(prob.B))
    V_half = half_lambda_step(prob, lam, V)
    edges = [int(torch.count_nonzero(W)) for W in (V, V_half)]
    return LambdaPath(
        np.array([lam, 0.5 * lam]),
        np.full(2, np.nan),
        np.array(edges),
        0,
        True,
        V,
        V_half,
        automatic=False,
    )


def half_lambda_step(prob: Problem, lam: float, V: torch.Tensor) -> torch.Tensor:
    """Return V with each of its zeros replaced by one coordinate step at ``lam / 2``.

    For a coefficient at 0 in the solution at λ, the step is soft(-g, λ_ij / 2) / A_ii,
    g the score's gradient: the coefficient it would first take as λ is halved, ordered
    as the KKT violations are (the λ at which each candidate would enter the path).
    """
    out = V.clone()
    bs = prob.column_block_size()
    diag = torch.diagonal(prob.A).clamp_min(1e-12)[:, None]
    for a in range(0, prob.d, bs):
        cols = np.arange(a, min(prob.d, a + bs))
        Vc = V[:, cols]
        grad = score.gradient(prob.A, prob.B[:, cols], Vc)
        pen = torch.as_tensor(prob.penalty(cols, 0.5 * lam), dtype=grad.dtype, device=grad.device)
        allowed = torch.as_tensor(prob.allowed(cols), dtype=grad.dtype, device=grad.device)
        sign = prob.sign(cols)
        sign = None if sign is None else torch.as_tensor(sign, dtype=grad.dtype, device=grad.device)
        step = prox_l1_masked(-grad / diag, pen / diag, allowed, sign)
        out[:, cols] = torch.where(Vc == 0, step, Vc)
    return out


def neighbourhood_fit(prob: Problem, lam: float, V0: torch.Tensor) -> torch.Tensor:
    """Neighbourhood lasso of every target at ``lam``, warm-started from ``V0``."""
    V = V0.clone()
    bs = prob.column_block_size()
    for a in range(0, prob.d, bs):
        cols = np.arange(a, min(prob.d, a + bs))
        res = lasso_columns(prob, cols, prob.allowed(cols), V0[:, cols], lambda1=lam)
        V[:, cols] = res.V
    return V


class Ebic:
    """The extended BIC of neighbourhood supports, for every point of one path.

    The float64 statistics and each target's number of allowed regulators are taken once
    per path, not once per λ.
    """

    def __init__(self, prob: Problem, n_cells: int, gamma: float):
        self.prob, self.n_cells = prob, n_cells
        self.A = prob.A.cpu().numpy().astype(np.float64)
        self.B = prob.B.cpu().numpy().astype(np.float64)
        bs = prob.column_block_size()
        self.p = np.concatenate(
            [prob.allowed(np.arange(a, min(prob.d, a + bs))).sum(axis=0) for a in range(0, prob.d, bs)]
        )
        log_n = math.log(max(n_cells, 2))
        self.cost = [log_n + 2.0 * gamma * math.log(max(int(v), 1)) for v in self.p]

    def __call__(self, V: torch.Tensor) -> tuple[float, int]:
        """Return the criterion of the supports in ``V`` (k × d, scaled) and their edge count."""
        Vn = V.cpu().numpy()
        total, count = 0.0, 0
        for j in range(self.prob.d):
            var = self.prob.variances[j]
            if not var > 0:
                continue
            S = np.flatnonzero(Vn[:, j])
            rss = var
            if S.size:
                b = self.B[S, j]
                rss = max(var - float(b @ _least_squares(self.A[np.ix_(S, S)], b)), 1e-12 * var)
            total += self.n_cells * math.log(rss / var) + S.size * self.cost[j]
            count += S.size
        return total, count


def _least_squares(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve A x = b for a correlation block A: by Cholesky, by least squares when singular.

    Cholesky is several times faster than the SVD behind ``lstsq`` on the dense supports of
    a small λ, where the criterion would otherwise cost more than the lasso it judges.
    """
    try:
        factor = scipy.linalg.cho_factor(A, check_finite=False)
        return scipy.linalg.cho_solve(factor, b, check_finite=False)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(A, b, rcond=None)[0]
