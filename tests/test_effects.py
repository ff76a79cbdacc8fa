"""Total effects, path counts and interventions under a linear SEM, against dense linear algebra."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from gene_dag import effects
from gene_dag.errors import InputError


def random_dag(d: int, p: float, seed: int) -> np.ndarray:
    """A weighted DAG whose genes are not in topological order (a random permutation)."""
    rng = np.random.default_rng(seed)
    W = np.triu(rng.uniform(0.3, 1.2, (d, d)) * rng.choice([-1, 1], (d, d)) * (rng.random((d, d)) < p), 1)
    perm = rng.permutation(d)
    return W[np.ix_(perm, perm)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_total_effects_are_rows_of_the_dense_inverse(seed):
    W = random_dag(40, 0.12, seed)
    dense = np.linalg.inv(np.eye(40) - W)
    sources = [3, 0, 17, 39]
    T = effects.total_effects(sp.csr_matrix(W), sources)
    np.testing.assert_allclose(T, dense[sources], atol=1e-5, rtol=0)
    assert np.abs(T).sum() > len(sources)  # not only the unit diagonal


def test_path_counts_match_the_inverse_of_the_pattern():
    W = random_dag(30, 0.15, 4)
    A = (W != 0).astype(float)
    dense = np.linalg.inv(np.eye(30) - A)
    np.testing.assert_allclose(effects.path_counts(sp.csr_matrix(W), range(30)), dense, atol=1e-6)
    # a diamond a -> b -> d, a -> c -> d: two paths from a to d
    D = sp.csr_matrix(([1.0, 1.0, 1.0, 1.0], ([0, 0, 1, 2], [1, 2, 3, 3])), shape=(4, 4))
    assert effects.path_counts(D, [0])[0].tolist() == [1, 1, 1, 2]


def test_a_cycle_is_refused():
    W = sp.csr_matrix(([0.5, 0.5], ([0, 1], [1, 0])), shape=(2, 2))
    with pytest.raises(InputError, match="directed cycle"):
        effects.total_effects(W, [0])


def test_joint_intervention_cuts_the_edges_into_the_intervened_genes():
    # a -> b -> c and a -> c: holding b fixed leaves only a's direct edge to c
    W = sp.csr_matrix(([2.0, 3.0, 0.5], ([0, 1, 0], [1, 2, 2])), shape=(3, 3))
    assert effects.total_effects(W, [0])[0].tolist() == [1.0, 2.0, 0.5 + 6.0]
    T = effects.total_effects(W, [0, 1], cut=True)
    assert T.tolist() == [[1.0, 0.0, 0.5], [0.0, 1.0, 3.0]]
    shift = effects.intervention_shift(W, [0, 1], np.array([[1.0, 0.0]]))
    assert shift.tolist() == [[1.0, 0.0, 0.5]]


def test_intervention_shift_equals_solving_the_mutilated_sem():
    d, n = 25, 6
    rng = np.random.default_rng(5)
    W = random_dag(d, 0.2, 5)
    Z = rng.normal(size=(n, d))
    X = Z @ np.linalg.inv(np.eye(d) - W)  # X = XW + Z
    S = [2, 11]
    v = np.array([0.0, 1.5])
    W_cut = W.copy()
    W_cut[:, S] = 0.0
    Z_cut = Z.copy()
    Z_cut[:, S] = v  # the intervened genes are exactly v
    X_new = Z_cut @ np.linalg.inv(np.eye(d) - W_cut)
    shift = effects.intervention_shift(sp.csr_matrix(W), S, v[None, :] - X[:, S])
    np.testing.assert_allclose(X + shift, X_new, atol=1e-9)


def test_twenty_thousand_genes_without_a_dense_matrix():
    d = 20_000
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 200, size=40_000)  # 200 regulators -> any later gene
    cols = rng.integers(200, d, size=rows.size)
    W = sp.csr_matrix((rng.uniform(-1, 1, rows.size), (rows, cols)), shape=(d, d))
    chain = sp.csr_matrix(([0.5, 0.5], ([0, 1], [1, 2])), shape=(d, d))  # 0 -> 1 -> 2 among regulators
    W = (W + chain).tocsr()
    T = effects.total_effects(W, [0, 5])
    assert T.shape == (2, d)
    direct = W[0].toarray().ravel()
    via_1 = 0.5 * W[1].toarray().ravel()
    via_2 = 0.25 * W[2].toarray().ravel()
    expected = direct + via_1 + via_2
    expected[0] = 1.0
    np.testing.assert_allclose(T[0], expected, atol=1e-12)
