"""The edge-reversal refinement fixes a reversed edge and never breaks a prior."""

from __future__ import annotations

import numpy as np
import pytest

from gene_dag.solver.refine import refine_reversals


def _gram(seed: int = 0, n: int = 5000):
    """A chain 0 -> 1 -> 2 -> 3 plus 0 -> 3, equal noise, in the solver's scaled space."""
    rng = np.random.default_rng(seed)
    W = np.zeros((4, 4))
    W[0, 1], W[1, 2], W[2, 3], W[0, 3] = 1.0, -1.2, 0.8, 0.9
    X = rng.normal(size=(n, 4)) @ np.linalg.inv(np.eye(4) - W)
    C = X.T @ X / n
    sigma = np.sqrt(np.diag(C))
    return C / np.outer(sigma, sigma), C / sigma[:, None], sigma, W


def _run(V, allowed=None, required=None, sign=None):
    A, B, sigma, _ = _gram()
    d = 4
    allowed = ~np.eye(d, dtype=bool) if allowed is None else allowed
    required = np.zeros((d, d), dtype=bool) if required is None else required
    return refine_reversals(
        A,
        B,
        V * sigma[:, None],
        pen=np.full((d, d), 0.02) / sigma[:, None],
        allowed=allowed,
        required=required,
        sign=sign,
        sigma=sigma,
        core_rows=np.arange(d),
        w_threshold=0.3,
    )


def _support(Vs, sigma):
    return np.abs(Vs / sigma[:, None]) >= 0.3


def test_reversed_edge_is_turned_back():
    _, _, sigma, W = _gram()
    wrong = W.copy()
    wrong[1, 2], wrong[2, 1] = 0.0, -0.5  # 1 -> 2 reversed
    out, summary = _run(wrong)
    assert summary["refine_reversals"] >= 1
    assert (_support(out, sigma) == (W != 0)).all()


def test_true_graph_is_left_alone():
    _, _, sigma, W = _gram()
    out, summary = _run(W.copy())
    assert summary["refine_reversals"] == 0
    assert np.allclose(out, W * sigma[:, None])


@pytest.mark.parametrize("block", ["required", "forbidden"])
def test_priors_block_the_reversal(block):
    _, _, sigma, W = _gram()
    wrong = W.copy()
    wrong[1, 2], wrong[2, 1] = 0.0, -0.5
    allowed = ~np.eye(4, dtype=bool)
    required = np.zeros((4, 4), dtype=bool)
    if block == "required":
        required[2, 1] = True  # the wrong edge is required: it must stay
    else:
        allowed[1, 2] = False  # the true direction is forbidden: it must not appear
    out, _ = _run(wrong, allowed, required)
    sup = _support(out, sigma)
    assert sup[2, 1] and not sup[1, 2]
    assert _acyclic(sup)


def _acyclic(sup):
    reach = sup.astype(int)
    for _ in range(4):
        reach = ((reach + reach @ sup.astype(int)) > 0).astype(int)
    return np.trace(reach) == 0
