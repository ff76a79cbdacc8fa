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


def prox_bounds(
    threshold: torch.Tensor,
    allowed: torch.Tensor | None,
    sign: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds (lo, hi) such that ``Z - Z.clamp(lo, hi)`` is :func:`prox_l1_masked`'s result.

    Soft-thresholding is z minus the projection of z onto [−t, t]; a sign constraint opens
    one side of that interval (a positive-only weight is z − min(z, t), 0 below t), and an
    edge that is not allowed has the interval (−∞, ∞), which leaves exactly 0. In this
    form the prox is two passes over the tensor instead of six, which matters in the
    batched lasso, where the passes over k × c tensors cost as much as the product.
    """
    shapes = [x.shape for x in (threshold, allowed, sign) if x is not None]
    t = threshold.expand(torch.broadcast_shapes(*shapes))
    inf = torch.full_like(t, torch.inf)
    lo, hi = -t, t
    if sign is not None:
        lo = torch.where(sign > 0, -inf, lo)
        hi = torch.where(sign < 0, inf, hi)
    if allowed is not None:
        lo = torch.where(allowed > 0, lo, -inf)
        hi = torch.where(allowed > 0, hi, inf)
    return lo, hi


def l1_value(V: torch.Tensor, penalty: torch.Tensor | float) -> torch.Tensor:
    """Σ t |V| over the last two axes (one value per matrix of a batch)."""
    return (torch.as_tensor(penalty, dtype=V.dtype, device=V.device) * V.abs()).sum((-2, -1))
