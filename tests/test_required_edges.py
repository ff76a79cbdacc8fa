"""Required edges of the prior are in every output, on every solver path, even where the data
contradict them (the reverse of a strong true edge): the DAG keeps them and drops what would
close a cycle with them instead."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gene_dag.graph import is_dag
from gene_dag.simulate import simulate_adata
from gene_dag.solver.api import fit


@functools.cache
def er12():
    return simulate_adata(d=12, n=2000, graph_type="er", edges_per_node=1.5, seed=0)


def reversed_strongest(adata, n: int) -> pd.DataFrame:
    """Required edges that are the reverses of the n strongest true edges."""
    true = adata.varp["true_dag"].tocoo()
    top = np.argsort(-np.abs(true.data))[:n]
    genes = adata.var_names
    return pd.DataFrame(
        {"source": genes[true.col[top]], "target": genes[true.row[top]], "type": "required", "weight": 1.0}
    )


def present(W: sp.spmatrix, adata, table: pd.DataFrame) -> np.ndarray:
    W = sp.csr_matrix(W)
    genes = adata.var_names
    return np.array(
        [W[genes.get_loc(s), genes.get_loc(t)] != 0 for s, t in zip(table.source, table.target, strict=True)]
    )


@pytest.mark.parametrize(
    "path, options, standardize",
    [
        ("whole core (central path, support refit, refinement)", {}, True),
        ("whole core, raw (order refit, least-residual order a candidate)", {}, False),
        ("active set with order refit", {"full_core_max": 0}, True),
        ("undecomposed", {"decompose": False}, True),
        ("whole core without refinement or refit", {"refine": False, "refit": False}, True),
    ],
)
def test_required_edges_contradicted_by_the_data_are_kept(path, options, standardize):
    adata = er12()
    required = reversed_strongest(adata, 3)
    W = fit(adata, prior=required, device="cpu", tuning=options, standardize=standardize)
    assert is_dag(W)
    assert present(W, adata, required).all(), f"{path}: a required edge was dropped"
    # the true edges they reverse would close a cycle: they must be gone
    assert not present(W, adata, required.rename(columns={"source": "target", "target": "source"})).any()


def test_required_edge_into_a_lasso_column_is_kept_without_support():
    """A regulator -> target edge the data do not support (outside the cycle core: the lasso stage)."""
    adata = simulate_adata(d=30, n=2000, graph_type="tf", n_regulators=4, seed=0)
    true = adata.varp["true_dag"].toarray() != 0
    regulators = list(adata.var_names[adata.var["is_regulator"].to_numpy()])
    reg_idx = [adata.var_names.get_loc(r) for r in regulators]
    targets = [j for j in range(adata.n_vars) if j not in reg_idx and not true[reg_idx[0], j]]
    required = pd.DataFrame(
        {"source": [regulators[0]], "target": [adata.var_names[targets[0]]], "type": ["required"], "weight": [1.0]}
    )
    result = fit(adata, regulators=regulators, prior=required, device="cpu", return_result=True)
    assert present(result.adjacency, adata, required).all()
    assert result.info["run"]["required_edges_missing"] == 0


def test_a_required_edge_from_a_constant_regulator_is_reported_missing(caplog):
    adata = er12().copy()
    adata.X[:, 0] = 1.0  # G0000 is constant: no edge out of it can carry a weight
    required = pd.DataFrame({"source": ["G0000"], "target": ["G0005"], "type": ["required"], "weight": [1.0]})
    with caplog.at_level("WARNING"):
        result = fit(adata, prior=required, device="cpu", return_result=True)
    assert result.info["run"]["required_edges_missing"] == 1
    assert "required edge(s) have weight 0" in caplog.text
