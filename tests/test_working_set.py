"""The working-set lasso: the same optimum as FISTA, optimality checked independently."""

from __future__ import annotations

import pytest
import torch

from gene_dag.metrics import count_accuracy
from gene_dag.simulate import simulate_adata
from gene_dag.solver import lasso, score, working_set
from gene_dag.solver.api import fit
from gene_dag.solver.lasso import batched_lasso
from gene_dag.solver.penalty import prox_bounds, prox_l1_masked
from gene_dag.solver.working_set import working_set_lasso


def _problem(k: int = 60, c: int = 400, n: int = 300, seed: int = 0, density: float = 0.04):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, k, generator=gen, dtype=torch.float64)
    X[:, 1:] += 0.6 * X[:, :-1]  # correlated regulators, as co-expressed TFs are
    X = (X - X.mean(0)) / X.std(0)
    A = X.T @ X / n
    truth = (torch.rand(k, c, generator=gen, dtype=torch.float64) < density) * torch.randn(
        k, c, generator=gen, dtype=torch.float64
    )
    Y = X @ truth + torch.randn(n, c, generator=gen, dtype=torch.float64)
    B = X.T @ Y / n
    allowed = (torch.rand(k, c, generator=gen) > 0.1).double()
    sign = torch.where(torch.rand(k, c, generator=gen) < 0.15, torch.sign(torch.randn(k, c, generator=gen)), 0.0)
    return A.float(), B.float(), allowed.float(), sign.double().float()


def _kkt(A, B, V, pen, allowed, sign) -> float:
    """The largest optimality violation of V, in float64 (independent of either solver)."""
    A, B, V, pen = A.double(), B.double(), V.double(), pen.double().expand_as(V)
    G = A @ V - B
    zero = V == 0
    free = (G.abs() - pen).clamp_min(0)
    if sign is not None:
        free = torch.where(sign > 0, (-G - pen).clamp_min(0), torch.where(sign < 0, (G - pen).clamp_min(0), free))
    viol = torch.where(zero, free, (G + pen * torch.sign(V)).abs()) * allowed.double()
    return float(viol.max())


def _objective(A, B, V, pen):
    A, B, V = A.double(), B.double(), V.double()
    return 0.5 * (V * (A @ V)).sum(0) - (B * V).sum(0) + (pen.double() * V.abs()).sum(0)


@pytest.mark.parametrize("signed", [False, True])
def test_working_set_reaches_the_lasso_optimum(signed):
    A, B, allowed, sign = _problem()
    sign = sign if signed else None
    pen = torch.full((A.shape[0], 1), 0.05)
    ws = working_set_lasso(A, B, pen, allowed=allowed, sign=sign, tol=1e-5)
    ref = batched_lasso(A, B, pen, allowed=allowed, sign=sign, tol=1e-6, max_iter=50000)
    assert ws.converged and ref.converged
    assert _kkt(A, B, ws.V, pen, allowed, sign) < 5e-5
    # the same optimum: no column's objective is worse than the long FISTA run's
    gap = _objective(A, B, ws.V, pen) - _objective(A, B, ref.V, pen)
    assert float(gap.max()) < 1e-5
    assert not bool((ws.V[allowed == 0] != 0).any())
    if signed:
        assert not bool(((ws.V * sign) < 0).any())
    # it is sparse, and its support is the reference's (up to coefficients at the tolerance)
    differ = ((ws.V != 0) != (ref.V != 0)).sum()
    assert int(differ) <= 0.01 * int((ref.V != 0).sum())


def test_sparse_weights_take_the_sparse_product_to_the_same_optimum():
    # k = 400 regulators and a few parents per target: the gradients go through a sparse V
    A, B, allowed, _ = _problem(k=400, c=300, n=800, density=0.004)
    pen = torch.full((A.shape[0], 1), 0.2)
    ws = working_set_lasso(A, B, pen, allowed=allowed, tol=1e-5)
    assert ws.converged
    assert A.shape[0] >= score.SPARSE_PRODUCT_MIN_K
    assert float((ws.V != 0).float().mean()) <= score.SPARSE_PRODUCT_DENSITY
    assert _kkt(A, B, ws.V, pen, allowed, None) < 5e-5
    assert torch.allclose(score.product(A, ws.V), A @ ws.V, atol=1e-5)
    dense = torch.randn(A.shape[0], 5)  # a dense V takes the dense product
    assert torch.equal(score.product(A, dense), A @ dense)


def test_settled_columns_are_solved_exactly_on_their_support():
    # at a loose tolerance coordinate descent stops early; the polish then solves each
    # column's support exactly (to float32 rounding), where the sweeps alone leave errors
    # up to the tolerance
    A, B, allowed, _ = _problem()
    pen = torch.full((A.shape[0], 1), 0.05)
    ws = working_set_lasso(A, B, pen, allowed=allowed, tol=1e-3)
    assert ws.converged
    G = A.double() @ ws.V.double() - B.double()
    on_support = ((G + pen.double() * torch.sign(ws.V.double())).abs() * (ws.V != 0)).amax(dim=0)
    assert float((on_support <= 1e-6).double().mean()) >= 0.9
    assert _kkt(A, B, ws.V, pen, allowed, None) < 1e-3


def test_the_polish_solves_a_gram_matrix_without_a_unit_diagonal():
    # a covariance (not a correlation) matrix: the sweeps scale rows by 1 / Aᵢᵢ, and the
    # exact solve on the support must undo that to stay symmetric
    A, B, allowed, _ = _problem()
    scale = torch.linspace(0.5, 3.0, A.shape[0])
    A, B = A * scale[:, None] * scale[None, :], B * scale[:, None]
    pen = torch.full((A.shape[0], 1), 0.05) * scale[:, None]
    ws = working_set_lasso(A, B, pen, allowed=allowed, tol=1e-4)
    assert ws.converged
    assert _kkt(A, B, ws.V, pen, allowed, None) < 2e-4


def test_dense_columns_go_to_fista_and_still_converge():
    A, B, allowed, _ = _problem(seed=1)
    pen = torch.full((A.shape[0], 1), 0.005)  # a small λ: dense solutions
    res = working_set_lasso(A, B, pen, allowed=allowed, tol=1e-5, max_working_set=8)
    assert res.converged
    assert int((res.V != 0).sum(0).max()) > 8  # some columns were solved past the cap
    assert _kkt(A, B, res.V, pen, allowed, None) < 5e-5


def test_warm_start_keeps_the_optimum():
    A, B, allowed, _ = _problem(seed=2)
    pen = torch.full((A.shape[0], 1), 0.05)
    cold = working_set_lasso(A, B, pen, allowed=allowed, tol=1e-5)
    warm = working_set_lasso(A, B, pen * 0.8, allowed=allowed, V0=cold.V, tol=1e-5)
    assert warm.converged
    assert _kkt(A, B, warm.V, pen * 0.8, allowed, None) < 5e-5


@pytest.mark.parametrize("standardize", [False, True])
def test_solve_with_either_lasso_gives_the_same_network(standardize):
    adata = simulate_adata(300, 1000, graph_type="tf", n_regulators=30, seed=4)
    truth = adata.varp["true_dag"]
    regulators = list(adata.var_names[adata.var["is_regulator"].to_numpy()])
    nets = {}
    for method in ("working_set", "fista"):
        res = fit(
            adata,
            regulators=regulators,
            standardize=standardize,
            return_result=True,
            tuning={"lasso_method": method},
        )
        nets[method] = res.adjacency
    a, b = nets["working_set"], nets["fista"]
    shd_ws, shd_fista = count_accuracy(truth, a)["shd"], count_accuracy(truth, b)["shd"]
    assert abs(shd_ws - shd_fista) <= 2
    assert ((a != 0) != (b != 0)).nnz <= 2
    if not standardize:
        assert shd_ws <= 0.05 * truth.nnz


def test_prox_bounds_give_the_masked_signed_soft_threshold():
    gen = torch.Generator().manual_seed(5)
    Z = torch.randn(40, 70, generator=gen, dtype=torch.float64)
    t = 0.3 * torch.rand(40, 1, generator=gen, dtype=torch.float64)
    allowed = (torch.rand(40, 70, generator=gen) > 0.2).double()
    sign = torch.where(torch.rand(40, 70, generator=gen) < 0.3, torch.sign(torch.randn(40, 70, generator=gen)), 0.0)
    for a, s in [(None, None), (allowed, None), (None, sign.double()), (allowed, sign.double())]:
        lo, hi = prox_bounds(t, a, s)
        expected = prox_l1_masked(Z, t, a, s)
        assert torch.equal(Z - Z.clamp(lo, hi), expected)


def test_fista_blocks_of_columns_reach_the_optimum(monkeypatch):
    # blocks of 64 columns: 400 columns are solved in 7 blocks, each with its own restarts
    monkeypatch.setattr(lasso, "FISTA_BLOCK_ELEMENTS", 64 * 60)
    A, B, allowed, sign = _problem(seed=3)
    pen = torch.full((A.shape[0], 1), 0.03)
    blocked = lasso.batched_lasso(A, B, pen, allowed=allowed, sign=sign, tol=1e-6, max_iter=50000)
    assert blocked.converged
    assert _kkt(A, B, blocked.V, pen, allowed, sign) < 5e-5
    assert not bool((blocked.V[allowed == 0] != 0).any()) and not bool(((blocked.V * sign) < 0).any())
    monkeypatch.setattr(lasso, "FISTA_BLOCK_ELEMENTS", 10**9)
    whole = lasso.batched_lasso(A, B, pen, allowed=allowed, sign=sign, tol=1e-6, max_iter=50000)
    gap = (_objective(A, B, blocked.V, pen) - _objective(A, B, whole.V, pen)).abs()
    assert float(gap.max()) < 1e-6


def test_a_column_with_far_more_violators_than_a_working_set_goes_to_fista_in_the_first_round():
    A, B, allowed, _ = _problem(seed=4)
    pen = torch.full((A.shape[0], 1), 1e-4)  # nearly least squares: every coefficient enters
    res = working_set_lasso(A, B, pen, allowed=allowed, tol=1e-5, max_working_set=8)
    assert res.iterations == 1  # one round: every column was seen to be dense at once
    assert res.converged and _kkt(A, B, res.V, pen, allowed, None) < 5e-5


def test_only_columns_with_nearly_collinear_allowed_parents_go_to_feature_sign():
    """In float64 the exact solver is chosen per column, from its allowed parents' conditioning."""
    gen = torch.Generator().manual_seed(4)
    n, k, c = 400, 30, 40
    X = torch.randn(n, k, generator=gen, dtype=torch.float64)
    X[:, 2] = X[:, 0] + X[:, 1] + 1e-3 * torch.randn(n, generator=gen, dtype=torch.float64)  # nearly determined
    X = (X - X.mean(0)) / X.std(0)
    A = X.T @ X / n
    Y = X[:, :6] @ torch.randn(6, c, generator=gen, dtype=torch.float64) + torch.randn(
        n, c, generator=gen, dtype=torch.float64
    )
    B = X.T @ Y / n
    allowed = torch.zeros(k, c, dtype=torch.float64)
    allowed[3:10, :] = 1.0  # well-conditioned parents for every column ...
    allowed[:3, :20] = 1.0  # ... and the collinear triple for the first 20
    fractions = working_set.allowed_residual_fraction(A, allowed)
    for j in (0, 25):
        S = torch.nonzero(allowed[:, j]).flatten()
        expected = 1.0 / torch.linalg.inv(A[S][:, S]).diagonal().max()
        assert float(fractions[j]) == pytest.approx(float(expected), rel=1e-9)
    assert bool((fractions[:20] < working_set.FEATURE_SIGN_FRACTION).all())
    assert bool((fractions[20:] > 0.1).all())

    pen = torch.full((k, 1), 0.02, dtype=torch.float64)
    problem = working_set._Columns.of(A, B, pen, allowed, None)
    V, residual = torch.zeros_like(B), torch.zeros(c, dtype=torch.float64)
    tol = torch.full((c,), 1e-9, dtype=torch.float64)
    rest, converged = problem.exact(V, tol, residual, deadline=None)
    assert converged and rest.tolist() == list(range(20, c))
    assert _kkt(A, B[:, :20], V[:, :20], pen, allowed[:, :20], None) < 1e-8
    assert bool((V[:, 20:] == 0).all())  # left to the working sets

    res = working_set_lasso(A, B, pen, allowed=allowed, tol=1e-9)
    assert res.converged and _kkt(A, B, res.V, pen, allowed, None) < 1e-8
