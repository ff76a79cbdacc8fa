"""Simulated graphs and data: acyclic, the requested size, the right covariance, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from gene_dag.errors import ConfigError, InputError
from gene_dag.simulate import simulate_adata, simulate_graph, simulate_sem, simulate_weights


def is_dag(B: sp.spmatrix) -> bool:
    """Acyclic iff every strongly connected component is a single node without a self-loop."""
    n_components, _ = connected_components(B, directed=True, connection="strong")
    return n_components == B.shape[0] and not B.diagonal().any()


@pytest.mark.parametrize("graph_type", ["er", "sf", "tf"])
def test_graphs_are_acyclic_binary_csr(graph_type):
    for seed in range(3):
        B, is_regulator = simulate_graph(300, graph_type, n_regulators=30, seed=seed)
        assert sp.issparse(B) and B.format == "csr" and B.shape == (300, 300)
        assert set(np.unique(B.data)) == {1}
        assert is_regulator.dtype == bool and is_regulator.shape == (300,)
        assert is_dag(B)


def test_cycle_check_detects_a_cycle():
    # Guards the helper above: a 3-cycle must be reported as not a DAG.
    assert not is_dag(sp.csr_matrix(np.roll(np.eye(3), 1, axis=1)))


def test_er_edge_count_matches_expectation():
    d, per_node = 2000, 2.0
    counts = [simulate_graph(d, "er", edges_per_node=per_node, seed=s)[0].nnz for s in range(4)]
    # Binomial count: sd of one draw is about sqrt(4000) = 63; the mean of 4 has sd ~32.
    assert abs(np.mean(counts) - per_node * d) < 130


def test_sf_edge_count_and_hubs():
    d, m = 2000, 2
    B, is_regulator = simulate_graph(d, "sf", edges_per_node=m, seed=0)
    assert B.nnz == m * (d - 1) - m * (m - 1) // 2  # exactly m parents per node after the first m
    in_degree = np.diff(B.tocsc().indptr)
    assert in_degree.max() == m
    out_degree = np.diff(B.indptr)
    assert out_degree.max() > 10 * m  # preferential attachment grows hubs
    np.testing.assert_array_equal(is_regulator, out_degree > 0)


def test_er_regulators_are_nodes_with_children():
    B, is_regulator = simulate_graph(500, "er", seed=3)
    np.testing.assert_array_equal(is_regulator, np.diff(B.indptr) > 0)


def test_tf_structure_and_edge_counts():
    d, k, reg_par, tgt_par = 3000, 300, 1.0, 2.5
    totals = []
    for seed in range(3):
        B, is_regulator = simulate_graph(
            d, "tf", n_regulators=k, regulator_parents=reg_par, target_parents=tgt_par, seed=seed
        )
        assert is_regulator.sum() == k
        assert B[~is_regulator].nnz == 0  # no edge out of a non-regulator
        in_degree = np.diff(B.tocsc().indptr)
        assert (in_degree[~is_regulator] >= 1).all()
        totals.append((B[is_regulator][:, is_regulator].nnz, B[:, ~is_regulator].nnz))
    among_regulators, into_targets = np.mean(totals, axis=0)
    # Expectations: reg_par * k = 300 (sd of the mean ~10) and tgt_par * (d - k) = 6750 (sd ~40).
    assert abs(among_regulators - reg_par * k) < 50
    assert abs(into_targets - tgt_par * (d - k)) < 200


def test_order_is_hidden():
    # Without the random permutation every edge would point from a lower to a higher index.
    B, _ = simulate_graph(200, "er", seed=0)
    rows, cols = B.nonzero()
    assert 0.3 < np.mean(rows < cols) < 0.7


def test_same_seed_same_graph_weights_and_data():
    def run(seed):
        B, reg = simulate_graph(100, "tf", n_regulators=10, seed=seed)
        W = simulate_weights(B, seed=seed)
        return B, reg, W, simulate_sem(W, 50, seed=seed)

    a, b, c = run(7), run(7), run(8)
    assert (a[0] != b[0]).nnz == 0 and (a[2] != b[2]).nnz == 0
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[3], b[3])
    assert (a[0] != c[0]).nnz > 0
    assert not np.array_equal(a[3], c[3])


def test_weights_range_and_signs():
    B, _ = simulate_graph(400, "er", seed=1)
    W = simulate_weights(B, w_range=(0.5, 2.0), seed=1)
    assert W.dtype == np.float64 and W.nnz == B.nnz
    np.testing.assert_array_equal(W.indices, B.indices)
    assert (np.abs(W.data) >= 0.5).all() and (np.abs(W.data) <= 2.0).all()
    assert 0.4 < np.mean(W.data > 0) < 0.6


@pytest.mark.parametrize("noise_scale", [1.0, "per_gene"])
def test_covariance_matches_analytic(noise_scale):
    d, n = 6, 200_000
    B, _ = simulate_graph(d, "er", edges_per_node=1.5, seed=4)
    assert B.nnz >= 4  # a graph with real structure to check
    W = simulate_weights(B, seed=4).toarray()
    scale = np.linspace(0.5, 1.5, d) if noise_scale == "per_gene" else 1.0
    X = simulate_sem(W, n, noise_scale=scale, seed=4).astype(np.float64)
    assert X.dtype == np.float64 and X.shape == (n, d)
    inv = np.linalg.inv(np.eye(d) - W)
    sigma = inv.T @ np.diag(np.broadcast_to(np.square(scale), d)) @ inv
    sample = X.T @ X / n
    # Sampling sd of a Gaussian covariance entry: sqrt((S_ii S_jj + S_ij^2) / n); allow 5 sd.
    sd = np.sqrt((np.outer(np.diag(sigma), np.diag(sigma)) + sigma**2) / n)
    assert np.all(np.abs(sample - sigma) < 5 * sd), np.max(np.abs(sample - sigma) / sd)


@pytest.mark.parametrize("noise_type", ["exponential", "gumbel"])
def test_non_gaussian_noise_has_the_sem_structure(noise_type):
    # Two genes, 0 -> 1 with weight 1.5: X1 - 1.5 X0 is the noise of gene 1, independent of X0.
    W = sp.csr_matrix(([1.5], ([0], [1])), shape=(2, 2))
    X = simulate_sem(W, 100_000, noise_type=noise_type, seed=0).astype(np.float64)
    residual = X[:, 1] - 1.5 * X[:, 0]
    assert abs(np.corrcoef(residual, X[:, 0])[0, 1]) < 0.02
    skew = np.mean((X[:, 0] - X[:, 0].mean()) ** 3) / X[:, 0].std() ** 3
    assert skew > 0.5  # both are right-skewed, unlike the Gaussian default


def test_sem_rejects_cycles_and_bad_parameters():
    with pytest.raises(InputError, match="not acyclic"):
        simulate_sem(sp.csr_matrix(np.array([[0, 1.0], [1.0, 0]])), 10)
    with pytest.raises(ConfigError, match="noise_scale"):
        simulate_sem(sp.csr_matrix((3, 3)), 10, noise_scale=np.ones(2))
    with pytest.raises(ConfigError, match="graph_type"):
        simulate_graph(10, "bogus")
    with pytest.raises(ConfigError, match="n_regulators"):
        simulate_graph(10, "tf", n_regulators=11)


def test_simulate_adata_layout_roundtrips(tmp_path):
    import anndata

    adata = simulate_adata(d=120, n=80, graph_type="tf", n_regulators=12, w_range=(0.3, 1.0), seed=5)
    assert adata.shape == (80, 120)
    assert adata.X.dtype == np.float32
    assert adata.var_names[0] == "G0000" and adata.var_names[-1] == "G0119"
    assert adata.obs_names.is_unique
    W = adata.varp["true_dag"]
    assert sp.issparse(W) and W.format == "csr" and W.dtype == np.float64
    assert is_dag(W)
    assert adata.var["is_regulator"].dtype == bool and adata.var["is_regulator"].sum() == 12
    assert W[~adata.var["is_regulator"].to_numpy()].nnz == 0

    path = tmp_path / "sim.h5ad"
    adata.write_h5ad(path)
    back = anndata.read_h5ad(path)
    assert back.X.dtype == np.float32
    assert sp.issparse(back.varp["true_dag"]) and back.varp["true_dag"].format == "csr"
    assert (back.varp["true_dag"] != W).nnz == 0
    params = back.uns["simulation"]
    assert params["graph_type"] == "tf" and params["n_regulators"] == 12 and params["seed"] == 5
    np.testing.assert_array_equal(params["w_range"], [0.3, 1.0])
    assert params["n_edges"] == W.nnz
    # The recorded parameters regenerate the same data.
    again = simulate_adata(
        d=params["genes"],
        n=params["cells"],
        graph_type=params["graph_type"],
        n_regulators=params["n_regulators"],
        regulator_parents=params["regulator_parents"],
        target_parents=params["target_parents"],
        w_range=tuple(params["w_range"]),
        noise_scale=params["noise_scale"],
        seed=params["seed"],
    )
    np.testing.assert_array_equal(again.X, back.X)
