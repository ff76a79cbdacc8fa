"""The least-squares score on sufficient statistics, in the rescaled space of every stage.

With the regulators scaled to unit variance (V = diag(σ_R) W, A = the regulator
correlation matrix, B = the scaled covariance rows C[R, :] / σ_R), the fit term of the
linear SEM is, up to the constant ½ tr C,

    f(V) = ½ ⟨V, A V⟩ − ⟨B, V⟩,        ∇f(V) = A V − B.

Every stage (batched lasso, central path, refits, refinement, the final score) uses these
two lines; ``A @ V`` broadcasts, so the same code serves one k × c block and a batch of
padded components (nb, P, C).
"""

from __future__ import annotations

import torch


def gradient(A: torch.Tensor, B: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """∇f(V) = A V − B."""
    return A @ V - B


def value_and_gradient(A: torch.Tensor, B: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(V) per matrix of the batch (summed over the last two axes) and ∇f(V)."""
    AV = A @ V
    value = 0.5 * (V * AV).sum((-2, -1)) - (B * V).sum((-2, -1))
    return value, AV - B


def residual_variance(AV: torch.Tensor, B: torch.Tensor, V: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """Each column's residual variance at V, C_jj + 2 f_j(V), in float64 and at least 1e-24 C_jj.

    ``AV`` is A @ V, which callers often have already.
    """
    Vd = V.double()
    f = 0.5 * (Vd * AV.double()).sum(0) - (B.double() * Vd).sum(0)
    return torch.clamp(variances + 2.0 * f, min=1e-24 * variances)
