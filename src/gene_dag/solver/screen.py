"""The candidate screen: a bounded set of possible parents per gene, for cores too large to solve whole.

Without a regulator list every gene may regulate every other, the allowed graph is one
cycle core of d genes, and the constrained problem is dense. The screen makes it sparse
before anything else runs (the λ path, the lasso stage, the core):

1. neighbourhood selection (Meinshausen & Bühlmann 2006) on the correlation scale: each
   gene's lasso regression on every gene the prior allows as its parent, at
   λ_s = ``screen_lambda_factor`` × sqrt(2 log p / n), warm-started along a short path
   from the λ that selects nothing;
2. at most ``screen_max_parents`` coefficients per gene, the largest |β|;
3. symmetrised: i and j are candidates of each other when either regression selects
   the other, because a regression cannot tell a parent from a child.

Guarantee and failure mode. In a linear Gaussian DAG model a gene's neighbourhood is its
Markov blanket (parents, children and the children's other parents). The lasso
penalises coefficients, not partial correlations, so a parent can be screened out when
its coefficient is small on the correlation scale even though its partial correlation
with the gene is large: a gene its other parents almost determine has a small residual,
and a parent that explains much of that residual still has a small coefficient.
``Tuning.screen_scaled`` scales each gene's penalty by its residual standard deviation
(the scaled lasso), which keeps such parents, at the cost of more candidates.
After the constrained solve, the driver re-solves every target's lasso over every
allowed parent that comes earlier in the causal order found (``refit.complete_in_order``),
so at the end no edge outside the screen that agrees with that order violates the
lasso's optimality conditions; the edges it brings back from outside the screen are
counted in ``uns`` (``screen_edges_added``). An order the screen got wrong is not
repaired.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import torch

from gene_dag.prior import EdgeMask
from gene_dag.solver import score
from gene_dag.solver.driver import cycle_core
from gene_dag.solver.lambda_path import lambda_max, noise_floor
from gene_dag.solver.lasso import lasso_columns
from gene_dag.solver.problem import Problem
from gene_dag.solver.settings import SolverSettings

log = logging.getLogger(__name__)

#: Points of the warm-started path from the λ that selects nothing down to λ_s: a few keep
#: each working set small, and the coordinate descent fast.
SCREEN_PATH_POINTS = 5


@dataclass
class Screen:
    """The screened mask and what the screen did (for ``uns``)."""

    mask: EdgeMask
    info: dict


def screen_mask(
    cov_rows: np.ndarray, variances: np.ndarray, mask: EdgeMask, settings: SolverSettings, n_cells: int
) -> Screen | None:
    """Screen the candidate parents of every gene (module docstring), or None when not needed.

    Parameters
    ----------
    cov_rows, variances, mask
        As for :func:`gene_dag.solver.driver.solve` (covariances or correlations).
    settings
        The solve's settings; ``tuning.screen`` says whether to screen (``auto``: when the
        allowed graph's cycle core exceeds ``tuning.full_core_max`` genes).
    n_cells
        The number of cells behind the statistics (for the noise level).
    """
    t = settings.tuning
    if t.screen == "off" or mask.candidates is not None:
        return None
    t0 = time.monotonic()
    corr, unit = correlation_rows(cov_rows, variances, mask)
    prob = Problem(corr, unit, mask, replace(settings, lambda1=1.0, standardize=True))
    core = cycle_core(prob)
    if t.screen == "auto" and core.size <= t.full_core_max:
        return None
    lam = t.screen_lambda_factor * noise_floor(prob, n_cells)
    V = _screen_path(prob, lam, scaled=t.screen_scaled)
    candidates = _symmetric_top(V, mask, t.screen_max_parents)
    screened = replace(mask, candidates=candidates)
    per_gene = np.asarray(candidates.sum(axis=0)).ravel()
    info = {
        "screen_lambda": float(lam),
        "screen_candidate_edges": int(candidates.nnz),
        "screen_candidates_mean": float(per_gene.mean()),
        "screen_candidates_max": int(per_gene.max(initial=0)),
        "screen_time_s": time.monotonic() - t0,
    }
    log.info(
        "candidate screen: cycle core of %d genes; lambda %.4g on correlations, %d candidate edges "
        "(%.1f per gene, at most %d), %.1f s",
        core.size,
        lam,
        info["screen_candidate_edges"],
        info["screen_candidates_mean"],
        info["screen_candidates_max"],
        info["screen_time_s"],
    )
    return Screen(screened, info)


def _screen_path(prob: Problem, lam: float, *, scaled: bool) -> torch.Tensor:
    """Neighbourhood lasso of every gene down to ``lam``, warm-started along a short path.

    ``scaled``: each gene's penalty is ``lam`` times its residual standard deviation (the
    scaled lasso, Sun & Zhang 2012), from the previous point of the path, and the last λ is
    repeated so that the two settle together. The noise level sqrt(2 log p / n) is one of
    the residual, not of the gene: a gene almost determined by its strongest parents has a
    small residual, and a weak parent that explains much of it (a large partial
    correlation, a small coefficient) falls below a penalty in units of the gene's whole
    variance. It keeps more true edges, and more candidates.
    """
    V = torch.zeros_like(prob.B)
    resid_sd = np.ones(prob.d)
    top = max(lambda_max(prob), lam)
    points = [*np.geomspace(top, lam, SCREEN_PATH_POINTS), *((lam, lam) if scaled else ())]
    bs = prob.column_block_size()
    for point in points:
        for a in range(0, prob.d, bs):
            cols = np.arange(a, min(prob.d, a + bs))
            pen = np.broadcast_to(prob.penalty(cols, float(point)), (prob.k, cols.size)) * resid_sd[cols][None, :]
            res = lasso_columns(prob, cols, prob.allowed(cols), V[:, cols], penalty=pen)
            V[:, cols] = res.V
            if not scaled:
                continue
            f, _ = score.value_and_gradient(prob.A, prob.B[:, cols].T[:, :, None], res.V.T[:, :, None])
            # the residual variance of a unit-variance target is 1 + 2 f(v) at its fit v
            resid_sd[cols] = np.sqrt(np.clip(1.0 + 2.0 * f.double().cpu().numpy(), 1e-4, 1.0))
    return V


def correlation_rows(cov_rows: np.ndarray, variances: np.ndarray, mask: EdgeMask) -> tuple[np.ndarray, np.ndarray]:
    """Return the regulator rows of the correlation matrix and unit variances (0 for constant genes)."""
    k = cov_rows.shape[0]
    reg_var = np.asarray(cov_rows[np.arange(k), mask.regulators], dtype=np.float64)
    reg_sd = np.sqrt(np.where(reg_var > 0, reg_var, 1.0))
    var = np.asarray(variances, dtype=np.float64)
    sd = np.sqrt(np.where(var > 0, var, 1.0))
    corr = np.asarray(cov_rows, dtype=np.float64) / reg_sd[:, None] / sd[None, :]
    return corr, np.where(var > 0, 1.0, 0.0)


def _symmetric_top(V: torch.Tensor, mask: EdgeMask, max_parents: int) -> sp.csr_matrix:
    """Return the k × d candidate pattern: each column's largest |β| (at most ``max_parents``), symmetrised."""
    k, d = V.shape
    top = min(max_parents, k)
    mag, rows = V.abs().topk(top, dim=0)
    keep = (mag > 0).cpu().numpy()
    rows = rows.cpu().numpy()[keep]
    cols = np.broadcast_to(np.arange(d), (top, d))[keep]
    genes = mask.regulators[rows]
    G = sp.csr_matrix((np.ones(rows.size, dtype=bool), (genes, cols)), shape=(d, d))
    G = (G + G.T).tocsr()  # a regression cannot tell a parent from a child
    return sp.csr_matrix(G[mask.regulators, :], dtype=bool)


def widen_screen(mask: EdgeMask, edges: sp.spmatrix) -> EdgeMask:
    """Add k × d edges (regulator rows), in both directions, to a screened mask's candidates."""
    coo = sp.coo_matrix(edges)
    d = mask.n_genes
    G = sp.csr_matrix((np.ones(coo.nnz, dtype=bool), (mask.regulators[coo.row], coo.col)), shape=(d, d))
    G = (G + G.T).tocsr()[mask.regulators, :]
    return replace(mask, candidates=sp.csr_matrix(mask.candidates + G, dtype=bool))
