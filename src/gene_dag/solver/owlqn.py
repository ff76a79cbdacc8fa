"""OWL-QN (Andrew & Gao 2007): L-BFGS for smooth + weighted L1, in torch, on the device.

    min_V  φ(V) + Σ t_ij |v_ij|   over the allowed entries (mask), with optional signs

φ is the smooth part (least squares + acyclicity term); the L1 term is handled by the
pseudo-gradient and an orthant projection, so V stays exactly sparse and the mask and
sign constraints hold at every iterate. Unlike scipy's L-BFGS-B on the split V⁺ − V⁻,
the variables are not doubled and nothing leaves torch: in a cProfile of one d = 100
solve, scipy's setulb took 1.865 s in 3,023 calls over 1,518 evaluations (1.2 ms per
evaluation), more than the value and gradient themselves (1.348 s, 0.9 ms); that is the
cost this module removes.

A step that leaves the domain of φ (φ = +inf, e.g. log-det outside the M-matrices)
fails the Armijo test and is backtracked like any other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class OWLQNResult:
    """The minimiser, the work done and why it stopped."""

    V: torch.Tensor
    evaluations: int
    iterations: int
    message: str


def pseudo_gradient(V, G, penalty, sign):
    """Minimum-norm subgradient of φ + Σ t|v| (zero where 0 is optimal along the axis)."""
    at_zero = G - torch.clamp(G, -penalty, penalty)  # soft-thresholded gradient
    if sign is not None:  # sign-constrained entries may leave 0 only their way
        at_zero = at_zero * ~(((sign > 0) & (at_zero > 0)) | ((sign < 0) & (at_zero < 0)))
    return torch.where(V != 0, G + penalty * torch.sign(V), at_zero)


class LBFGSMemory:
    """The last ``m`` pairs (s, y) in a fixed buffer, with their inner products kept up to date.

    ``direction`` applies the inverse-Hessian approximation in the compact form of Byrd,
    Nocedal & Schnabel (1994): three matrix-vector products on the buffer and an m × m
    triangular solve, instead of the 4m dot products of the classic two loops (at these
    sizes, per-operation overhead is the cost).
    """

    def __init__(self, n: int, m: int, dtype: torch.dtype, device: torch.device):
        self.m = m
        self.Z = torch.zeros(2 * m, n, dtype=dtype, device=device)  # rows: s_1..s_m, y_1..y_m
        self.SY = torch.zeros(m, m, dtype=dtype, device=device)  # SY[i, j] = s_i · y_j
        self.YY = torch.zeros(m, m, dtype=dtype, device=device)
        self.slots: list[int] = []  # buffer rows, oldest first

    def clear(self) -> None:
        """Forget every stored pair."""
        self.slots.clear()

    def push(self, s: torch.Tensor, y: torch.Tensor) -> None:
        """Store the pair (s, y), dropping the oldest when the memory is full."""
        m = self.m
        k = len(self.slots) if len(self.slots) < m else self.slots.pop(0)
        self.Z[k], self.Z[m + k] = s, y
        self.slots.append(k)
        zy = self.Z @ y
        self.SY[:, k] = zy[:m]
        self.SY[k, :] = self.Z[m:] @ s
        self.YY[:, k] = self.YY[k, :] = zy[m:]

    def direction(self, q: torch.Tensor) -> torch.Tensor:
        """H q (q flat)."""
        if not self.slots:
            return q
        m = self.m
        idx = torch.as_tensor(self.slots, device=q.device)
        zq = self.Z @ q
        a, b = zq[:m][idx], zq[m:][idx]
        SY = self.SY[idx][:, idx]
        YY = self.YY[idx][:, idx]
        gamma = SY[-1, -1] / YY[-1, -1]
        R = torch.triu(SY)
        r = torch.linalg.solve_triangular(R, a.unsqueeze(-1), upper=True).squeeze(-1)
        inner = torch.diagonal(SY) * r + gamma * (YY @ r) - gamma * b
        p = torch.linalg.solve_triangular(R.T, inner.unsqueeze(-1), upper=False).squeeze(-1)
        coef = torch.zeros(2 * m, dtype=q.dtype, device=q.device)
        coef[idx] = p
        coef[m + idx] = -gamma * r
        return gamma * q + self.Z.T @ coef


def _orthant(V: torch.Tensor, PG: torch.Tensor, sign: torch.Tensor | None) -> torch.Tensor:
    """Return the orthant a step must stay in: sign(V), or -sign(pseudo-gradient) at 0, within the signs."""
    orthant = torch.where(V != 0, torch.sign(V), -torch.sign(PG))
    if sign is not None:
        orthant = torch.where(sign != 0, orthant * (orthant == sign), orthant)
    return orthant


def minimize_owlqn(
    smooth: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    V0: torch.Tensor,
    penalty: torch.Tensor,
    mask: torch.Tensor,
    sign: torch.Tensor | None = None,
    *,
    max_iter: int = 1000,
    memory: int = 10,
    ftol: float = 2.2e-9,
    gtol: float = 1e-5,
) -> OWLQNResult:
    """Minimise ``smooth(V)[0] + Σ penalty·|V|`` over entries where ``mask`` is set.

    ``smooth`` returns the value (a 0-d tensor, +inf outside its domain) and gradient.
    Stops like scipy's L-BFGS-B: relative decrease below ``ftol``, largest
    pseudo-gradient entry below ``gtol``, or ``max_iter`` iterations.
    """
    mask = mask.to(V0.dtype)
    penalty = (penalty * mask).expand_as(V0)
    V = V0 * mask
    if sign is not None:
        V = V * (sign * V >= 0)
    f, G = smooth(V)
    G = G * mask
    F = float(f + (penalty * V.abs()).sum())
    evals = 1
    mem = LBFGSMemory(V.numel(), memory, V.dtype, V.device)
    message = "iteration limit"
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned after the loop
        PG = pseudo_gradient(V, G, penalty, sign) * mask
        if float(PG.abs().max()) <= gtol:
            message = "pseudo-gradient below gtol"
            break
        D = mem.direction(-PG.reshape(-1)).reshape(V.shape)
        D = D * (D * PG < 0)  # keep to the descent orthant
        slope = float((D * PG).sum())
        if slope >= 0:  # the memory gave no descent: steepest descent, forget the history
            mem.clear()
            D, slope = -PG, -float((PG * PG).sum())
        orthant = _orthant(V, PG, sign)
        step = 1.0 if mem.slots else min(1.0, 1.0 / max(float(PG.abs().sum()), 1e-12))
        for _ in range(40):
            Vn = V + step * D
            Vn = Vn * (Vn * orthant > 0)
            fn, Gn = smooth(Vn)
            evals += 1
            Fn = float(fn + (penalty * Vn.abs()).sum())
            if math.isfinite(Fn) and Fn <= F + 1e-4 * float((PG * (Vn - V)).sum()):
                break
            step *= 0.5
        else:
            message = "line search failed"
            break
        Gn = Gn * mask
        s_vec, y_vec = (Vn - V).reshape(-1), (Gn - G).reshape(-1)
        if float(s_vec @ y_vec) > 1e-10 * float(y_vec @ y_vec):
            mem.push(s_vec, y_vec)
        decrease = F - Fn
        V, G, F = Vn, Gn, Fn
        if decrease <= ftol * max(abs(F), abs(F + decrease), 1.0):
            message = "relative decrease below ftol"
            break
    return OWLQNResult(V, evals, it, message)
