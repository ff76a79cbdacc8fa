"""The penalty term: weighted L1 with the prior's edge mask and sign constraints.

    g(V) = Σ t_ij |v_ij|,   v_ij = 0 where the edge is not allowed,  sign(v_ij) fixed where signed.

Its value and its proximal operator are used by every stage (the batched lasso, OWL-QN's
orthant projection keeps the same constraints).
"""

from __future__ import annotations

import torch


def prox_l1_masked(
    Z: torch.Tensor,
    threshold: torch.Tensor | float,
    allowed: torch.Tensor | None,
    sign: torch.Tensor | None,
) -> torch.Tensor:
    """argmin_V ½‖V − Z‖² + Σ t|V| over V with V = 0 off the mask and sign(V) as required.

    The sign constraint is a projection onto a half-line, which commutes with
    soft-thresholding, so applying both in sequence is the exact prox.
    """
    V = torch.sign(Z) * torch.clamp(Z.abs() - threshold, min=0.0)
    if sign is not None:
        V = torch.where(sign > 0, V.clamp_min(0.0), torch.where(sign < 0, V.clamp_max(0.0), V))
    if allowed is not None:
        V = V * allowed
    return V


def l1_value(V: torch.Tensor, penalty: torch.Tensor | float) -> torch.Tensor:
    """Σ t |V| over the last two axes (one value per matrix of a batch)."""
    return (torch.as_tensor(penalty, dtype=V.dtype, device=V.device) * V.abs()).sum((-2, -1))
