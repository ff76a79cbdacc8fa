"""The solver: recovery of known graphs, acyclic output, decomposition and acyclicity
equivalence, determinism, and the post-processing that guarantees a DAG.

Bounds were set from measured runs (n = 2000 cells, weights ±[0.5, 2], default
settings, CPU): every recovery case below measured SHD 0, TPR 1, FDR 0; the bounds leave
a margin of a few edges but still catch a real regression (a solver that misses or
reverses a handful of edges fails them). Problems are kept at d <= 30 so the whole file
runs in well under a minute on two shared cores; fits are cached so that a problem
solved for one test is reused by the next.

Known limits: the spectral acyclicity function misses a DAG that logdet and expm find
(a strict xfail, so a fix shows up as XPASS); the active-set path (forced here with
full_core_max=0; the default for cores above 1,024 genes) is checked on sparse cores,
where it recovers the graph, not on dense small graphs, where it ends in worse optima.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp

import gene_dag
from gene_dag.errors import ConfigError
from gene_dag.graph import is_dag
from gene_dag.metrics import count_accuracy
from gene_dag.simulate import simulate_adata
from gene_dag.solver.api import fit
from gene_dag.solver.postprocess import break_cycles, threshold_to_dag
from gene_dag.solver.settings import DEFAULTS

N_CELLS = 2000

# name -> simulate_adata arguments (all with n = 2000, weights ±[0.5, 2])
CASES = {
    "er30": dict(d=30, graph_type="er", edges_per_node=2.0, seed=0),
    "sf20": dict(d=20, graph_type="sf", edges_per_node=2.0, seed=0),
    "tf20": dict(d=20, graph_type="tf", n_regulators=4, seed=0),
    "tf30": dict(d=30, graph_type="tf", n_regulators=6, seed=1),
    "er10": dict(d=10, graph_type="er", edges_per_node=1.0, seed=0),
    "er10b": dict(d=10, graph_type="er", edges_per_node=1.0, seed=1),
    "er20": dict(d=20, graph_type="er", edges_per_node=2.0, seed=0),
}


@functools.cache
def dataset(name: str):
    return simulate_adata(n=N_CELLS, **CASES[name])


def true_regulators(name: str) -> list[str]:
    ad = dataset(name)
    return list(ad.var_names[ad.var["is_regulator"].to_numpy()])


def edges(W: sp.spmatrix) -> set[tuple[int, int]]:
    coo = sp.coo_matrix(W)
    return set(zip(coo.row[coo.data != 0].tolist(), coo.col[coo.data != 0].tolist(), strict=True))


@functools.cache
def _solve(name: str, with_regulators: bool, settings: tuple) -> sp.csr_matrix:
    regs = true_regulators(name) if with_regulators else None
    options = dict(settings)
    tuning = {k: options.pop(k) for k in list(options) if k not in DEFAULTS}
    W = fit(dataset(name), regulators=regs, device="cpu", standardize=False, tuning=tuning, **options)
    # every output of the solver, whatever the settings, must be a DAG
    assert is_dag(W), f"{name} {settings}: solver output has a cycle"
    return W


def solve(name: str, with_regulators: bool = False, **settings) -> sp.csr_matrix:
    W = _solve(name, with_regulators, tuple(sorted(settings.items())))
    return W.copy()


def accuracy(name: str, W) -> dict:
    return count_accuracy(dataset(name).varp["true_dag"], W)


# ----------------------------------------------------------------------------- recovery


@pytest.mark.parametrize(
    "name, with_regulators, max_shd",
    [
        ("er30", False, 3),  # ER2, 49 true edges: measured SHD 0
        ("sf20", False, 3),  # SF2, 37 true edges: measured SHD 0
        ("tf20", False, 3),  # tf, no regulator list (all 20 genes may regulate): measured SHD 0
        ("tf30", True, 2),  # tf with the true regulator list: measured SHD 0
    ],
)
def test_recovers_known_graph(name, with_regulators, max_shd):
    W = solve(name, with_regulators)
    truth = dataset(name).varp["true_dag"]
    acc = accuracy(name, W)
    assert acc["shd"] <= max_shd, acc
    assert acc["tpr"] >= 0.9, acc
    assert acc["fdr"] <= 0.1, acc
    assert is_dag(W)
    # output format: d x d CSR float32, no self-loops, every kept weight above the threshold
    d = truth.shape[0]
    assert sp.issparse(W) and W.format == "csr" and W.shape == (d, d) and W.dtype == np.float32
    assert not W.diagonal().any()
    assert np.abs(W.data).min() >= 0.3
    # row = cause: the correctly recovered edges carry the true sign and about the true weight
    Wd, Td = W.toarray(), truth.toarray()
    both = (Wd != 0) & (Td != 0)
    assert both.sum() >= 0.9 * truth.nnz
    assert np.all(np.sign(Wd[both]) == np.sign(Td[both]))
    assert np.abs(Wd[both] - Td[both]).max() < 0.5  # measured at most 0.28


def test_regulator_list_keeps_edges_on_regulator_rows():
    W = solve("tf30", with_regulators=True)
    regs = dataset("tf30").var["is_regulator"].to_numpy()
    rows = np.unique(sp.coo_matrix(W).row)
    assert rows.size > 0
    assert regs[rows].all(), "an edge leaves a gene outside the regulator list"


def test_fit_accepts_plain_arrays_and_returns_provenance():
    ad = dataset("tf30")
    X = np.asarray(ad.X)
    regs = true_regulators("tf30")
    W_array = fit(X, regulators=regs, genes=list(ad.var_names), device="cpu", standardize=False)
    assert edges(W_array) == edges(solve("tf30", with_regulators=True))
    # unnamed genes are called G0, G1, ...; the regulator list uses those names
    idx = np.flatnonzero(ad.var["is_regulator"].to_numpy())
    res = fit(X, regulators=[f"G{i}" for i in idx], device="cpu", standardize=False, return_result=True)
    assert list(res.genes[:2]) == ["G0", "G1"]
    np.testing.assert_array_equal(res.mask.regulators, idx)
    assert edges(res.adjacency) == edges(W_array)
    run = res.info["run"]
    assert run["n_cells"] == N_CELLS and run["n_genes"] == 30 and run["n_regulators"] == 6
    assert run["converged"] is True and run["timed_out"] is False
    assert run["n_edges"] == W_array.nnz


def test_unknown_or_bad_options_are_config_errors():
    X = np.asarray(dataset("er10").X)
    with pytest.raises(ConfigError, match="lambda2"):
        fit(X, lambda2=0.1)
    with pytest.raises(ConfigError, match="acyclicity"):
        fit(X, acyclicity="trace")
    with pytest.raises(ConfigError, match="lambda1"):
        fit(X, lambda1=-1.0)
    with pytest.raises(ConfigError, match="unknown solver option"):
        fit(X, full_core_max=3)  # tuning is not a user option
    with pytest.raises(ConfigError, match="unknown tuning option"):
        fit(X, tuning={"inner": "adam"})
    with pytest.raises(ConfigError, match="path_s_final"):
        fit(X, tuning={"path_s_final": 1.5})


# -------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize(
    "name, with_regulators, settings",
    [
        ("er10", False, {}),
        ("tf20", False, {}),
        ("tf30", True, {}),  # core = the 6 regulators; targets solved by the lasso stage
        ("sf20", False, {}),
        # full_core_max=0 forces the active-set path (lasso candidates, order refit) that the
        # default uses only for cycle cores above 1,024 genes. candidate_threshold is pinned:
        # the agreement depends on it (see the xfail cases and the module docstring).
        ("er10", False, {"full_core_max": 0, "candidate_threshold": 0.1}),
        ("er10", False, {"full_core_max": 0, "candidate_threshold": 0.3}),
    ],
    ids=["er10", "tf20", "tf30-regulators", "sf20", "er10-activeset-ct0.1", "er10-activeset-ct0.3"],
)
def test_decomposed_equals_undecomposed(name, with_regulators, settings):
    decomposed = solve(name, with_regulators, **settings)
    whole = solve(name, with_regulators, decompose=False)
    assert edges(decomposed) == edges(whole), (
        f"only decomposed: {sorted(edges(decomposed) - edges(whole))}, "
        f"only undecomposed: {sorted(edges(whole) - edges(decomposed))}"
    )
    # same graph and signs, weights close. Default settings: the lasso and the constrained
    # solve stop at slightly different points (measured up to 0.02 on tf30 with
    # regulators, exactly 0 elsewhere). The active-set path ends at visibly different
    # weights on the same support (measured 0.05 er10, 0.24 tf20, 0.22 sf20; reported).
    a, b = decomposed.toarray(), whole.toarray()
    assert np.all(np.sign(a) == np.sign(b))
    np.testing.assert_allclose(a, b, atol=0.35 if settings else 0.05)
    assert accuracy(name, whole)["shd"] <= 3


@pytest.mark.parametrize(
    "name, threshold, max_shd",
    [("tf20", 0.1, 2), ("tf20", 0.3, 2), ("sf20", 0.1, 4)],
)
def test_active_set_path_recovers_sparse_cores(name, threshold, max_shd):
    # full_core_max=0 forces the path the default takes for cycle cores above 1,024 genes
    # (lasso candidates, small components, order refit). Measured SHD 1, 1, 2. On dense
    # small graphs it ends in worse local optima than the whole-core solve (er20: SHD 17
    # at threshold 0.1, 34 at 0.3, whole core 0), which is why small cores are solved whole.
    W = solve(name, False, full_core_max=0, candidate_threshold=threshold)
    assert is_dag(W)
    assert accuracy(name, W)["shd"] <= max_shd


@pytest.mark.parametrize(
    "name, with_regulators, acyclicity",
    [
        ("tf20", True, "expm"),
        ("tf20", True, "spectral"),
        ("er10", False, "expm"),
        ("er10b", False, "expm"),
        # the spectral h still ends at 0.014 here, not 0 (it depends on its warm-start
        # state); the output is right because the refit keeps the least-residual order
        ("er10b", False, "spectral"),
    ],
)
def test_acyclicity_functions_agree_on_easy_cases(name, with_regulators, acyclicity):
    reference = solve(name, with_regulators, acyclicity="logdet")
    assert accuracy(name, reference)["shd"] == 0  # logdet measured exact on these cases
    other = solve(name, with_regulators, acyclicity=acyclicity)
    assert edges(other) == edges(reference), accuracy(name, other)


def test_auto_acyclicity_is_logdet_on_small_cores():
    assert edges(solve("er10")) == edges(solve("er10", acyclicity="logdet"))


# ---------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name, with_regulators", [("tf30", True), ("er10", False)])
def test_same_input_same_output(name, with_regulators):
    regs = true_regulators(name) if with_regulators else None
    a = fit(dataset(name), regulators=regs, device="cpu", standardize=False)
    b = fit(dataset(name), regulators=regs, device="cpu", standardize=False)
    a.sort_indices()
    b.sort_indices()
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)  # bit-identical weights


def test_threshold_changes_output():
    # guards the comparisons above: different settings do give a different graph
    low = solve("er10", w_threshold=0.3)
    high = solve("er10", w_threshold=1.0)
    assert edges(high) < edges(low)
    assert np.abs(high.data).min() >= 1.0


def test_public_fit_is_the_api_fit():
    assert gene_dag.fit is fit


# ------------------------------------------------------------------------ post-processing


def test_is_dag_detects_cycles_and_self_loops():
    chain = sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=float))
    assert is_dag(chain)
    assert not is_dag(chain + chain.T)  # 2-cycles
    loop3 = sp.csr_matrix(np.roll(np.eye(3), 1, axis=1))
    assert not is_dag(loop3)
    assert not is_dag(sp.csr_matrix(np.diag([0.0, 1.0, 0.0])))
    assert is_dag(sp.csr_matrix((4, 4)))


def test_break_cycles_drops_the_weakest_unprotected_edge():
    # 0 -> 1 -> 2 -> 0 with weights 0.9, 0.4, 0.7, and a separate DAG edge 2 -> 3
    W = sp.csr_matrix(np.array([[0, 0.9, 0, 0], [0, 0, 0.4, 0], [0.7, 0, 0, 0.5], [0, 0, 0, 0]]))
    dag, dropped = break_cycles(W)
    assert dropped == 1 and is_dag(dag)
    assert edges(dag) == {(0, 1), (2, 0), (2, 3)}
    protected = sp.csr_matrix(([1.0], ([1], [2])), shape=(4, 4))
    dag, dropped = break_cycles(W, protected)
    assert dropped == 1 and is_dag(dag)
    assert edges(dag) == {(0, 1), (1, 2), (2, 3)}  # 1 -> 2 kept, next weakest (2 -> 0) dropped


def test_threshold_to_dag_keeps_required_edges_below_threshold():
    W = sp.csr_matrix(np.array([[0, 0.1, 0.5], [0, 0, 0.2], [0, 0, 0]]))
    dag, info = threshold_to_dag(W, 0.3)
    assert edges(dag) == {(0, 2)} and info["n_edges"] == 1
    required = sp.csr_matrix(([1.0], ([1], [2])), shape=(3, 3))
    dag, info = threshold_to_dag(W, 0.3, required)
    assert edges(dag) == {(0, 2), (1, 2)}
    assert dag[1, 2] == pytest.approx(0.2)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"lambda1": float("nan")}, "lambda1 must be a finite number"),
        ({"lambda1": float("inf")}, "lambda1 must be a finite number"),
        ({"w_threshold": float("nan")}, "w_threshold must be a finite number"),
        ({"memory_gb": float("inf")}, "memory_gb must be a finite number"),
        ({"seed": 2**70}, "seed must be between 0 and 2**63 - 1"),
        ({"max_time": -1.0}, "max_time and checkpoint_interval must be >= 0"),
    ],
)
def test_non_finite_or_out_of_range_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        fit(dataset("er10"), device="cpu", standardize=False, **options)
