"""OWL-QN (the default inner solver) and the LU-based log-det h against references."""

from __future__ import annotations

import math

import pytest
import torch

from gene_dag.solver.acyclicity import h_logdet
from gene_dag.solver.lasso import batched_lasso
from gene_dag.solver.owlqn import LBFGSMemory, minimize_owlqn


def _problem(seed: int, k: int = 12, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(200, k, generator=g, dtype=torch.float64)
    A = X.T @ X / 200
    B = A @ (torch.randn(k, c, generator=g, dtype=torch.float64) * (torch.rand(k, c, generator=g) < 0.3))
    return A, B + 0.05 * torch.randn(k, c, generator=g, dtype=torch.float64)


def _quadratic(A, B):
    def smooth(V):
        AV = A @ V
        return 0.5 * (V * AV).sum() - (B * V).sum(), AV - B

    return smooth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_owlqn_matches_fista_on_masked_signed_lasso(seed):
    A, B = _problem(seed)
    g = torch.Generator().manual_seed(100 + seed)
    mask = (torch.rand(B.shape, generator=g) < 0.8).double()
    sign = torch.where(torch.rand(B.shape, generator=g) < 0.2, 1.0, 0.0).double()
    pen = torch.full(B.shape, 0.05, dtype=torch.float64)
    ref = batched_lasso(A, B, pen, allowed=mask, sign=sign, tol=1e-12, max_iter=20000).V
    res = minimize_owlqn(_quadratic(A, B), torch.zeros_like(B), pen, mask, sign, ftol=1e-15, gtol=1e-10)
    assert torch.allclose(res.V, ref, atol=1e-6)
    assert bool((res.V[mask == 0] == 0).all())  # the mask holds exactly
    assert bool((res.V[sign > 0] >= 0).all())  # and the sign constraints
    assert int((ref != 0).sum()) == int((res.V != 0).sum())  # the same exact zeros


def test_owlqn_backtracks_out_of_an_infinite_domain():
    """A value of +inf (log-det outside its domain) is a failed step, not a crash."""
    A, B = _problem(3)

    def smooth(V):
        f, g = _quadratic(A, B)(V)
        return (f if float(V.abs().sum()) < 1.0 else torch.tensor(math.inf, dtype=V.dtype)), g

    res = minimize_owlqn(smooth, torch.zeros_like(B), torch.zeros_like(B), torch.ones_like(B))
    assert float(res.V.abs().sum()) < 1.0 and math.isfinite(float(smooth(res.V)[0]))


def test_compact_lbfgs_direction_matches_the_two_loop_recursion():
    g = torch.Generator().manual_seed(0)
    n, m = 40, 5
    M = torch.randn(n, n, generator=g, dtype=torch.float64)
    H = M @ M.T + torch.eye(n, dtype=torch.float64)
    S = [torch.randn(n, generator=g, dtype=torch.float64) for _ in range(9)]
    Y = [H @ s for s in S]
    q = torch.randn(n, generator=g, dtype=torch.float64)
    mem = LBFGSMemory(n, m, torch.float64, torch.device("cpu"))
    for s, y in zip(S, Y, strict=True):
        mem.push(s, y)
    pairs = list(zip(S, Y, strict=True))[-m:]  # the memory keeps the newest m pairs
    r, alphas = q.clone(), []
    for s, y in reversed(pairs):
        a = (s @ r) / (s @ y)
        alphas.append(a)
        r -= a * y
    r *= (pairs[-1][0] @ pairs[-1][1]) / (pairs[-1][1] @ pairs[-1][1])
    for (s, y), a in zip(pairs, reversed(alphas), strict=True):
        r += (a - (y @ r) / (s @ y)) * s
    assert torch.allclose(mem.direction(q), r, atol=1e-12)


def test_h_logdet_matches_slogdet_and_autograd():
    g = torch.Generator().manual_seed(1)
    U = (0.2 * torch.randn(3, 8, 8, generator=g, dtype=torch.float64)).requires_grad_(True)
    h, grad = h_logdet(U.detach())
    eye = torch.eye(8, dtype=torch.float64)
    ref = -torch.linalg.slogdet(eye - U * U)[1]
    assert torch.allclose(h, ref.detach(), atol=1e-12)
    ref.sum().backward()
    assert torch.allclose(grad, U.grad, atol=1e-10)
    # outside the domain (spectral radius of U∘U above 1): +inf, as DAGMA tests it
    big = torch.full((1, 3, 3), 1.5, dtype=torch.float64)
    assert math.isinf(float(h_logdet(big, need_grad=False)[0]))
