"""The candidate screen: recall of true edges, its mask, and the completion that repairs what it misses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from gene_dag.graph import topological_order
from gene_dag.metrics import count_accuracy
from gene_dag.prior import build_mask
from gene_dag.simulate import simulate_adata
from gene_dag.solver.api import fit
from gene_dag.solver.refit import completion_tie_break, given_support_sd
from gene_dag.solver.screen import screen_mask
from gene_dag.solver.settings import settings_from
from gene_dag.stats import compute_stats


def _screen(adata, *, prior=None, **tuning):
    stats = compute_stats(adata, progress=False)
    mask = build_mask(np.asarray(adata.var_names), None, prior)
    var = stats.std.astype(np.float64) ** 2
    settings = settings_from(standardize=False, tuning=tuning)
    return screen_mask(np.asarray(stats.cov, np.float64), var, mask, settings, stats.n), mask


def _pattern(screen) -> sp.csr_matrix:
    return sp.csr_matrix(screen.mask.candidates, dtype=bool)


def test_screen_keeps_the_true_edges_and_is_sparse():
    adata = simulate_adata(120, 2000, graph_type="er", seed=5)
    screen, _ = _screen(adata, screen="on")
    cand = _pattern(screen)
    truth = sp.csr_matrix(adata.varp["true_dag"], dtype=bool)
    recall = truth.multiply(cand).nnz / truth.nnz
    assert recall >= 0.8  # weak edges into genes with strong children can hide (screen.py)
    assert cand.nnz <= 0.25 * 120 * 119  # a bounded set, not every pair
    assert (cand != cand.T).nnz == 0  # symmetric: a regression cannot tell parent from child
    assert cand.diagonal().sum() == 0
    assert screen.info["screen_candidate_edges"] == cand.nnz


def test_screen_runs_only_for_cores_too_large_to_solve_whole():
    adata = simulate_adata(40, 500, graph_type="er", seed=1)
    assert _screen(adata)[0] is None  # auto: 40 genes are solved whole
    assert _screen(adata, screen="auto", full_core_max=20)[0] is not None
    assert _screen(adata, screen="off", full_core_max=20)[0] is None


def test_the_screen_respects_forbidden_and_required_edges():
    adata = simulate_adata(60, 1000, graph_type="er", seed=2)
    truth = sp.coo_matrix(adata.varp["true_dag"])
    names = np.asarray(adata.var_names)
    forbidden = names[truth.row[0]], names[truth.col[0]]
    required = names[truth.row[1]], names[truth.col[1]]
    prior = pd.DataFrame(
        [(*forbidden, "forbidden", 1.0), (*required, "required", 1.0)], columns=["source", "target", "type", "weight"]
    )
    screen, mask = _screen(adata, prior=prior, screen="on", screen_max_parents=1)
    allowed = screen.mask.allowed_block()
    assert not allowed[truth.row[0], truth.col[0]]
    net = fit(
        adata, prior=prior, standardize=False, tuning={"screen": "on", "screen_max_parents": 1}, return_result=True
    )
    assert net.adjacency[truth.row[1], truth.col[1]] != 0
    assert net.adjacency[truth.row[0], truth.col[0]] == 0


def test_the_completion_brings_back_edges_the_screen_missed():
    adata = simulate_adata(80, 2000, graph_type="er", edges_per_node=3, seed=3)
    truth = adata.varp["true_dag"]
    screen, _ = _screen(adata, screen="on", screen_max_parents=1)
    missed = sp.csr_matrix(truth, dtype=bool) - sp.csr_matrix(truth, dtype=bool).multiply(_pattern(screen))
    assert missed.nnz > 0.1 * truth.nnz  # one parent per gene cannot hold them all
    res = fit(adata, standardize=False, tuning={"screen": "on", "screen_max_parents": 1}, return_result=True)
    run = res.info["run"]
    assert run["screened"] and run["screen_edges_added"] > 0
    found = sp.csr_matrix(res.adjacency, dtype=bool).multiply(missed).nnz
    assert found >= 0.3 * missed.nnz  # the rest the order found on two candidates per gene excludes


def test_a_screened_solve_stays_close_to_the_whole_one():
    adata = simulate_adata(100, 2000, graph_type="er", seed=4)
    truth = adata.varp["true_dag"]
    whole = count_accuracy(truth, fit(adata, standardize=False))
    res = fit(adata, standardize=False, tuning={"screen": "on"}, return_result=True)
    screened = count_accuracy(truth, res.adjacency)
    assert whole["shd"] <= 0.02 * truth.nnz
    # the screen costs accuracy where it misses a parent the order then excludes
    assert screened["shd"] <= 0.1 * truth.nnz and screened["tpr"] >= 0.95
    assert res.info["run"]["screen_solves"] > 1  # the completion's edges were solved again


def test_scaling_the_screen_by_residuals_keeps_the_weak_parents():
    # a parent with a small coefficient into a gene its other parents almost determine has
    # a large partial correlation: the scaled penalty keeps it, the plain one may not
    adata = simulate_adata(120, 2000, graph_type="er", seed=5)
    truth = sp.csr_matrix(adata.varp["true_dag"], dtype=bool)
    recall = {}
    for scaled in (False, True):
        screen, _ = _screen(adata, screen="on", screen_scaled=scaled)
        recall[scaled] = truth.multiply(_pattern(screen)).nnz / truth.nnz
    assert recall[True] >= 0.95 and recall[True] > recall[False]


def test_the_completion_judges_missed_parents_against_the_residual_noise():
    # with three parents per gene many targets are nearly determined by their parents: a
    # missed parent's optimality violation is small next to the target's total sd but large
    # next to its residual sd, the scale of the gradient's noise
    adata = simulate_adata(100, 2000, graph_type="er", edges_per_node=3, seed=4)
    truth = adata.varp["true_dag"]
    res = fit(adata, standardize=False, tuning={"screen": "on"}, return_result=True)
    m = count_accuracy(truth, res.adjacency)
    # judged against the total sd: TPR 0.645, SHD 286 of 332 true edges
    assert m["tpr"] >= 0.85 and m["shd"] <= 0.5 * truth.nnz


def test_a_screened_raw_core_is_solved_in_its_least_residual_order():
    # each gene's residual is taken given its candidate parents (ordering.py): the order
    # then needs no central path on a screened core, whatever its size
    adata = simulate_adata(150, 1000, graph_type="er", seed=1)
    truth = adata.varp["true_dag"]
    res = fit(adata, standardize=False, tuning={"screen": "on"}, return_result=True)
    run = res.info["run"]
    assert run["screened"] and run["core_order"] == "least_residual"
    assert run["core_noise_variance_ratio"] <= 1.5
    assert count_accuracy(truth, res.adjacency)["shd"] <= 0.01 * truth.nnz


def test_the_completion_tests_a_parent_against_its_sd_given_the_support():
    # a missed parent nearly collinear with a parent the fit took instead (a sibling under
    # a high-variance common parent) has a small gradient; its score test divides by its
    # sd given the support, which is as small (with the marginal sd: SHD 158 here)
    adata = simulate_adata(100, 2000, graph_type="er", edges_per_node=3, seed=4)
    truth = adata.varp["true_dag"]
    res = fit(adata, standardize=False, tuning={"screen": "on"}, return_result=True)
    m = count_accuracy(truth, res.adjacency)
    assert m["shd"] <= 0.01 * truth.nnz


def test_given_support_sd_is_the_conditional_sd_of_each_regulator():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 20))
    X[:, 3] = X[:, 2] + 0.1 * rng.normal(size=500)
    X = (X - X.mean(0)) / X.std(0)
    A = X.T @ X / 500
    V = np.zeros((20, 5))
    V[2, 0], V[[2, 5, 7], 1], V[1, 3], V[[4, 6, 8, 9], 4] = 1.0, 1.0, 0.5, 1.0
    sd = given_support_sd(torch.as_tensor(A), torch.as_tensor(V)).numpy()
    for j in range(5):
        S = np.flatnonzero(V[:, j])
        for i in range(20):
            if i in S:
                continue
            expected = 1.0 if S.size == 0 else np.sqrt(1 - A[i, S] @ np.linalg.solve(A[np.ix_(S, S)], A[S, i]))
            assert sd[i, j] == pytest.approx(expected, rel=1e-9)
    assert sd[3, 0] < 0.2 and sd[3, 2] == 1.0  # collinear with the support; no support


def test_the_completion_breaks_order_ties_by_the_order_the_core_was_solved_in():
    # 0 -> 1 is the only edge of the DAG; genes 2 and 3 are unconnected. The core was solved
    # in the order 3, 0, 2 (gene 1 is not in it): those keep their positions, the rest follow
    # by variance, so 3 comes first although its variance is the largest
    variances = np.array([2.0, 1.0, 3.0, 9.0, 0.5])
    key = completion_tie_break(variances, torch.tensor([3, 0, 2]))
    dag = sp.csr_matrix(([1.0], ([0], [1])), shape=(5, 5))
    assert list(topological_order(dag, key)) == [3, 0, 2, 4, 1]
    # without a solved order, or with one that does not describe these genes: by variance
    by_variance = [4, 0, 1, 2, 3]
    assert list(topological_order(dag, completion_tie_break(variances, None))) == by_variance
    for bad in (torch.tensor([3, 3]), torch.tensor([0, 7]), torch.tensor([-1])):
        assert list(topological_order(dag, completion_tie_break(variances, bad))) == by_variance
