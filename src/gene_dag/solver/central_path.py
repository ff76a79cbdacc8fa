"""The constrained stage: DAGMA's central path on a batch of cycle-core components.

A batch holds ``nb`` independent components padded to one shape. Component b has parent
rows (P), target columns (C) and, in the top-left Q × Q corner, the square block of edges
that can close cycles; only that block enters the acyclicity function h. Per component,
stage by stage with μ = 1, 0.1, …, 1e-4 (and the log-det parameter s falling with it):

    min_V  f(V) + Σ t|V| + h_s(U) / μ,      U = V[:Q, :Q] / σ_cols,

where f is the least-squares score (score.py) and the L1 term the penalty (penalty.py).
Each stage is solved by OWL-QN (owlqn.py), warm-started from the last; as μ -> 0 the
minimiser approaches a DAG. The mask and the sign constraints hold exactly at every
iterate.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from gene_dag.solver import score
from gene_dag.solver.acyclicity import acyclicity_fn
from gene_dag.solver.owlqn import minimize_owlqn
from gene_dag.solver.threads import CORE_PARALLEL_FLOPS, threads_for

log = logging.getLogger(__name__)

#: μ of the five stages (DAGMA's defaults: μ_init 1, factor 0.1, T = 5).
MU_PATH = (1.0, 0.1, 0.01, 0.001, 0.0001)
#: A component whose final h is below this is near enough to a DAG for thresholding.
PATH_H_TOL = 1e-4


@dataclass
class ComponentBatch:
    """Padded tensors for ``nb`` components (see module docstring)."""

    A: torch.Tensor  # (nb, P, P) Gram of parent rows
    B: torch.Tensor  # (nb, P, C) linear term
    allowed: torch.Tensor  # (nb, P, C) 1 where the edge is in the active set
    penalty: torch.Tensor  # (nb, P, C) L1 weights
    sign: torch.Tensor | None  # (nb, P, C) +1 / -1 / 0
    col_scale: torch.Tensor  # (nb, Q) σ of the constrained genes (U = V / σ_col)
    target_scale: torch.Tensor  # (nb, C) √C_jj of every target, for relative tolerances
    V: torch.Tensor  # (nb, P, C) start (warm) and result

    @property
    def q(self) -> int:
        """Size of the square block of edges that can close cycles."""
        return self.col_scale.shape[1]


@dataclass
class PathSettings:
    """How the path runs: the acyclicity function, the inner solver's limits, resumption."""

    acyclicity: str = "logdet"
    s_path: tuple = (1.0,)  # log-det s per stage (the last repeats)
    max_inner: int = 200
    ftol: float = 2.2e-9
    gtol: float = 1e-5
    deadline: float | None = None  # time.monotonic() value; checked between stages
    threads: int | None = None  # CPU threads; None: by step size (threads.py)
    start_stage: int = 0  # resume here, from the batch's V
    tie_break: float = 0.0  # relative seeded asymmetry applied before every stage after the first
    seed: int = 0
    on_stage: Callable[[int, torch.Tensor], None] | None = None  # called with (stages done, V)


@dataclass
class PathResult:
    """The weights at the end of the path, the final h and convergence per component."""

    V: torch.Tensor
    h: torch.Tensor
    converged: torch.Tensor  # (nb,) bool
    evaluations: int
    timed_out: bool = False
    history: list = field(default_factory=list)  # one record per stage


class _Objective:
    """f(V) + α h(U) for one batch (α = 1/μ per component), value and gradient."""

    def __init__(self, batch: ComponentBatch, name: str):
        self.b = batch
        self.logdet_s = 1.0
        self.q = batch.q
        self.h_fn = acyclicity_fn(name)
        self.spectral_state: dict | None = {} if name == "spectral" else None
        self.inv_scale = (1.0 / batch.col_scale).unsqueeze(1)  # (nb, 1, Q)
        self.flops_per_step = self.step_flops(batch)

    @staticmethod
    def step_flops(batch: ComponentBatch) -> float:
        """Flops of one value-and-gradient evaluation: the Gram product and the Q × Q LU."""
        nb, P, C = batch.B.shape
        return 2.0 * nb * (P * P * C + 10 * batch.q**3)

    def h(self, V: torch.Tensor, *, need_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self.q
        if q < 2:
            zero = torch.zeros(V.shape[0], dtype=V.dtype, device=V.device)
            return zero, torch.zeros_like(V)
        U = V[:, :q, :q] * self.inv_scale
        if self.spectral_state is not None:
            h, gU = self.h_fn(U, need_grad=need_grad, state=self.spectral_state)
        elif self.logdet_s != 1.0:
            h, gU = self.h_fn(U, need_grad=need_grad, s=self.logdet_s)
        else:
            h, gU = self.h_fn(U, need_grad=need_grad)
        if not need_grad:
            return h, None
        grad = torch.zeros_like(V)
        grad[:, :q, :q] = gU * self.inv_scale
        return h, grad

    def value_grad(self, V: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(f + α h per component, h, gradient); +inf outside the log-det domain."""
        f, gf = score.value_and_gradient(self.b.A, self.b.B, V)
        h, gh = self.h(V)
        finite = torch.isfinite(h)
        phi = torch.where(finite, f + alpha * h, torch.full_like(f, math.inf))
        coef = torch.where(finite, alpha, torch.zeros_like(alpha))
        return phi, h, gf + coef[:, None, None] * gh


def solve_components(batch: ComponentBatch, settings: PathSettings) -> PathResult:
    """Run the central path on every component of the batch.

    On the CPU the thread count depends on the size only, never on the load (threads.py).
    """
    flops = _Objective.step_flops(batch)
    with threads_for(flops, batch.V.device, threads=settings.threads, parallel_from=CORE_PARALLEL_FLOPS):
        obj = _Objective(batch, settings.acyclicity)
        V = batch.V * batch.allowed
        start = V if settings.start_stage > 0 else torch.zeros_like(V)  # DAGMA starts at W = 0
        return _central_path(obj, start, settings)


def _into_domain(obj: _Objective, V: torch.Tensor) -> torch.Tensor:
    """Shrink a warm start until h is finite (the log-det domain); V = 0 always is."""
    for _ in range(30):
        h, _ = obj.h(V, need_grad=False)
        out = ~torch.isfinite(h)
        if not bool(out.any()):
            return V
        V = torch.where(out[:, None, None], 0.5 * V, V)
    return torch.where(out[:, None, None], torch.zeros_like(V), V)


def _central_path(obj: _Objective, V: torch.Tensor, s: PathSettings) -> PathResult:
    """DAGMA's central path: minimise f + λ|V| + h_s(U)/μ for decreasing μ (and s).

    With the log-det h the domain shrinks with s, so every stage starts inside it.
    """
    nb = V.shape[0]
    zero = torch.zeros(nb, dtype=V.dtype, device=V.device)
    evaluations, history, timed_out = 0, [], False
    asymmetry = _asymmetry(V, s)
    s_values = list(s.s_path) + [s.s_path[-1]] * max(0, len(MU_PATH) - len(s.s_path))
    for stage, (mu, sv) in enumerate(zip(MU_PATH, s_values[: len(MU_PATH)], strict=True)):
        if stage < s.start_stage:
            continue
        obj.logdet_s = sv if s.acyclicity == "logdet" else 1.0
        if stage > 0 and asymmetry is not None:
            V = V * asymmetry
        V = _into_domain(obj, V)
        V, its = _stage(obj, V, zero + 1.0 / mu, s)
        evaluations += its
        h, _ = obj.h(V, need_grad=False)
        history.append({"stage": stage, "mu": mu, "max_h": float(h.max()), "evals": its})
        log.info(
            "central path stage %d/%d (mu %.0e, s %.2g): %d evaluations, max h %.3g, %d nonzero weights",
            stage + 1,
            len(MU_PATH),
            mu,
            sv,
            its,
            float(h.max()),
            int((V != 0).sum()),
        )
        if s.on_stage is not None:
            s.on_stage(stage + 1, V)
        if s.deadline is not None and time.monotonic() > s.deadline:
            timed_out = True
            break
    obj.logdet_s = 1.0
    h, _ = obj.h(V, need_grad=False)
    converged = (h <= PATH_H_TOL) & (not timed_out)  # near a DAG; thresholding finishes it
    return PathResult(V, h, converged, evaluations, timed_out, history)


def _asymmetry(V: torch.Tensor, s: PathSettings) -> torch.Tensor | None:
    """Seeded factors 1 ± ``tie_break``, or None.

    On standardised genes the statistics are symmetric (C[i, j] = C[j, i], unit diagonal),
    so from W = 0 the first stage ends with equal weights on i -> j and j -> i, a point
    the later stages, where it is a saddle, cannot leave: both weights shrink together
    instead of one edge growing. A small asymmetry between stages lets the path choose.
    """
    if not s.tie_break:
        return None
    gen = torch.Generator(device="cpu").manual_seed(int(s.seed))
    u = torch.rand(tuple(V.shape), generator=gen, dtype=torch.float64) * 2.0 - 1.0
    return (1.0 + s.tie_break * u).to(V.device, V.dtype)


def _stage(obj: _Objective, V: torch.Tensor, alpha: torch.Tensor, s: PathSettings) -> tuple[torch.Tensor, int]:
    """One stage: OWL-QN on f + α h + Σ t|V| over the allowed entries of every component."""
    b = obj.b
    mask = b.allowed > 0

    def smooth(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi, _, g = obj.value_grad(W, alpha)
        return phi.sum(), g

    res = minimize_owlqn(smooth, V, b.penalty, mask, b.sign, max_iter=s.max_inner, ftol=s.ftol, gtol=s.gtol)
    log.debug("OWL-QN: %s after %d evaluations", res.message, res.evaluations)
    return torch.where(mask, res.V, V), res.evaluations
