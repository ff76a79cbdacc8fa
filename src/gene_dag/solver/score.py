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

#: Largest share of nonzero weights at which A @ V goes through a sparse V on the CPU: there
#: it costs 2 k · nnz(V) flops instead of 2 k² c, and below about 1 % that wins over the
#: dense product's higher rate (float32 and float64, k = 1,000 to 10,000).
SPARSE_PRODUCT_DENSITY = 0.01
#: Regulators below which the dense product is always taken (nothing to gain).
SPARSE_PRODUCT_MIN_K = 256


def product(A: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Return A @ V for the symmetric Gram matrix A, through a sparse V where V is mostly zeros.

    Lasso weights have a handful of nonzeros per target column, so at k = 10,000 the
    dense product does about a thousand times the work it needs. On the CPU a V with at
    most ``SPARSE_PRODUCT_DENSITY`` nonzeros is multiplied as a sparse matrix, as
    (Vᵀ A)ᵀ = A V (A is symmetric). On a GPU, and for batches, the dense product.
    """
    k = A.shape[-1]
    if V.dim() != 2 or A.dim() != 2 or V.device.type != "cpu" or k < SPARSE_PRODUCT_MIN_K or not V.numel():
        return A @ V
    if int(torch.count_nonzero(V)) > SPARSE_PRODUCT_DENSITY * V.numel():
        return A @ V
    return torch.sparse.mm(V.t().to_sparse(), A).t().contiguous()


def gradient(A: torch.Tensor, B: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """∇f(V) = A V − B."""
    return product(A, V) - B


def value_and_gradient(A: torch.Tensor, B: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(V) per matrix of the batch (summed over the last two axes) and ∇f(V)."""
    AV = product(A, V)
    value = 0.5 * (V * AV).sum((-2, -1)) - (B * V).sum((-2, -1))
    return value, AV - B


def residual_variance(AV: torch.Tensor, B: torch.Tensor, V: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """Each column's residual variance at V, C_jj + 2 f_j(V), in float64 and at least 1e-24 C_jj.

    ``AV`` is A @ V (:func:`product`), which callers often have already.
    """
    Vd = V.double()
    f = 0.5 * (Vd * AV.double()).sum(0) - (B.double() * Vd).sum(0)
    return torch.clamp(variances + 2.0 * f, min=1e-24 * variances)
