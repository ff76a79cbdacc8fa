"""Exact lasso columns by feature-sign search, for ill-conditioned statistics.

Each column solves  min_v ½ vᵀAv − bᵀv + Σ p_i |v_i|  over its allowed entries, with sign
constraints where given. Feature-sign search (Lee, Battle, Raina & Ng 2007) guesses the
support S and the signs θ, solves the equality-constrained problem A_SS v_S = b_S − p_S θ_S
exactly (a Cholesky factorisation), then walks from the current point towards that
solution, stopping at the best point among the zero crossings on the way; entries
that reach zero leave S, the worst optimality violation outside S enters. The
objective falls at every step, and the method ends at an exact optimum.

First-order methods (FISTA, coordinate descent) take a number of steps that grows
with the condition number of A; on raw-scale statistics whose genes are nearly linear
functions of others that number is out of reach, while a factorisation is unaffected.
The cost is a few factorisations of |S| × |S| per column, on the CPU in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

#: Support changes per column before giving up (each is one factorisation).
MAX_STEPS = 500


@dataclass
class _Column:
    """One column's problem: ½ xᵀAx − bᵀx + Σ p|x|, with optional sign constraints."""

    A: np.ndarray
    b: np.ndarray
    pen: np.ndarray
    sign: np.ndarray | None

    def value(self, x: np.ndarray) -> float:
        """Return the objective at x."""
        return float(0.5 * x @ (self.A @ x) - self.b @ x + self.pen @ np.abs(x))

    def step(self, v: np.ndarray, theta: np.ndarray, entering: np.ndarray | None, g: np.ndarray) -> np.ndarray | None:
        """One feature-sign step from v (``entering`` join the support); None when it does not descend."""
        if entering is not None:
            theta = np.where(entering, -np.sign(g), theta)
        idx = np.flatnonzero(theta != 0)
        try:
            factor = scipy.linalg.cho_factor(self.A[np.ix_(idx, idx)], check_finite=False)
        except np.linalg.LinAlgError:
            return None
        target = scipy.linalg.cho_solve(factor, self.b[idx] - self.pen[idx] * theta[idx], check_finite=False)
        x = self.best_on_segment(v, idx, target)
        return None if x is v else x

    def best_on_segment(self, v: np.ndarray, idx: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Return the point of least objective among the end and the zero crossings from v to target.

        Points where a sign-constrained entry has the wrong sign are not candidates; at a
        crossing, the entry that crosses is set to exactly zero.
        """
        start = v[idx]
        crossing = (start != 0) & (np.sign(start) != np.sign(target))
        candidates = [(1.0, None)] + [(float(start[i] / (start[i] - target[i])), i) for i in np.flatnonzero(crossing)]
        sign = None if self.sign is None else self.sign[idx]
        best, best_value = v, self.value(v)
        for t, zero in candidates:
            seg = start + t * (target - start)
            if zero is not None:
                seg[zero] = 0.0
            if sign is not None and (sign * seg < 0).any():
                continue
            x = v.copy()
            x[idx] = seg
            value = self.value(x)
            if value < best_value:
                best, best_value = x, value
        return best


def feature_sign_column(
    A: np.ndarray,
    b: np.ndarray,
    pen: np.ndarray,
    *,
    allowed: np.ndarray,
    sign: np.ndarray | None,
    v0: np.ndarray,
    tol: float,
) -> tuple[np.ndarray, bool, float]:
    """Solve one lasso column exactly; return (v, converged, largest optimality violation).

    Parameters
    ----------
    A, b
        k × k Gram (correlation) matrix and the column's linear term (k,), float64.
    pen
        Per-entry L1 weights (k,).
    allowed
        Boolean (k,): entries that may be nonzero.
    sign
        Optional (k,) of +1 / −1 / 0: the sign an entry must take (0: free).
    v0
        Warm start (k,); entries outside ``allowed`` or of the wrong sign are dropped.
    tol
        Optimality tolerance in b's units.
    """
    col = _Column(A, b, pen, sign)
    free = allowed & (np.diag(A) > 0)
    v = np.where(free, v0, 0.0).astype(np.float64)
    if sign is not None:
        v = np.where(sign * v < 0, 0.0, v)
    theta = np.sign(v)
    violation = np.inf
    for _ in range(MAX_STEPS):
        g = A @ v - b
        S = theta != 0
        # optimality outside S: |g| <= p, and a signed entry may move only its own way
        room = np.abs(g) - pen
        if sign is not None:
            room = np.where((sign != 0) & (sign != -np.sign(g)), -np.inf, room)
        room = np.where(free & ~S, room, -np.inf)
        inside = np.abs(g + pen * theta)[S]
        violation = max(float(room.max(initial=-np.inf)), float(inside.max(initial=0.0)), 0.0)
        if violation <= tol:
            return v, True, violation
        entering = None
        if inside.max(initial=0.0) <= tol:  # S is optimal: let the worst violators in
            entering = room >= max(0.5 * float(room.max()), tol)
        v_new = col.step(v, theta, entering, g)
        if v_new is None and entering is not None and entering.sum() > 1:
            # several entries at once need not give a descent direction; one always does
            v_new = col.step(v, theta, room >= float(room.max()), g)
        if v_new is None:
            return v, False, violation
        v = v_new
        theta = np.where(v != 0, np.sign(v), 0.0)
    return v, False, violation
