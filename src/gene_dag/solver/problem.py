"""The problem the stages share: the statistics and the prior's mask, on the device, rescaled.

Every stage works in the rescaled space V = diag(σ_R) W, in which the regulator Gram
matrix A is a correlation matrix (docs/design.md, section 5): the problem is the same,
only better conditioned. Blocks of the mask (allowed edges, penalties, signs, required
edges) are built densely on demand for the columns a stage needs, so memory follows the
block size, not d².
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import torch

from gene_dag.prior import EdgeMask
from gene_dag.solver.settings import SolverSettings, resolve_device


class Problem:
    """Statistics and mask moved to the device in the rescaled space (see the module docstring)."""

    def __init__(self, cov_rows: np.ndarray, variances: np.ndarray, mask: EdgeMask, s: SolverSettings):
        self.mask = mask
        self.s = s
        self.device = resolve_device(s.device)
        self.k, self.d = cov_rows.shape
        self.R = np.asarray(mask.regulators, dtype=np.int64)
        if len(self.R) != self.k or len(variances) != self.d:
            raise ValueError("statistics and mask disagree on regulators or genes")
        var_R = np.asarray(cov_rows[np.arange(self.k), self.R], dtype=np.float64)
        # Constant regulators have variance exactly 0 (the statistics set it so, with a
        # test relative to each gene's own mean); no other gene's scale enters here, so one
        # extreme value elsewhere cannot silence every regulator.
        self.dead_rows = ~(var_R > 0) | ~np.isfinite(var_R)
        sigma = np.sqrt(np.where(self.dead_rows, 1.0, var_R))
        self.sigma = sigma
        self.target_scale = np.sqrt(np.clip(np.asarray(variances, dtype=np.float64), 1e-24, None))
        self.variances = np.asarray(variances, dtype=np.float64)
        dev = self.device
        scaled = np.asarray(cov_rows, dtype=np.float64) / sigma[:, None]
        A = _regulator_gram(scaled[:, self.R], sigma, self.dead_rows)
        live = np.flatnonzero(~self.dead_rows)
        self.dtype, self.min_residual_fraction = working_precision(
            A[np.ix_(live, live)],
            scaled[live],
            self.variances,
            np.setdiff1d(np.arange(self.d), self.R),
            s.tuning.precision,
        )
        # the caller's statistics, not a copy: a block of them in float64 for the BIC
        self.cov_rows = cov_rows
        self.B = torch.as_tensor(scaled, dtype=self.dtype, device=dev)  # k × d
        self.A = torch.as_tensor(A, dtype=self.dtype, device=dev)
        self.sigma_t = torch.as_tensor(sigma, dtype=self.dtype, device=dev)
        self.closes_required_cycle = _closes_required_cycle(mask)

    # per-block dense views of the mask, built on demand (memory-bounded)
    def allowed(self, cols: np.ndarray, *, screened: bool = True) -> np.ndarray:
        """Dense k × c block of the edges that may exist (required ones always).

        ``screened=False`` ignores the mask's candidate screen: every edge the prior allows.
        """
        mask = self.mask if screened or self.mask.candidates is None else replace(self.mask, candidates=None)
        block = mask.allowed_block(cols)
        block[self.dead_rows, :] = False
        if self.closes_required_cycle.nnz:
            block &= ~self.closes_required_cycle[:, cols].toarray()
        block |= self.required(cols)
        return block

    def required(self, cols: np.ndarray) -> np.ndarray:
        """Dense k × c block of the prior's required edges (always in the support)."""
        return self.mask.required[:, cols].toarray().astype(bool)

    def penalty(self, cols: np.ndarray, lambda1: float | None = None) -> np.ndarray:
        """L1 weights of the block in the scaled space (k × c, or k × 1 when all multipliers are 1).

        ``lambda1`` overrides the settings' λ (the automatic λ path tries several).
        """
        mult = self.mask.penalty_block(cols)
        lam = self.s.lambda1 if lambda1 is None else lambda1
        if lam is None:
            raise ValueError("lambda1 is automatic: choose it (lambda_path.select_lambda) before solving")
        base = lam / self.sigma[:, None]
        return base if mult is None else base * mult

    def sign(self, cols: np.ndarray) -> np.ndarray | None:
        """Dense k × c sign constraints (+1 / -1 / 0), or None without any."""
        if self.mask.sign.nnz == 0:
            return None
        return self.mask.sign[:, cols].toarray()

    def scaled_block(self, rows: np.ndarray) -> np.ndarray:
        """Return A[rows, rows] in float64 from the statistics themselves.

        The solver's A may be float32, which cannot resolve the residual of a gene nearly
        determined by others; a likelihood's log residual variance needs those digits.
        """
        sd = self.sigma[rows]
        scaled = np.asarray(self.cov_rows[rows][:, self.R[rows]], dtype=np.float64) / sd[:, None]
        return _regulator_gram(scaled, sd, self.dead_rows[rows])

    def column_block_size(self) -> int:
        """Columns per lasso block: ~8 live k × c tensors within memory_gb."""
        per_col = self.k * self.A.element_size() * 8
        return int(max(64, min(self.d, self.s.memory_gb * 2**30 // per_col)))


#: float64 when a gene's residual variance, relative to its variance, is below this:
#: float32 rounds the correlations to ~6e-8, an error the solve amplifies by up to the
#: inverse of that fraction, so below 1e-4 the weights would carry errors of 1e-3 or more.
MIN_FLOAT32_RESIDUAL = 1e-4
#: The precision check (a Cholesky of the k × k correlations and k² (d − k) more flops)
#: runs up to this many flops, seconds on a CPU; larger problems stay in float32.
PRECISION_CHECK_FLOPS = 2e11


def _regulator_gram(scaled: np.ndarray, sigma: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """Return the scaled Gram matrix A of regulator rows already divided by their sd.

    Columns are divided by the same sds, constant regulators zeroed, and the result
    symmetrised (the two triangles of streamed sums differ by rounding).
    """
    A = scaled / sigma[None, :]
    A[dead, :] = 0.0
    A[:, dead] = 0.0
    return 0.5 * (A + A.T)


def working_precision(
    A: np.ndarray, B: np.ndarray, variances: np.ndarray, others: np.ndarray, precision: str
) -> tuple[torch.dtype, float]:
    """Choose the solver's float type for these scaled statistics; also return the fraction checked.

    The fraction is the smallest residual variance of any gene, relative to its
    variance, in its regression on all the (other) regulators: 1 / (A⁻¹)_ii for a
    regulator, 1 − bᵀA⁻¹b / var for any other target. It is tiny when genes are nearly
    linear functions of others, as in raw-scale SEM simulations whose variances grow by
    orders of magnitude along the causal order; there, float32 correlations leave the
    residuals, and so the weights, to rounding error. ``"auto"`` takes float64 below
    ``MIN_FLOAT32_RESIDUAL``. Singular correlations (fewer cells than regulators, or
    duplicated genes) are not made regular by more digits and keep float32, as do
    problems too large to check (``PRECISION_CHECK_FLOPS``). Returns ``nan`` for the
    fraction when it was not computed.

    ``A`` and ``B`` are the scaled statistics of the non-constant regulators, ``others``
    the targets that are not regulators.
    """
    if precision != "auto":
        return (torch.float64 if precision == "float64" else torch.float32), math.nan
    k = A.shape[0]
    if k == 0 or k**3 / 3 + k * k * others.size > PRECISION_CHECK_FLOPS:
        return torch.float32, math.nan
    try:
        factor = scipy.linalg.cho_factor(A, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return torch.float32, 0.0
    inv_diag = np.diag(scipy.linalg.cho_solve(factor, np.eye(k), check_finite=False))
    fractions = [1.0 / np.clip(inv_diag, 1e-300, None)]
    if others.size:
        Y = scipy.linalg.solve_triangular(factor[0], B[:, others], lower=True, check_finite=False)
        var = variances[others]
        ok = var > 0
        fractions.append(1.0 - (Y[:, ok] ** 2).sum(0) / var[ok])
    smallest = float(np.min(np.concatenate(fractions)))
    if not smallest > 0:  # singular up to rounding
        return torch.float32, 0.0
    return (torch.float64 if smallest < MIN_FLOAT32_RESIDUAL else torch.float32), smallest


def _closes_required_cycle(mask: EdgeMask) -> sp.csr_matrix:
    """Return the k × d edges that would close a cycle with required edges alone.

    A required edge stays whatever the data say, so an edge r -> c is impossible in any
    DAG that holds them when c already reaches r through required edges (the reverse
    of a required edge is the simplest case). Excluding these from the start keeps the
    constrained solve from trading a required edge against its reverse.
    """
    shape = (mask.n_regulators, mask.n_genes)
    req = mask.required.tocoo()
    if req.nnz == 0:
        return sp.csr_matrix(shape, dtype=bool)
    from scipy.sparse.csgraph import breadth_first_order

    d = mask.n_genes
    graph = sp.csr_matrix((np.ones(req.nnz), (mask.regulators[req.row], req.col)), shape=(d, d))
    row_of = np.full(d, -1, dtype=np.int64)
    row_of[mask.regulators] = np.arange(mask.n_regulators)
    rows, cols = [], []
    for start in np.unique(mask.regulators[req.row]):
        reached = breadth_first_order(graph, start, directed=True, return_predecessors=False)[1:]
        back = reached[row_of[reached] >= 0]  # genes reached from start that may regulate it
        rows.extend(row_of[back].tolist())
        cols.extend([int(start)] * back.size)
    return sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=shape)


def total_score(prob: Problem, W: sp.csr_matrix) -> float:
    """½ tr((I−W)ᵀ C (I−W)) + λ Σ p|w| for a d × d W in original units (W rows ⊆ R)."""
    from gene_dag.solver import score

    Wr = W[prob.R, :].toarray() * prob.sigma[:, None]  # scaled block V
    V = torch.as_tensor(Wr, dtype=prob.dtype, device=prob.device)
    fit = 0.0
    bs = prob.column_block_size()
    for a in range(0, prob.d, bs):
        value, _ = score.value_and_gradient(prob.A, prob.B[:, a : a + bs], V[:, a : a + bs])
        fit += float(value.double())
    fit += 0.5 * float(prob.variances.sum())
    pen = float(np.sum(np.abs(Wr) * np.broadcast_to(prob.penalty(np.arange(prob.d)), Wr.shape)))
    return fit + pen


def to_gene_matrix(prob: Problem, V: torch.Tensor) -> sp.csr_matrix:
    """Return the d × d CSR in original units of the k × d scaled block."""
    Vn = V.cpu().numpy().astype(np.float64)
    rows, cols = np.nonzero(Vn)
    vals = Vn[rows, cols] / prob.sigma[rows]
    W = sp.csr_matrix((vals, (prob.R[rows], cols)), shape=(prob.d, prob.d))
    W.setdiag(0)
    W.eliminate_zeros()
    return W


def required_gene_matrix(prob: Problem) -> sp.csr_matrix | None:
    """Return the required edges as a d × d matrix (None without any)."""
    req = prob.mask.required.tocoo()
    if req.nnz == 0:
        return None
    return sp.csr_matrix((np.ones(req.nnz), (prob.R[req.row], req.col)), shape=(prob.d, prob.d))
