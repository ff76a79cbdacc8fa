"""Accuracy metrics on hand-made graphs, and the simulate -> evaluate command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from gene_dag.cli import main
from gene_dag.errors import InputError
from gene_dag.metrics import adjacency_from_edges, average_precision, count_accuracy, ranking_accuracy

# Truth on 4 genes: 0 -> 1 -> 2, 0 -> 3.
TRUE_EDGES = [(0, 1), (1, 2), (0, 3)]


def adj(edges, d=4, weights=None):
    rows, cols = zip(*edges, strict=True) if edges else ((), ())
    data = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=float)
    return sp.csr_matrix((data, (rows, cols)), shape=(d, d))


TRUTH = adj(TRUE_EDGES)


def check(m, **expected):
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key


def test_perfect_prediction():
    m = count_accuracy(TRUTH, adj(TRUE_EDGES, weights=[0.5, -2.0, 1.0]))
    check(m, shd=0, tpr=1, fdr=0, n_true=3, n_predicted=3, n_correct=3, n_reversed=0, n_extra=0, n_missing=0)
    check(m, auprc=1, auprc_skeleton=1)


def test_reversed_edge_counts_once():
    m = count_accuracy(TRUTH, adj([(0, 1), (2, 1), (0, 3)]))
    check(m, shd=1, tpr=2 / 3, fdr=1 / 3, n_correct=2, n_reversed=1, n_extra=0, n_missing=0)
    check(m, auprc_skeleton=1)  # the skeleton is right


def test_missing_edge():
    m = count_accuracy(TRUTH, adj([(0, 1), (0, 3)]))
    check(m, shd=1, tpr=2 / 3, fdr=0, n_predicted=2, n_correct=2, n_reversed=0, n_extra=0, n_missing=1)


def test_extra_edge():
    m = count_accuracy(TRUTH, adj([*TRUE_EDGES, (3, 2)]))
    check(m, shd=1, tpr=1, fdr=1 / 4, n_predicted=4, n_correct=3, n_extra=1, n_missing=0)
    check(m, fpr=1 / (4 * 3 / 2 - 3))


def test_mixed_errors_add_up():
    # 0->1 right, 1->2 reversed, 0->3 missing, 3->1 extra.
    m = count_accuracy(TRUTH, adj([(0, 1), (2, 1), (3, 1)]))
    check(m, shd=3, tpr=1 / 3, fdr=2 / 3, n_correct=1, n_reversed=1, n_extra=1, n_missing=1)


def test_empty_prediction_and_empty_truth():
    empty = sp.csr_matrix((4, 4))
    m = count_accuracy(TRUTH, empty)
    check(m, shd=3, tpr=0, fdr=0, n_predicted=0, n_missing=3, auprc=0, auprc_skeleton=0)
    check(count_accuracy(empty, empty), shd=0, n_true=0, auprc=0)


def test_dense_and_sparse_inputs_agree_and_zeros_are_not_edges():
    W = adj([(0, 1), (2, 1), (3, 1)], weights=[0.9, 0.1, 0.5])
    W_explicit_zero = W.copy()
    W_explicit_zero.data[1] = 0.0  # stored but zero: not an edge
    dense = count_accuracy(TRUTH.toarray(), W.toarray())
    assert dense == count_accuracy(TRUTH, W)
    assert count_accuracy(TRUTH, W_explicit_zero)["n_predicted"] == 2


def test_auprc_of_a_known_ranking():
    # Ranked by |w|: 0->3 (hit), 3->2 (miss), 0->1 (hit); 1->2 never predicted.
    # Precision at the hits: 1/1 and 2/3, each adding recall 1/3: AP = (1 + 2/3) / 3.
    m = count_accuracy(TRUTH, adj([(0, 3), (3, 2), (0, 1)], weights=[-0.9, 0.5, 0.2]))
    check(m, auprc=(1 + 2 / 3) / 3)
    # Skeleton: a reversed edge still recalls its pair.
    m = count_accuracy(TRUTH, adj([(3, 0), (3, 2), (1, 0), (1, 2)], weights=[0.9, 0.8, 0.7, 0.1]))
    check(m, auprc=1 / 4 * 1 / 3, auprc_skeleton=(1 + 2 / 3 + 3 / 4) / 3)


def test_two_cycle_in_prediction():
    # 1->0 (0.9, reversed), 2->3 (0.5, extra), 0->1 (0.1, right). The skeleton scores the
    # pair {0, 1} by its larger weight, so it ranks first: AP = 1 * 1/3.
    m = count_accuracy(TRUTH, adj([(1, 0), (2, 3), (0, 1)], weights=[0.9, 0.5, 0.1]))
    check(m, n_correct=1, n_reversed=1, n_extra=1, n_missing=2, fdr=2 / 3, tpr=1 / 3)
    check(m, shd=1 + 2 + 1)  # NOTEARS: extra pairs + missing pairs + reversed
    check(m, auprc=1 / 3 * 1 / 3, auprc_skeleton=1 / 3)


def test_average_precision_ties_share_a_threshold():
    # All tied: one threshold, precision 1/2, recall 1 -> 0.5 (not 1 or 0.5 by order).
    assert average_precision(np.ones(4), np.array([1, 0, 1, 0], bool), 2) == pytest.approx(0.5)
    assert average_precision(np.ones(4), np.array([0, 1, 0, 1], bool), 2) == pytest.approx(0.5)
    assert average_precision(np.array([]), np.array([], bool), 0) == 0.0


def test_sparse_large_graph_without_dense():
    from gene_dag.simulate import simulate_graph

    d = 20_000  # a dense float64 d x d would need 3.2 GB
    B, _ = simulate_graph(d, "er", edges_per_node=1.0, seed=0)
    W = B.astype(np.float64).tolil()
    rows, cols = B.nonzero()
    W[rows[0], cols[0]] = 0  # one missing
    W[cols[1], rows[1]], W[rows[1], cols[1]] = 1, 0  # one reversed
    m = count_accuracy(B, W.tocsr())
    check(m, n_true=B.nnz, n_missing=1, n_reversed=1, n_extra=0, shd=2)


def test_adjacency_from_edges_by_name():
    A = adjacency_from_edges(["b", "a", "b"], ["c", "b", "c"], ["a", "b", "c"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(A.toarray(), [[0, 2, 0], [0, 0, 3], [0, 0, 0]])  # last repeat wins
    with pytest.raises(InputError, match="1 genes not in the gene list: z"):
        adjacency_from_edges(["a"], ["z"], ["a", "b"])


# ----------------------------------------------------------------------------- ranking (BEELINE)


def scores(entries, d=4):
    S = np.zeros((d, d))
    for (i, j), v in entries.items():
        S[i, j] = v
    return S


def test_ranking_perfect_scores():
    # 12 ordered pairs, 3 true: a random ranking has precision 1/4.
    m = ranking_accuracy(TRUTH.toarray() * 2.0, TRUTH)
    check(m, n_candidates=12, n_positive=3, n_scored=3, auprc_random=1 / 4)
    check(m, auprc=1, auprc_ratio=4, early_precision=1, epr=4)


def test_ranking_of_a_known_order():
    # 0->3 (hit), 3->2 (miss), 0->1 (hit), then the 9 unscored pairs tie, 1->2 among them:
    # AP = (1 * 1/3) + (2/3 * 1/3) + (3/12 * 1/3). Top k = 3: two hits.
    m = ranking_accuracy(scores({(0, 3): 0.9, (3, 2): 0.5, (0, 1): 0.2}), TRUTH)
    check(m, auprc=(1 + 2 / 3 + 1 / 4) / 3, auprc_ratio=4 * (1 + 2 / 3 + 1 / 4) / 3)
    check(m, n_scored=3, early_precision=2 / 3, epr=(2 / 3) / (1 / 4))


def test_early_precision_ties_and_zero_scores():
    # k = 3; the 3rd largest score is 0.5, shared by three pairs: all four >= 0.5 count.
    S = scores({(0, 1): 1.0, (0, 3): 0.5, (2, 3): 0.5, (3, 0): 0.5, (1, 2): 0.1})
    check(ranking_accuracy(S, TRUTH), early_precision=2 / 4, epr=2)
    # Only two pairs scored (fewer than k): precision among those two; zeros never count.
    check(ranking_accuracy(scores({(0, 1): 1.0, (2, 3): 1.0}), TRUTH), n_scored=2, early_precision=1 / 2)
    check(ranking_accuracy(np.zeros((4, 4)), TRUTH), n_scored=0, early_precision=0, epr=0, auprc=1 / 4)


def test_ranking_with_a_regulator_list():
    # Regulators 0 and 1: candidates 0->{1,2,3}, 1->{0,2,3}; all 3 true edges among them.
    # The top score sits on 3->2, which is no candidate then: it is ignored.
    S = scores({(3, 2): 5.0, (0, 1): 1.0, (1, 2): 1.0, (0, 3): 1.0, (0, 2): 0.5})
    m = ranking_accuracy(S, TRUTH, regulators=[0, 1])
    check(m, n_candidates=6, n_positive=3, auprc_random=1 / 2, auprc=1, early_precision=1, epr=2)
    # Without the list 3->2 ranks first and is wrong: the 3 hits tie next, precision 3/4.
    check(ranking_accuracy(S, TRUTH), auprc=3 / 4, early_precision=3 / 4)


def test_ranking_skeleton():
    # Every true edge scored in the reverse direction only: directed, the true edges tie
    # with the 9 unscored pairs (AP = 3/12); undirected, the three true pairs rank first.
    S = scores({(1, 0): 0.9, (2, 1): 0.8, (3, 0): 0.7})
    check(ranking_accuracy(S, TRUTH), auprc=1 / 4, early_precision=0)
    m = ranking_accuracy(S, TRUTH, directed=False)
    check(m, n_candidates=6, n_positive=3, auprc_random=1 / 2, auprc=1, epr=2)
    # With regulator 0 only the pairs {0,1}, {0,2}, {0,3} are candidates, each scored by
    # its direction out of 0 (1->0 is no candidate); {1,2} is true but never recallable.
    S = scores({(1, 0): 0.9, (0, 3): 0.4, (0, 2): 0.1})
    m = ranking_accuracy(S, TRUTH, regulators=[0], directed=False)
    check(m, n_candidates=3, n_positive=2, auprc_random=2 / 3, auprc=(1 + 2 / 3) / 3)


def test_ranking_bad_input():
    with pytest.raises(InputError, match=">= 0"):
        ranking_accuracy(-TRUTH.toarray(), TRUTH)
    with pytest.raises(InputError, match="NaN"):
        ranking_accuracy(np.full((4, 4), np.nan), TRUTH)
    with pytest.raises(InputError, match="must be 4 x 4"):
        ranking_accuracy(np.zeros((3, 3)), TRUTH)
    with pytest.raises(InputError, match="regulator indices"):
        ranking_accuracy(np.zeros((4, 4)), TRUTH, regulators=[4])


# ----------------------------------------------------------------------------- command line


def test_cli_simulate_then_evaluate_truth_against_itself(tmp_path, capsys):
    sim = tmp_path / "sim.h5ad"
    status = main(["simulate", "--out", str(sim), "--genes", "60", "--cells", "40", "--graph", "tf",
                   "--regulators", "8", "--w-range", "0.5", "1.5", "--seed", "3"])  # fmt: skip
    assert status == 0 and sim.is_file()
    assert not [p for p in tmp_path.iterdir() if p != sim]  # no temporary file left

    out = tmp_path / "metrics.json"
    status = main(["evaluate", str(sim), "--truth", str(sim), "--key", "true_dag", "--out", str(out)])
    assert status == 0
    metrics = json.loads(out.read_text())
    assert metrics["shd"] == 0 and metrics["tpr"] == 1.0 and metrics["fdr"] == 0.0
    assert metrics["n_true"] > 52 and metrics["n_genes"] == 60  # every target has a parent
    printed = capsys.readouterr().out
    assert "shd" in printed and "auprc" in printed


def test_cli_evaluate_against_tsv_truth(tmp_path):
    import anndata

    sim = tmp_path / "sim.h5ad"
    assert main(["simulate", "--out", str(sim), "--genes", "30", "--cells", "20", "--seed", "1"]) == 0
    adata = anndata.read_h5ad(sim)
    rows, cols = adata.varp["true_dag"].nonzero()
    names = adata.var_names
    # Drop the first true edge from the TSV truth: the prediction then has one extra edge.
    lines = ["source\ttarget"] + [f"{names[r]}\t{names[c]}" for r, c in zip(rows[1:], cols[1:], strict=True)]
    tsv = tmp_path / "truth.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "m.json"
    assert main(["evaluate", str(sim), "--truth", str(tsv), "--key", "true_dag", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["n_true"] == len(rows) - 1 and metrics["n_extra"] == 1 and metrics["shd"] == 1


def test_cli_evaluate_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.h5ad"
    assert main(["evaluate", str(missing), "--truth", str(missing)]) == 2
    assert "nope.h5ad" in capsys.readouterr().err

    sim = tmp_path / "sim.h5ad"
    main(["simulate", "--out", str(sim), "--genes", "10", "--cells", "5"])
    capsys.readouterr()
    assert main(["evaluate", str(sim), "--truth", str(sim)]) == 2  # no varp["gene_dag"]
    err = capsys.readouterr().err
    assert "sim.h5ad" in err and "gene_dag" in err and err.count("\n") == 1

    tsv = tmp_path / "truth.tsv"
    tsv.write_text("source\ttarget\nG0000\tG0001\nXX1\tXX2\n")
    assert main(["evaluate", str(sim), "--truth", str(tsv), "--key", "true_dag"]) == 2
    err = capsys.readouterr().err
    assert "truth.tsv" in err and "2 of its 4 genes are absent" in err and "XX1" in err

    out = tmp_path / "never.json"
    assert main(["evaluate", str(sim), "--truth", str(missing), "--key", "true_dag", "--out", str(out)]) == 2
    assert not out.exists()
