"""Scale-free solves, automatic sparsity, ranked scores, stability and group centring.

Every test learns from simulated data with a known graph and checks what was recovered
or reported, through the public API (``gene_dag.fit``, ``tl.learn_dag``, the export).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import gene_dag
from gene_dag.export import export_network, read_edges
from gene_dag.metrics import ranking_accuracy
from gene_dag.simulate import simulate_graph, simulate_sem, simulate_weights
from gene_dag.stability import EdgeCounts, chunk_labels, resample_plan


def _sem(d: int, n: int, seed: int, *, edges_per_node: float = 1.5, w_range=(0.5, 2.0)):
    B, _ = simulate_graph(d, "er", edges_per_node=edges_per_node, seed=seed)
    W = simulate_weights(B, w_range=w_range, seed=seed)
    return np.asarray(simulate_sem(W, n, seed=seed), dtype=np.float64), B.toarray() != 0


def _skeleton(M) -> np.ndarray:
    A = (M.toarray() if sp.issparse(M) else np.asarray(M)) != 0
    return A | A.T


# ---------------------------------------------------------------------------- units


def test_weights_are_reported_in_both_units_and_do_not_depend_on_gene_scales():
    X, _ = _sem(12, 2000, seed=1)
    first = gene_dag.fit(X, return_result=True, core_threads=1)
    scaled = X * np.geomspace(1e-3, 1e3, X.shape[1])  # every gene in its own unit
    second = gene_dag.fit(scaled, return_result=True, core_threads=1)
    assert first.adjacency.nnz > 0
    # standardised solves see the same problem: same edges, same standardised weights
    assert (first.adjacency != 0).toarray().tolist() == (second.adjacency != 0).toarray().tolist()
    np.testing.assert_allclose(first.adjacency_std.toarray(), second.adjacency_std.toarray(), atol=2e-3)
    # data units: w_ij = w_std_ij * sd_j / sd_i
    sd = scaled.std(axis=0)
    W, S = second.adjacency.tocoo(), second.adjacency_std.toarray()
    np.testing.assert_allclose(W.data, S[W.row, W.col] * sd[W.col] / sd[W.row], rtol=1e-3)
    assert not np.allclose(first.adjacency.toarray(), second.adjacency.toarray())


def test_standardize_false_keeps_the_raw_problem_and_its_defaults():
    X, B = _sem(15, 2000, seed=2)
    result = gene_dag.fit(X, standardize=False, return_result=True, core_threads=1)
    params = result.info["parameters"]
    assert params["standardize"] is False
    assert result.info["run"]["lambda1_selected"] == pytest.approx(0.02)
    pred = result.adjacency.toarray() != 0
    assert (pred == B).all()  # unit-noise raw data: the raw problem is identifiable and solved exactly


# ---------------------------------------------------------------------------- automatic lambda


def test_automatic_lambda_is_chosen_along_a_path_and_recorded():
    X, B = _sem(20, 1000, seed=3)
    result = gene_dag.fit(X, return_result=True, core_threads=1)
    run = result.info["run"]
    assert result.info["parameters"]["lambda1"] == "auto"
    path, crit = np.asarray(run["lambda_path"]), np.asarray(run["lambda_path_ebic"])
    assert path.size >= 4 and path.size == crit.size == len(run["lambda_path_edges"])
    assert np.all(np.diff(path) < 0)  # from the largest lambda down
    assert run["lambda1_ebic"] == pytest.approx(path[int(np.argmin(crit))])
    assert run["lambda1_selected"] == pytest.approx(max(run["lambda1_ebic"], run["lambda1_noise_floor"]))
    assert run["lambda_at_path_end"] == "no"
    assert 0.5 * B.sum() <= result.adjacency.nnz <= 2 * B.sum()


def test_a_users_lambda_wins():
    X, _ = _sem(20, 1000, seed=3)
    result = gene_dag.fit(X, lambda1=0.3, return_result=True, core_threads=1)
    assert result.info["run"]["lambda1_selected"] == pytest.approx(0.3)
    assert result.info["run"]["lambda1_automatic"] is False
    assert result.info["parameters"]["lambda1"] == pytest.approx(0.3)


def test_lambda_at_the_top_of_its_path_warns_and_is_flagged(caplog):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8))  # independent genes: nothing to select
    with caplog.at_level(logging.WARNING):
        result = gene_dag.fit(X, return_result=True)
    run = result.info["run"]
    assert run["lambda_at_path_end"] == "largest"
    assert "largest of its path" in caplog.text
    assert run["empty_network"] is True and "the network is empty" in caplog.text
    assert result.scores.nnz == 0 or result.scores.max() < 1  # nothing selected at the chosen lambda


def test_lambda_at_the_bottom_of_its_path_warns_and_is_flagged(caplog):
    X, _ = _sem(10, 3000, seed=4, edges_per_node=2.0)
    with caplog.at_level(logging.WARNING):
        result = gene_dag.fit(X, return_result=True, tuning={"path_length": 3, "path_ratio": 0.5})
    assert result.info["run"]["lambda_at_path_end"] == "smallest"
    assert "smallest of its path" in caplog.text


# ---------------------------------------------------------------------------- scores


def test_scores_rank_every_candidate_and_true_edges_first(tmp_path):
    X, B = _sem(25, 1500, seed=5, w_range=(0.1, 1.0))
    adata = pd.DataFrame(X, columns=[f"g{i}" for i in range(X.shape[1])])
    import anndata

    ad = anndata.AnnData(adata.to_numpy(np.float32), var=pd.DataFrame(index=adata.columns))
    gene_dag.tl.learn_dag(ad, w_threshold=0.3, core_threads=1)  # a high threshold drops weak true edges
    W, S = ad.varp["gene_dag"], ad.varp["gene_dag_score"]
    below = (S.toarray() != 0) & (W.toarray() == 0)
    assert below.sum() > 0  # candidates below the threshold are kept and scored
    assert (B & below).sum() > 0  # among them true edges the network missed
    by_score = ranking_accuracy(abs(S).toarray(), B)["auprc"]
    by_network = ranking_accuracy(abs(W).toarray(), B)["auprc"]
    assert by_score > by_network
    export_network(ad, edges=tmp_path / "edges.tsv", pyscenic=tmp_path / "adj.tsv")
    table = read_edges(tmp_path / "edges.tsv")
    assert {"weight", "weight_std", "score", "in_network"} <= set(table.columns)
    assert table["in_network"].sum() == W.nnz and (~table["in_network"]).sum() > 0
    assert list(table["in_network"]) == sorted(table["in_network"], reverse=True)  # network first
    assert len(read_edges(tmp_path / "edges.tsv", network_only=True)) == W.nnz
    assert gene_dag.io.read_network(tmp_path / "edges.tsv").number_of_edges() == W.nnz
    adj = pd.read_csv(tmp_path / "adj.tsv", sep="\t")
    assert list(adj.columns) == ["TF", "target", "importance"] and len(adj) == S.nnz
    assert adj["importance"].is_monotonic_decreasing


# ---------------------------------------------------------------------------- stability


class CountingMatrix:
    """A cells x genes array that counts the rows read from it (the solver streams row blocks)."""

    def __init__(self, X: np.ndarray):
        self._X, self.shape, self.dtype, self.ndim, self.rows_read = X, X.shape, X.dtype, X.ndim, 0

    def __getitem__(self, index):
        block = self._X[index]
        self.rows_read += block.shape[0] if block.ndim == 2 else 1
        return block


def test_stability_frequencies_come_from_one_pass_and_favour_true_edges():
    X, B = _sem(15, 2000, seed=6)
    data = CountingMatrix(X)
    result = gene_dag.fit(data, return_result=True, stability_resamples=10, core_threads=1)
    assert data.rows_read == X.shape[0]  # ten resamples, one pass over the cells
    sel, ori = result.selection_frequency.toarray(), result.orientation_frequency.toarray()
    true_pairs = np.triu(B | B.T, 1)
    false_pairs = np.triu(~(B | B.T), 1)
    assert sel[true_pairs].mean() > sel[false_pairs].mean() + 0.3
    assert sel.max() <= 1 and np.allclose(sel, sel.T)
    linked = sel > 0
    np.testing.assert_allclose((ori + ori.T)[linked], 1.0)
    assert result.info["run"]["stability_resamples"] == 10


def test_stability_is_reproducible_and_blocks_of_resamples_add_up():
    from gene_dag.solver import api

    X, _ = _sem(12, 1200, seed=7)
    first = gene_dag.fit(X, return_result=True, stability_resamples=6, core_threads=1, seed=3)
    again = gene_dag.fit(X, return_result=True, stability_resamples=6, core_threads=1, seed=3)
    assert (first.selection_frequency != again.selection_frequency).nnz == 0
    # the engine of a fan-out: resamples solved in blocks (separate calls, each its own pass), counts summed
    options = dict(stability_resamples=6, core_threads=1, seed=3)
    parts = [api.stability_block(X, ids, **options) for ids in ([0, 1], [2, 3, 4], [5])]
    total = parts[0] + parts[1] + parts[2]
    assert total.n_resamples == 6
    selection, orientation = total.frequencies()
    assert (selection != first.selection_frequency).nnz == 0
    assert (orientation != first.orientation_frequency).nnz == 0
    with pytest.raises(gene_dag.errors.ConfigError, match="not one of the 6 resamples"):
        api.stability_block(X, [6], **options)


def test_resample_plan_pairs_are_disjoint_and_chunks_balanced():
    plan = resample_plan(20, 8, 0.5, seed=1)
    assert plan.shape == (8, 10)
    for a, b in zip(plan[::2], plan[1::2], strict=True):
        assert not set(a) & set(b)
    labels = chunk_labels(1003, 20, seed=1)
    assert np.bincount(labels).max() - np.bincount(labels).min() <= 1
    assert np.array_equal(resample_plan(20, 8, 0.5, seed=1), plan)


def test_edge_counts_round_trip(tmp_path):
    counts = EdgeCounts.empty(4)
    counts.add(sp.csr_matrix(np.eye(4, k=1)))
    counts.save(tmp_path / "c.npz")
    back = EdgeCounts.load(tmp_path / "c.npz")
    assert back.n_resamples == 1 and (back.directed != counts.directed).nnz == 0


def test_odd_resamples_are_refused():
    with pytest.raises(gene_dag.errors.ConfigError, match="even"):
        gene_dag.fit(np.zeros((10, 3)), stability_resamples=3)


# ---------------------------------------------------------------------------- groups


def test_group_centring_keeps_differences_between_group_means_out_of_the_network():
    rng = np.random.default_rng(8)
    n = 1500
    group = rng.integers(0, 2, n)
    X = rng.standard_normal((n, 6))
    X[:, 1] += 0.8 * X[:, 0]  # one true edge, 0 -> 1
    X[:, 4] += 3.0 * group  # genes 4 and 5 only share their cell type's mean
    X[:, 5] += 3.0 * group
    pooled = gene_dag.fit(X, return_result=True, core_threads=1)
    centred = gene_dag.fit(X, groups=group, return_result=True, core_threads=1)
    assert _skeleton(pooled.adjacency)[4, 5]  # confounded by the groups' means
    assert not _skeleton(centred.adjacency)[4, 5]
    assert _skeleton(centred.adjacency)[0, 1]
    assert centred.info["run"]["groups"] == "0, 1"


def test_learn_dag_groupby_reads_an_obs_column():
    import anndata

    rng = np.random.default_rng(9)
    X = rng.standard_normal((400, 4)).astype(np.float32)
    ad = anndata.AnnData(X, obs=pd.DataFrame({"cell_type": rng.choice(["a", "b"], 400)}, index=map(str, range(400))))
    gene_dag.tl.learn_dag(ad, groupby="cell_type")
    assert ad.uns["gene_dag"]["parameters"]["groupby"] == "cell_type"
    assert ad.uns["gene_dag"]["run"]["groups"] == "a, b"
    with pytest.raises(gene_dag.errors.ConfigError, match="obs column"):
        gene_dag.tl.learn_dag(ad, groupby="nope")


def test_only_stable_edges_are_kept_in_process_and_after_a_merge():
    import anndata

    X, _ = _sem(12, 1200, seed=7, w_range=(0.1, 0.6))  # weak effects: some edges come and go
    full = gene_dag.fit(X, return_result=True, stability_resamples=6, core_threads=1, seed=3)
    stable = gene_dag.fit(
        X, return_result=True, stability_resamples=6, stability_min_frequency=0.9, core_threads=1, seed=3
    )
    sel = full.selection_frequency.toarray()
    kept = (full.adjacency.toarray() != 0) & (sel >= 0.9)
    assert 0 < kept.sum() < full.adjacency.nnz  # some edges are unstable, some stable
    assert ((stable.adjacency.toarray() != 0) == kept).all()
    assert ((stable.adjacency_std.toarray() != 0) == kept).all()
    assert stable.info["run"]["n_unstable_edges_dropped"] == full.adjacency.nnz - kept.sum()
    # the same rule when block counts are merged into a network solved without resamples
    ad = anndata.AnnData(X.astype(np.float32))
    gene_dag.tl.learn_dag(ad, core_threads=1, seed=3)
    counts = gene_dag.solver.api.stability_block(X, range(6), stability_resamples=6, core_threads=1, seed=3)
    gene_dag.tl.add_stability(ad, counts, min_frequency=0.9)
    merged = ad.varp["gene_dag"].toarray() != 0
    assert (merged <= (ad.varp["gene_dag_selection"].toarray() >= 0.9)).all()
    assert ((ad.varp["gene_dag_std"].toarray() != 0) == merged).all()
    assert ad.uns["gene_dag"]["run"]["n_edges"] == merged.sum()
