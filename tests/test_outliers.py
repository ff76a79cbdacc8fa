"""One extreme value must not silence the other genes, and genes whose variance one cell
holds are reported (log WARNING, statistics, ``uns``)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse as sp

from gene_dag.simulate import simulate_adata
from gene_dag.solver.api import fit
from gene_dag.stats import compute_stats


@pytest.mark.parametrize("sparse", [False, True])
def test_single_cell_share_of_variance(sparse, caplog):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4)) + 5.0
    X[7, 2] = 1e6  # gene 2: one cell holds nearly all of its variance
    X[:, 3] = np.where(rng.random(500) < 0.9, 0.0, X[:, 3])  # sparse but not dominated by one cell
    data = sp.csr_matrix(X) if sparse else X
    with caplog.at_level(logging.WARNING):
        stats = compute_stats(data, progress=False)
    # the share one cell has of each gene's variance, computed directly
    expected = ((X - X.mean(0)) ** 2).max(0) / (len(X) * X.var(0))
    np.testing.assert_allclose(stats.max_cell_share, expected, rtol=1e-9)
    assert stats.outlier_dominated.tolist() == [False, False, True, False]
    assert "1 gene(s) owe more than 50% of their variance to a single cell" in caplog.text


def test_one_extreme_value_does_not_empty_the_network(caplog):
    adata = simulate_adata(d=20, n=2000, graph_type="er", edges_per_node=1.0, seed=0)
    adata.X[5, 3] = 1e10  # a unit error in one cell of one gene
    with caplog.at_level(logging.WARNING):
        result = fit(adata, device="cpu", return_result=True)
    assert result.adjacency.nnz > 0
    run = result.info["run"]
    assert run["n_outlier_dominated_genes"] == 1 and run["outlier_dominated_genes"] == ["G0003"]
    assert "G0003" in caplog.text
    # edges among the other genes are still found
    keep = np.arange(20) != 3
    true = adata.varp["true_dag"].toarray()[np.ix_(keep, keep)] != 0
    found = result.adjacency.toarray()[np.ix_(keep, keep)] != 0
    assert (true & found).sum() >= 0.25 * true.sum()
