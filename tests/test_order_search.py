"""Best-order search on the Gaussian BIC (solver/order_search.py) and its use on standardised cores."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import scipy.sparse as sp

from gene_dag.graph import topological_order
from gene_dag.metrics import count_accuracy
from gene_dag.simulate import simulate_graph, simulate_sem, simulate_weights
from gene_dag.solver.api import fit
from gene_dag.solver.order_search import best_order_search, bic_penalty, grow_shrink
from gene_dag.solver.settings import Tuning


def standardised_sem(d: int, graph: str, edges_per_node: float, n: int, seed: int):
    B, _ = simulate_graph(d, graph_type=graph, edges_per_node=edges_per_node, seed=seed)
    W = simulate_weights(B, seed=seed + 1)
    X = np.asarray(simulate_sem(W, n, seed=seed + 2), dtype=np.float64)
    X = (X - X.mean(0)) / X.std(0)
    return B.toarray() != 0, X


def bic_of(C: np.ndarray, n: int, target: int, parents: tuple, penalty: float) -> float:
    S = list(parents)
    rss = C[target, target] - (C[target, S] @ np.linalg.solve(C[np.ix_(S, S)], C[S, target]) if S else 0.0)
    return n / 2 * np.log(rss) + penalty * len(S)


def test_grow_shrink_finds_the_best_subset_when_effects_are_clear():
    B, X = standardised_sem(8, "er", 1.5, 3000, seed=4)
    n, C = X.shape[0], X.T @ X / X.shape[0]
    pen = bic_penalty(n)
    targets = np.array([t for t in range(8) if B[:, t].any()])
    available = np.ones((targets.size, 8), dtype=bool)
    available[np.arange(targets.size), targets] = False
    scores, sel = grow_shrink(C, targets, available, np.zeros_like(available), n_cells=n, penalty=pen)
    for b, t in enumerate(targets):
        others = [i for i in range(8) if i != t]
        best = min(
            (bic_of(C, n, t, S, pen), S) for r in range(len(others) + 1) for S in itertools.combinations(others, r)
        )
        assert scores[b] == pytest.approx(best[0], abs=1e-6)
        assert set(np.flatnonzero(sel[b])) == set(best[1])


def test_grow_shrink_keeps_forced_parents_and_never_takes_unavailable_ones():
    B, X = standardised_sem(10, "er", 2.0, 2000, seed=1)
    n, C = X.shape[0], X.T @ X / X.shape[0]
    t = int(np.argmax(B.sum(axis=0)))
    available = np.ones((1, 10), dtype=bool)
    available[0, t] = False
    true_parent = int(np.flatnonzero(B[:, t])[0])
    available[0, true_parent] = False
    forced = np.zeros_like(available)
    weak = int(np.argmin(np.abs(C[t]) + np.eye(10)[t]))  # the gene least correlated with t
    available[0, weak] = forced[0, weak] = True
    _, sel = grow_shrink(C, np.array([t]), available, forced, n_cells=n, penalty=bic_penalty(n))
    assert sel[0, weak] and not sel[0, true_parent] and not sel[0, t]


def test_grow_shrink_survives_forced_parents_that_are_copies_of_each_other():
    B, X = standardised_sem(8, "er", 2.0, 1000, seed=2)
    X = np.column_stack([X, X[:, 0]])  # node 8 is node 0 again
    n, C = X.shape[0], X.T @ X / X.shape[0]
    t = 1 + int(np.argmax(B[:, 1:].sum(axis=0)))  # a target with parents, not node 0
    available = np.ones((1, 9), dtype=bool)
    available[0, t] = False
    forced = np.zeros_like(available)
    forced[0, [0, 8]] = True
    scores, sel = grow_shrink(C, np.array([t]), available, forced, n_cells=n, penalty=bic_penalty(n))
    assert np.isfinite(scores).all() and sel[0, forced[0]].all()
    # the copies add nothing to each other: the residual is that of the selection without the copy
    S = np.flatnonzero(sel[0, :8])
    rss = C[t, t] - C[t, S] @ np.linalg.solve(C[np.ix_(S, S)], C[S, t])
    assert scores[0] == pytest.approx(n / 2 * np.log(rss) + bic_penalty(n) * sel.sum(), rel=1e-6)


@pytest.mark.parametrize(("graph", "epn", "seed"), [("sf", 2.0, 0), ("er", 2.0, 3)])
def test_the_search_from_the_reverse_order_scores_as_well_as_the_true_order(graph, epn, seed):
    """Orientation within a Markov equivalence class is not identifiable on standardised
    data, so the check is the score (no worse than the true order's) and the skeleton."""
    B, X = standardised_sem(25, graph, epn, 2000, seed=seed)
    n, C = X.shape[0], X.T @ X / X.shape[0]
    allowed = ~np.eye(25, dtype=bool)
    true_order = topological_order(B.astype(np.int8), np.zeros(25))
    # the solver's configuration: one given start and two seeded random ones, best kept
    rng = np.random.default_rng(0)
    starts = [true_order[::-1].copy(), rng.permutation(25), rng.permutation(25)]
    res = min((best_order_search(C, n, o, allowed=allowed) for o in starts), key=lambda r: r.score)
    at_start = best_order_search(C, n, true_order[::-1].copy(), allowed=allowed, max_sweeps=0)
    at_truth = best_order_search(C, n, true_order, allowed=allowed, max_sweeps=0)
    assert res.converged and res.score < at_start.score
    assert res.score <= at_truth.score + bic_penalty(n)
    found, true = res.parents | res.parents.T, B | B.T
    assert (found != true).sum() / 2 <= 0.1 * B.sum()


def test_the_search_respects_the_mask_and_the_required_edges():
    B, X = standardised_sem(15, "er", 2.0, 1500, seed=2)
    n, C = X.shape[0], X.T @ X / X.shape[0]
    allowed = ~np.eye(15, dtype=bool)
    edges = np.argwhere(B)
    forbidden, required_edge = edges[0], edges[1]
    allowed[tuple(forbidden)] = False
    required = np.zeros_like(allowed)
    reverse = required_edge[::-1]  # a wrong direction the search must keep anyway
    allowed[tuple(reverse)] = True
    required[tuple(reverse)] = True
    res = best_order_search(C, n, np.arange(15), allowed=allowed, required=required)
    assert not res.parents[tuple(forbidden)]
    assert res.parents[tuple(reverse)]
    rank = np.empty(15, dtype=int)
    rank[res.order] = np.arange(15)
    i, j = np.nonzero(res.parents)
    assert (rank[i] < rank[j]).all()


def test_a_search_stopped_by_its_sweep_limit_is_not_converged():
    B, X = standardised_sem(20, "sf", 2.0, 1000, seed=0)
    n, C = X.shape[0], X.T @ X / X.shape[0]
    res = best_order_search(C, n, np.arange(20)[::-1].copy(), allowed=~np.eye(20, dtype=bool), max_sweeps=1)
    assert res.sweeps == 1 and not res.converged


def test_fit_on_standardised_data_orients_hubs_with_the_search_by_default():
    B, X = standardised_sem(30, "sf", 2.0, 1000, seed=5)
    with_search = fit(X, device="cpu", return_result=True)
    without = fit(X, device="cpu", return_result=True, order_search="never")
    run = with_search.info["run"]
    assert run["refit_order"] == "bic_search" and run["order_search"]["converged"]
    # a linear SEM: the BIC and the λ path agree on the size of the network
    found = run["order_search"]
    assert found["kept"] and found["edges"] <= 2 * found["path_edges"]
    shd_with = count_accuracy(B, with_search.adjacency)["shd"]
    shd_without = count_accuracy(B, without.adjacency)["shd"]
    assert shd_with < 0.5 * shd_without and shd_with <= 0.35 * B.sum(), (shd_with, shd_without)


def nonlinear_counts(d: int, n: int, seed: int):
    """Log-normalised Poisson counts of a Hill-function network, with library sizes: about 25 % zeros."""
    rng = np.random.default_rng(seed)
    B, _ = simulate_graph(d, graph_type="er", edges_per_node=1.5, seed=seed)
    B = B.toarray() != 0
    rate = np.zeros((n, d))
    for j in topological_order(sp.csr_matrix(B), np.zeros(d)):
        r = np.full(n, rng.uniform(0.5, 2.0))
        for p in np.flatnonzero(B[:, j]):
            h = rate[:, p] ** 4 / (np.median(rate[:, p]) ** 4 + rate[:, p] ** 4)
            r += 4 * (h if rng.random() < 0.7 else 1 - h)
        rate[:, j] = r * rng.lognormal(0, 0.3, size=n)
    counts = rng.poisson(rate * rng.lognormal(0, 0.4, size=(n, 1)) * 0.5)
    size = counts.sum(1, keepdims=True).clip(1)
    return B, np.log1p(counts / size * size.mean())


def test_on_nonlinear_counts_the_search_is_not_kept(caplog):
    B, X = nonlinear_counts(40, 3000, seed=0)
    with caplog.at_level(logging.INFO):
        res = fit(X, device="cpu", return_result=True)
    path = fit(X, device="cpu", return_result=True, order_search="never")
    found = res.info["run"]["order_search"]
    # with thousands of cells every weak dependence passes the BIC penalty
    assert not found["kept"] and found["edges"] > 2 * found["path_edges"]
    assert res.info["run"]["refit_order"] == "none (support)"
    assert (res.adjacency != path.adjacency).nnz == 0
    assert "the linear Gaussian model does not describe these data" in caplog.text
    forced = fit(X, device="cpu", return_result=True, order_search="always")
    assert count_accuracy(B, forced.adjacency)["fdr"] > count_accuracy(B, path.adjacency)["fdr"]


def test_a_rejected_search_leaves_the_path_network_unchanged():
    _, X = standardised_sem(30, "er", 2.0, 1000, seed=2)
    rejected = fit(X, device="cpu", return_result=True, tuning=Tuning(order_search_max_edge_ratio=0.5))
    path = fit(X, device="cpu", return_result=True, order_search="never")
    assert rejected.info["run"]["order_search"]["kept"] is False
    assert (rejected.adjacency != path.adjacency).nnz == 0


def test_an_unfinished_order_search_is_warned_and_flagged(caplog):
    _, X = standardised_sem(20, "sf", 2.0, 1000, seed=0)
    with caplog.at_level(logging.WARNING):
        res = fit(
            X,
            device="cpu",
            return_result=True,
            tuning=Tuning(order_search_sweeps=1, order_search_starts=1),
        )
    assert res.info["run"]["order_search"]["converged"] is False
    assert "order search: stopped after 1 sweep(s)" in caplog.text


def test_the_extended_bic_penalty_gives_a_sparser_dag():
    _, X = standardised_sem(30, "er", 2.0, 300, seed=7)
    n, C = X.shape[0], X.T @ X / X.shape[0]
    allowed = ~np.eye(30, dtype=bool)
    bic = best_order_search(C, n, np.arange(30), allowed=allowed)
    ebic = best_order_search(C, n, np.arange(30), allowed=allowed, gamma=1.0)
    assert bic_penalty(n, gamma=1.0, n_candidates=29) == pytest.approx(np.log(n) / 2 + np.log(29))
    assert ebic.parents.sum() < bic.parents.sum()


def test_a_core_above_the_size_limit_keeps_the_support_refit(caplog):
    _, X = standardised_sem(30, "sf", 2.0, 500, seed=1)
    with caplog.at_level(logging.INFO):
        res = fit(X, device="cpu", return_result=True, tuning=Tuning(order_search_max=20))
    assert res.info["run"]["refit_order"] == "none (support)"
    assert "above order_search_max = 20" in caplog.text


def test_a_constant_gene_does_not_break_the_search():
    B, X = standardised_sem(15, "er", 2.0, 800, seed=3)
    X[:, 4] = 0.0
    res = fit(X, device="cpu", return_result=True)
    assert np.isfinite(res.info["run"]["order_search"]["bic"])
    W = res.adjacency.toarray()
    assert not W[4].any() and not W[:, 4].any()
    assert count_accuracy(np.delete(np.delete(B, 4, 0), 4, 1), np.delete(np.delete(W, 4, 0), 4, 1))["tpr"] > 0.5


def test_the_explained_last_start_is_an_order_of_the_targets_only():
    from gene_dag.solver.order_search import explained_last_order

    _, X = standardised_sem(12, "er", 2.0, 500, seed=6)
    C = X.T @ X / X.shape[0]
    order = explained_last_order(C, 9)  # the first 3 nodes are fixed parents
    assert sorted(order.tolist()) == list(range(9))
    # its last target is the one with the highest R² given every other node
    r2 = 1 - 1 / np.diag(np.linalg.inv(C))
    assert order[-1] == int(np.argmax(r2[3:]))


@pytest.mark.parametrize("ratio", [0.0, -1.0, float("nan")])
def test_an_edge_ratio_that_is_not_positive_is_refused(ratio):
    from gene_dag.errors import ConfigError

    with pytest.raises(ConfigError, match="order_search_max_edge_ratio"):
        fit(np.zeros((5, 3)), device="cpu", tuning={"order_search_max_edge_ratio": ratio})


def test_an_unknown_order_search_mode_is_refused():
    from gene_dag.errors import ConfigError

    with pytest.raises(ConfigError, match="order_search must be one of auto, always, never, not 'off'"):
        fit(np.zeros((5, 3)), device="cpu", order_search="off")


def test_a_search_stopped_by_sigterm_resumes_after_its_last_finished_start(tmp_path, monkeypatch, caplog):
    import os
    import signal

    from gene_dag.signals import Interrupted, stop_on_signals
    from gene_dag.solver import refit

    B, X = standardised_sem(30, "sf", 2.0, 1000, seed=5)
    reference = fit(X, device="cpu", return_result=True)
    assert reference.info["run"]["order_search"]["starts"] == 3
    calls, search = [], refit.best_order_search

    def counted(*args, stop_at: int | None = None, **kwargs):
        calls.append(len(calls) + 1)
        if calls[-1] == stop_at:  # a scheduler's time limit during this start
            os.kill(os.getpid(), signal.SIGTERM)
        return search(*args, **kwargs)

    monkeypatch.setattr(refit, "best_order_search", lambda *a, **k: counted(*a, stop_at=2, **k))
    with pytest.raises(Interrupted), stop_on_signals():
        fit(X, device="cpu", checkpoint=tmp_path)
    assert calls == [1, 2]
    calls.clear()
    monkeypatch.setattr(refit, "best_order_search", counted)
    with caplog.at_level(logging.INFO):
        resumed = fit(X, device="cpu", checkpoint=tmp_path, return_result=True)
    assert calls == [1, 2]  # the second and third starts only
    assert "order search: resumed after 1 start(s) from the checkpoint" in caplog.text
    assert resumed.info["run"]["order_search"] == reference.info["run"]["order_search"]
    assert (resumed.adjacency != reference.adjacency).nnz == 0


def test_a_start_cut_by_the_time_limit_is_not_checkpointed(tmp_path, monkeypatch):
    import time

    from gene_dag.solver import refit

    _, X = standardised_sem(30, "sf", 2.0, 1000, seed=5)
    reference = fit(X, device="cpu", return_result=True)
    calls, search_from = [], refit._search_from

    def limited(run, *args, cut_at: int | None = None):
        calls.append(len(calls) + 1)
        found = search_from(run, *args)
        if calls[-1] == cut_at:  # the time limit passes during this start
            run.deadline = time.monotonic() - 1.0
        return found

    monkeypatch.setattr(refit, "_search_from", lambda run, *a: limited(run, *a, cut_at=2))
    fit(X, device="cpu", checkpoint=tmp_path)
    assert calls == [1, 2]  # no third start after the limit
    calls.clear()
    monkeypatch.setattr(refit, "_search_from", limited)
    resumed = fit(X, device="cpu", checkpoint=tmp_path, return_result=True)
    assert calls == [1, 2]  # the first start was kept; the cut second one is searched again, then the third
    assert (resumed.adjacency != reference.adjacency).nnz == 0
