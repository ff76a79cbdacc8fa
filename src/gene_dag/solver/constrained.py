"""The constrained problem on cycle-core components, batched: central path or augmented Lagrangian.

A batch holds ``nb`` independent components padded to one shape. Component b has
parent rows (P), target columns (C) and, in the top-left Q × Q corner, the square block
of edges that can close cycles; only that block enters h. Per component:

    min_V  ½⟨V, A V⟩ − ⟨B, V⟩ + Σ t|V| + α h(U) + ½ ρ h(U)²,   U = V[:Q, :Q] / σ_cols

with NOTEARS' schedule (ρ ×10 until h falls below a quarter of its previous value,
α += ρ h) run separately for every component of the batch, or DAGMA's central path
(α = 1/μ, ρ = 0, μ = 1 … 1e-4; the default). Inner solvers: OWL-QN in torch (default,
owlqn.py), scipy's L-BFGS-B on the split V⁺ − V⁻, or accelerated proximal gradient
with per-component backtracking. In all three the L1 term, the edge mask and the sign
constraints hold exactly at every iterate.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from gene_dag.solver.acyclicity import acyclicity_fn
from gene_dag.solver.owlqn import minimize_owlqn
from gene_dag.solver.proximal import prox_l1_masked
from gene_dag.solver.threads import threads_for

log = logging.getLogger(__name__)


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
        return self.col_scale.shape[1]


@dataclass
class ALSettings:
    acyclicity: str = "logdet"
    schedule: str = "path"
    inner: str = "lbfgs"
    mu_path: tuple = (1.0, 0.1, 0.01, 0.001, 0.0001)
    path_h_tol: float = 1e-4
    s_path: tuple = (1.0,)
    h_tol: float = 1e-8
    rho_max: float = 1e16
    max_outer: int = 40
    max_inner: int = 1000
    tol: float = 1e-5
    ftol: float = 2.2e-9
    gtol: float = 1e-5
    deadline: float | None = None
    start_stage: int = 0  # central path: resume here, from the batch's V
    on_stage: Callable[[int, torch.Tensor], None] | None = None  # called with (stages done, V)


@dataclass
class ALResult:
    V: torch.Tensor
    h: torch.Tensor
    converged: torch.Tensor  # (nb,) bool
    outer_iterations: int
    inner_iterations: int
    timed_out: bool = False
    history: list = field(default_factory=list)


class _Objective:
    """Smooth part of the augmented Lagrangian for one batch, value and gradient."""

    def __init__(self, batch: ComponentBatch, name: str, h_tol: float):
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

    def h(self, V: torch.Tensor, need_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self.q
        if q < 2:
            zero = torch.zeros(V.shape[0], dtype=V.dtype, device=V.device)
            return zero, torch.zeros_like(V)
        U = V[:, :q, :q] * self.inv_scale
        if self.spectral_state is not None:
            h, gU = self.h_fn(U, need_grad, state=self.spectral_state)
        elif self.logdet_s != 1.0:
            h, gU = self.h_fn(U, need_grad, s=self.logdet_s)
        else:
            h, gU = self.h_fn(U, need_grad)
        if not need_grad:
            return h, None
        grad = torch.zeros_like(V)
        grad[:, :q, :q] = gU * self.inv_scale
        return h, grad

    def value_grad(self, V, alpha, rho, need_grad=True):
        AV = torch.bmm(self.b.A, V)
        f = 0.5 * (V * AV).sum((1, 2)) - (self.b.B * V).sum((1, 2))
        h, gh = self.h(V, need_grad)
        phi = f + alpha * h + 0.5 * rho * h * h
        phi = torch.where(torch.isfinite(h), phi, torch.full_like(phi, math.inf))
        if not need_grad:
            return phi, h, None
        coef = torch.where(torch.isfinite(h), alpha + rho * h, torch.zeros_like(h))
        return phi, h, AV - self.b.B + coef[:, None, None] * gh


def solve_components(batch: ComponentBatch, settings: ALSettings) -> ALResult:
    """Run the augmented-Lagrangian schedule on every component of the batch.

    Small batches run on one CPU thread: for tiny matrices, thread start-up and
    spinning cost far more than the arithmetic (see threads.py).
    """
    with threads_for(_Objective.step_flops(batch), batch.V.device):
        return _solve_components(batch, settings)


def _solve_components(batch: ComponentBatch, settings: ALSettings) -> ALResult:
    nb = batch.V.shape[0]
    dev, dt = batch.V.device, batch.V.dtype
    obj = _Objective(batch, settings.acyclicity, settings.h_tol)
    h_tol = settings.h_tol if settings.acyclicity != "spectral" else math.sqrt(settings.h_tol)
    rho = torch.ones(nb, dtype=dt, device=dev)
    alpha = torch.zeros(nb, dtype=dt, device=dev)
    h_prev = torch.full((nb,), math.inf, dtype=dt, device=dev)
    V = batch.V * batch.allowed
    if settings.schedule == "path":
        start = V if settings.start_stage > 0 else torch.zeros_like(V)  # DAGMA starts at W = 0
        return _central_path(obj, start, settings)
    V, h_now = _into_domain(obj, V)
    done = torch.zeros(nb, dtype=torch.bool, device=dev)  # always solve at least once
    L = torch.ones(nb, dtype=dt, device=dev) * _gram_scale(batch.A)
    outer = inner_total = 0
    timed_out = False
    history = []
    while outer < settings.max_outer and not bool(done.all()):
        outer += 1
        V, L, its, timed_out = _inner_solve(obj, V, alpha, rho, ~done, settings, L)
        inner_total += its
        _, h_new, _ = obj.value_grad(V, alpha, rho, need_grad=False)
        if batch.q < 2:
            done[:] = True
            h_now = h_new
            break
        active = ~done
        progress = h_new <= 0.25 * h_prev
        rho = torch.where(active & ~progress, rho * 10.0, rho)
        alpha = torch.where(active & progress, alpha + rho * h_new, alpha)
        h_prev = torch.where(active & progress, h_new, h_prev)
        h_now = h_new
        done = done | (h_new <= h_tol) | (rho >= settings.rho_max)
        history.append({"outer": outer, "max_h": float(h_new.max()), "max_rho": float(rho.max())})
        log.debug("AL outer %d: %d inner its, max h %.3g, max rho %.3g, %d/%d done",
                  outer, its, float(h_new.max()), float(rho.max()), int(done.sum()), nb)
        if timed_out:
            break
    converged = h_now <= h_tol
    return ALResult(V, h_now, converged, outer, inner_total, timed_out, history)


def _into_domain(obj: _Objective, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shrink a warm start until h is finite (the log-det domain); V = 0 always is."""
    for _ in range(30):
        h, _ = obj.h(V, need_grad=False)
        out = ~torch.isfinite(h)
        if not bool(out.any()):
            return V, h
        V = torch.where(out[:, None, None], 0.5 * V, V)
    V = torch.where(out[:, None, None], torch.zeros_like(V), V)
    return V, obj.h(V, need_grad=False)[0]


def _central_path(obj: _Objective, V: torch.Tensor, s: ALSettings) -> ALResult:
    """DAGMA's central path: minimise f + λ|V| + h_s(U)/μ for decreasing μ (and s).

    Each stage is warm-started from the last; as μ -> 0 the minimiser approaches a DAG.
    With the log-det h the domain shrinks with s, so every stage starts inside it.
    """
    nb = V.shape[0]
    dev, dt = V.device, V.dtype
    zero = torch.zeros(nb, dtype=dt, device=dev)
    running = torch.ones(nb, dtype=torch.bool, device=dev)
    inner_total = 0
    history = []
    timed_out = False
    s_values = list(s.s_path) + [s.s_path[-1]] * max(0, len(s.mu_path) - len(s.s_path))
    for stage, (mu, sv) in enumerate(zip(s.mu_path, s_values)):
        if stage < s.start_stage:
            continue
        obj.logdet_s = sv if s.acyclicity == "logdet" else 1.0
        V, _ = _into_domain(obj, V)
        alpha = zero + 1.0 / mu
        # the thread count is chosen again for every stage: the machine's load changes
        with threads_for(obj.flops_per_step, V.device, probe=lambda: obj.value_grad(V, alpha, zero)):
            V, _, its, _ = _inner_solve(obj, V, alpha, zero, running, s)
        inner_total += its
        h, _ = obj.h(V, need_grad=False)
        history.append({"stage": stage, "mu": mu, "max_h": float(h.max()), "evals": its})
        log.info("central path stage %d/%d (mu %.0e, s %.2g): %d evaluations, max h %.3g, %d nonzero weights",
                 stage + 1, len(s.mu_path), mu, sv, its, float(h.max()), int((V != 0).sum()))
        if s.on_stage is not None:
            s.on_stage(stage + 1, V)
        if s.deadline is not None and time.monotonic() > s.deadline:
            timed_out = True
            break
    obj.logdet_s = 1.0
    h, _ = obj.h(V, need_grad=False)
    converged = (h <= s.path_h_tol) & (not timed_out)  # near a DAG; thresholding finishes it
    return ALResult(V, h, converged, len(history), inner_total, timed_out, history)


def _gram_scale(A: torch.Tensor) -> torch.Tensor:
    """A cheap upper bound of λmax per component (max absolute row sum)."""
    return A.abs().sum(-1).amax(-1).clamp_min(1e-6)


def _inner_solve(obj, V, alpha, rho, active, s: ALSettings, L=None):
    """One inner solve with the method ``s.inner``; returns (V, L, evaluations, timed_out).

    ``L`` (per-component step bound) only matters to the proximal method, which carries
    it between outer steps; it starts from a Gram-matrix bound when not given.
    """
    if s.inner == "owlqn":
        V, its, timed_out = _inner_owlqn(obj, V, alpha, rho, active, s)
        return V, L, its, timed_out
    if s.inner == "lbfgs":
        V, its, timed_out = _inner_lbfgsb(obj, V, alpha, rho, active, s)
        return V, L, its, timed_out
    if L is None:
        L = torch.ones(V.shape[0], dtype=V.dtype, device=V.device) * _gram_scale(obj.b.A)
    tol = s.tol * obj.b.target_scale.unsqueeze(1)  # (nb, 1, C)
    return _inner(obj, V, alpha, rho, L, tol, active, s)


def _inner(obj, V, alpha, rho, L, tol, active, s: ALSettings):
    """Accelerated proximal gradient with per-component backtracking, to a tolerance."""
    b = obj.b
    Y = V
    t = torch.ones_like(L)
    phiV, _, _ = obj.value_grad(V, alpha, rho, need_grad=False)
    running = active.clone()
    it = 0
    timed_out = False
    for it in range(1, s.max_inner + 1):
        phiY, _, gY = obj.value_grad(Y, alpha, rho)
        bad = ~torch.isfinite(phiY)  # extrapolation left the domain: restart from V
        if bool(bad.any()):
            Y = torch.where(bad[:, None, None], V, Y)
            t = torch.where(bad, torch.ones_like(t), t)
            phiY, _, gY = obj.value_grad(Y, alpha, rho)
        for _ in range(60):
            step = (1.0 / L)[:, None, None]
            Vn = prox_l1_masked(Y - step * gY, b.penalty * step, b.allowed, b.sign)
            D = Vn - Y
            phin, _, _ = obj.value_grad(Vn, alpha, rho, need_grad=False)
            bound = phiY + (gY * D).sum((1, 2)) + 0.5 * L * (D * D).sum((1, 2))
            ok = (phin <= bound + 1e-12 * phiY.abs()) | ~running
            if bool(ok.all()):
                break
            L = torch.where(ok, L, 2.0 * L)
        # Function-value restart: drop momentum where the objective went up.
        up = phin > phiV
        t = torch.where(up, torch.ones_like(t), t)
        keep = running[:, None, None]
        Vn = torch.where(keep, Vn, V)
        t_next = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
        mom = ((t - 1.0) / t_next)[:, None, None]
        Y = torch.where(up[:, None, None], Vn, Vn + mom * (Vn - V))
        change = ((Vn - V).abs() * L[:, None, None] / tol).amax(dim=(1, 2))
        V, t = Vn, t_next
        phiV = torch.where(running, phin, phiV)
        running = running & (change > 1.0)
        L = torch.where(running, L * 0.9, L)  # let the step grow back
        if not bool(running.any()):
            break
        if s.deadline is not None and it % 20 == 0 and time.monotonic() > s.deadline:
            timed_out = True
            break
    return V, L, it, timed_out


def _inner_owlqn(obj, V, alpha, rho, active, s: ALSettings):
    """OWL-QN (owlqn.py) on the active entries of the running components, in torch."""
    b = obj.b
    mask = (b.allowed > 0) & active[:, None, None]

    def smooth(W):
        phi, _, g = obj.value_grad(W, alpha, rho)
        return torch.where(active, phi, torch.zeros_like(phi)).sum(), g

    res = minimize_owlqn(smooth, V, b.penalty, mask, b.sign, max_iter=s.max_inner, ftol=s.ftol, gtol=s.gtol)
    log.debug("OWL-QN: %s after %d evaluations", res.message, res.evaluations)
    return torch.where(mask, res.V, V), res.evaluations, False


def _inner_lbfgsb(obj, V, alpha, rho, active, s: ALSettings):
    """L-BFGS-B on V = V⁺ − V⁻ (V± >= 0) over the active entries of the running components.

    As in NOTEARS: the split makes the L1 term linear, and bounds express the edge mask
    and the sign constraints exactly. The components are independent, so one L-BFGS-B
    run on their sum solves each of them; values and gradients come from torch.
    """
    import numpy as np
    from scipy.optimize import minimize

    b = obj.b
    run_mask = (b.allowed > 0) & active[:, None, None]
    idx = run_mask.nonzero(as_tuple=True)
    if idx[0].numel() == 0:
        return V, 0, False
    pen = b.penalty[idx].cpu().numpy()
    sign = None if b.sign is None else b.sign[idx].cpu().numpy()
    n = pen.size
    upper_pos = np.where(sign < 0, 0.0, np.inf) if sign is not None else np.full(n, np.inf)
    upper_neg = np.where(sign > 0, 0.0, np.inf) if sign is not None else np.full(n, np.inf)
    bounds = list(zip(np.zeros(2 * n), np.concatenate([upper_pos, upper_neg])))
    base = V.clone()
    dev, dt = V.device, V.dtype
    evals = [0]

    def unpack(x):
        W = base.clone()
        W[idx] = torch.as_tensor(x[:n] - x[n:], dtype=dt, device=dev)
        return W

    def fun(x):
        evals[0] += 1
        W = unpack(x)
        phi, _, g = obj.value_grad(W, alpha, rho)
        phi = torch.where(active, phi, torch.zeros_like(phi))
        total = float(phi.sum())
        if not math.isfinite(total):
            return 1e300, np.zeros_like(x)
        gi = g[idx].cpu().numpy()
        xs = x[:n] + x[n:]
        return total + float(pen @ xs), np.concatenate([gi + pen, -gi + pen])

    v0 = V[idx].cpu().numpy()
    x0 = np.concatenate([np.clip(v0, 0, None), np.clip(-v0, 0, None)])
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": s.max_inner, "ftol": s.ftol, "gtol": s.gtol})
    log.debug("L-BFGS-B: %s after %d evaluations", res.message, evals[0])
    return unpack(res.x), evals[0], False
