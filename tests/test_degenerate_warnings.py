"""Results that are empty or rest on too little data say so: a WARNING in the log and a flag in uns."""

from __future__ import annotations

import logging

import numpy as np

from gene_dag.simulate import simulate_adata
from gene_dag.solver.api import fit


def run(adata, caplog, **options):
    with caplog.at_level(logging.WARNING):
        result = fit(adata, device="cpu", return_result=True, **options)
    return result, result.info["run"]


def test_an_empty_network_is_flagged_and_warned(caplog):
    adata = simulate_adata(d=10, n=500, graph_type="er", edges_per_node=1.0, seed=0)
    result, run_info = run(adata, caplog, lambda1=50.0)
    assert result.adjacency.nnz == 0
    assert run_info["empty_network"] is True
    assert "the network is empty" in caplog.text


def test_a_network_with_edges_is_not_flagged(caplog):
    adata = simulate_adata(d=10, n=500, graph_type="er", edges_per_node=1.0, seed=0)
    result, run_info = run(adata, caplog)
    assert result.adjacency.nnz > 0
    assert run_info["empty_network"] is False and run_info["fewer_cells_than_genes"] is False
    assert run_info["n_constant_regulators"] == 0
    assert "empty" not in caplog.text and "fewer cells" not in caplog.text


def test_fewer_cells_than_genes_is_flagged_and_warned(caplog):
    adata = simulate_adata(d=40, n=30, graph_type="er", edges_per_node=1.0, seed=0)
    _, run_info = run(adata, caplog)
    assert run_info["fewer_cells_than_genes"] is True
    assert "30 cells for 40 genes" in caplog.text


def test_constant_regulators_are_named(caplog):
    adata = simulate_adata(d=10, n=500, graph_type="er", edges_per_node=1.0, seed=0)
    adata.X[:, [2, 5]] = np.float32(3.0)
    result, run_info = run(adata, caplog, regulators=["G0002", "G0005", "G0000"])
    assert run_info["n_constant_regulators"] == 2
    assert run_info["constant_regulators"] == ["G0002", "G0005"]
    assert "2 regulator(s) are constant" in caplog.text
    W = result.adjacency.toarray()
    assert not W[[2, 5]].any()
