"""gene_dag.tl: learn_dag, effects, knockout and regulators on real AnnData objects."""

from __future__ import annotations

import logging

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import gene_dag
from gene_dag import tl
from gene_dag.errors import ConfigError, InputError


def sem_adata(W: np.ndarray, n: int = 200, seed: int = 0, genes=None) -> anndata.AnnData:
    """Cells from X = XW + Z with the true W stored as the network."""
    rng = np.random.default_rng(seed)
    d = W.shape[0]
    X = rng.normal(size=(n, d)) @ np.linalg.inv(np.eye(d) - W) + 5.0
    genes = genes or [f"G{i}" for i in range(d)]
    adata = anndata.AnnData(X=X.astype(np.float32), var=pd.DataFrame(index=genes))
    adata.obs["tissue"] = pd.Categorical(np.where(np.arange(n) < n // 2, "liver", "lung"))
    adata.varp["gene_dag"] = sp.csr_matrix(W.astype(np.float32))
    return adata


def chain() -> anndata.AnnData:
    """A -> B -> C (0.8, -0.5), and D unconnected."""
    W = np.zeros((4, 4))
    W[0, 1], W[1, 2] = 0.8, -0.5
    return sem_adata(W, genes=["A", "B", "C", "D"])


def test_effects_equal_the_dense_inverse_on_a_simulated_sem():
    rng = np.random.default_rng(3)
    d = 30
    W = np.triu(rng.uniform(0.3, 1.0, (d, d)) * rng.choice([-1, 1], (d, d)) * (rng.random((d, d)) < 0.15), 1)
    adata = sem_adata(W)
    genes = ["G0", "G4", "G12"]
    tl.effects(adata, genes)
    W32 = adata.varp["gene_dag"].toarray().astype(np.float64)
    dense = np.linalg.inv(np.eye(d) - W32)
    table = adata.varm["effects"]
    assert list(table.columns) == genes and list(table.index) == list(adata.var_names)
    np.testing.assert_allclose(table.to_numpy().T, dense[[0, 4, 12]], atol=1e-5)
    np.testing.assert_allclose(adata.varm["effects_direct"].to_numpy().T, W32[[0, 4, 12]], atol=0)
    assert adata.uns["effects"]["n_affected"].tolist() == [int((dense[i] != 0).sum() - 1) for i in (0, 4, 12)]


def test_effects_survive_an_h5ad_round_trip(tmp_path):
    adata = chain()
    tl.effects(adata, ["A"])
    adata.write_h5ad(tmp_path / "net.h5ad")
    back = anndata.read_h5ad(tmp_path / "net.h5ad")
    assert back.varm["effects"].loc["C", "A"] == pytest.approx(0.8 * -0.5, rel=1e-6)
    assert back.varm["effects_n_paths"].loc[["A", "B", "C", "D"], "A"].tolist() == [1, 1, 1, 0]


def test_knockout_of_a_chain_shifts_the_end_by_the_product_of_the_weights():
    adata = chain()
    tl.knockout(adata, ["A"])
    rec = adata.uns["knockout"]
    mean_a = float(adata.X[:, 0].mean())
    shift = rec["shift"]["all"]
    assert shift["A"] == pytest.approx(-mean_a, rel=1e-6)
    assert shift["B"] == pytest.approx(-mean_a * 0.8, rel=1e-5)
    assert shift["C"] == pytest.approx(-mean_a * 0.8 * -0.5, rel=1e-5)
    assert shift["D"] == 0.0
    assert rec["predicted"]["all"]["A"] == pytest.approx(0.0, abs=1e-5)
    assert rec["n_changed"] == {"all": 2}


def test_knockout_of_a_gene_without_descendants_changes_nothing_else(caplog):
    adata = chain()
    with caplog.at_level(logging.WARNING, logger="gene_dag"):
        tl.knockout(adata, ["C"], groupby="tissue")
    shift = adata.uns["knockout"]["shift"]
    assert list(shift.columns) == ["liver", "lung"]
    assert (shift.drop(index="C").to_numpy() == 0).all()
    assert (shift.loc["C"] != 0).all()
    assert adata.uns["knockout"]["no_targets"].tolist() == ["C"]
    assert "C has no targets" in caplog.text


def test_knockdown_overexpression_and_per_cell_predictions():
    adata = chain()
    tl.knockout(adata, ["A"], fraction=0.25, groupby="tissue", per_cell=True, key_added="kd")
    rec = adata.uns["kd"]
    liver = adata.obs["tissue"] == "liver"
    mean_a = float(adata.X[liver.to_numpy(), 0].mean())
    assert rec["predicted"].loc["A", "liver"] == pytest.approx(0.25 * mean_a, rel=1e-5)
    assert rec["shift"].loc["C", "liver"] == pytest.approx(-0.75 * mean_a * 0.8 * -0.5, rel=1e-5)
    cells = adata.layers["kd"]
    np.testing.assert_allclose(cells[:, 0], 0.25 * adata.X[:, 0], rtol=1e-5)
    np.testing.assert_allclose(cells[liver.to_numpy()].mean(axis=0), rec["predicted"]["liver"], rtol=1e-4)
    tl.knockout(adata, ["A", "D"], value=[10.0, 1.0], key_added="oe")
    assert adata.uns["oe"]["predicted"]["all"][["A", "D"]].tolist() == pytest.approx([10.0, 1.0], rel=1e-6)


def test_copy_returns_a_new_object_and_leaves_the_input_alone():
    adata = chain()
    out = tl.knockout(adata, ["A"], copy=True)
    assert "knockout" in out.uns and "knockout" not in adata.uns
    assert tl.effects(adata, "A") is None and "effects" in adata.varm


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda a: tl.effects(a, ["A", "NOPE"]), InputError, "1 of the genes are not genes of the network: NOPE"),
        (lambda a: tl.effects(a, ["A"], key="other"), InputError, "no network in varp\\['other'\\]"),
        (lambda a: tl.knockout(a, ["A"], groupby="celltype"), InputError, "no obs column 'celltype'"),
        (lambda a: tl.knockout(a, ["A"], fraction=-1), ConfigError, "fraction must be"),
        (lambda a: tl.knockout(a, ["A", "B"], value=[1.0, 2.0, 3.0]), ConfigError, "one per gene"),
        (lambda a: tl.knockout(a, ["A"], value=float("nan")), ConfigError, "finite"),
    ],
    ids=["missing-gene", "missing-key", "missing-groupby", "negative-fraction", "value-count", "nan-value"],
)
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call(chain())


def test_regulators_rank_by_out_degree_then_downstream_effect():
    W = np.zeros((5, 5))
    W[0, 1], W[0, 2] = 0.5, 0.5  # two targets, small total effect
    W[3, 4] = 2.0  # one target
    W[4, 2] = 2.0  # one target, but 3 reaches 2 through 4: 3's total effect is larger
    adata = sem_adata(W, genes=list("abcde"))
    table = tl.regulators(adata)
    assert list(table.index[:3]) == ["a", "d", "e"]
    assert table.loc["d", "total_abs_effect"] == pytest.approx(2.0 + 4.0)
    assert table.loc["c", "in_degree"] == 2 and table.loc["c", "total_abs_effect"] == 0
    assert adata.uns["regulators"] is table


def test_learn_dag_recovers_a_simulated_graph_and_stores_the_record():
    from gene_dag.simulate import simulate_adata

    adata = simulate_adata(20, 2000, graph_type="er", seed=0)
    truth = {tuple(e) for e in zip(*sp.coo_matrix(adata.varp["true_dag"]).nonzero(), strict=True)}
    tl.learn_dag(adata, lambda1=0.02, w_threshold=0.3, standardize=False, seed=0, device="cpu", key_added="net")
    W = adata.varp["net"]
    assert sp.issparse(W) and W.dtype == np.float32 and W.shape == (20, 20)
    learned = set(zip(*sp.coo_matrix(W).nonzero(), strict=True))
    assert len(learned & truth) >= 0.8 * len(truth) and len(learned - truth) <= 0.2 * len(truth)
    rec = adata.uns["net"]
    assert rec["run"]["n_edges"] == W.nnz and rec["parameters"]["lambda1"] == 0.02
    assert rec["parameters"]["layer"] == "X" and rec["parameters"]["regulators"] == "none"
    assert {"converged", "score", "rounds_json", "total_wall_time_s"} <= set(rec["run"])


def test_learn_dag_refuses_unknown_solver_options():
    with pytest.raises(ConfigError, match="unknown solver option"):
        tl.learn_dag(chain(), lambd=0.1)


def test_import_is_lazy():
    import subprocess
    import sys

    code = "import sys, gene_dag; print(sorted(m for m in ('torch', 'scanpy', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert callable(gene_dag.tl.effects) and callable(gene_dag.fit)
    code = (
        "import sys\nfrom gene_dag.cli import build_parser\nbuild_parser().format_help()\n"
        "print(sorted(m for m in ('torch', 'scanpy', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # gene-dag --help, with effects, knockout and plot registered


def test_the_readme_analysis_snippet_runs(tmp_path, monkeypatch, capsys):
    """The README's tl/pl snippet, unchanged, on a small network at the path it reads."""
    import re
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- snippet:analyse-network -->", "<!-- /snippet:analyse-network -->"
    assert begin in text and end in text, f"README.md lacks the {begin} ... {end} markers around the snippet"
    match = re.search(r"```python\n(.*?)```", text.split(begin, 1)[1].split(end, 1)[0], re.S)
    assert match, f"no ```python block between the {begin} markers"
    code = match.group(1)
    (path,) = re.findall(r"""read_h5ad\(\s*["']([^"']+\.h5ad)["']""", code)
    W = np.zeros((5, 5))
    W[0, 2], W[0, 3], W[1, 3], W[3, 4] = 0.9, -0.6, 0.4, 0.7  # SPI1 -> LYZ, CD14; IRF8 -> CD14 -> S100A8
    adata = sem_adata(W, genes=["SPI1", "IRF8", "LYZ", "CD14", "S100A8"])
    (tmp_path / path).parent.mkdir(parents=True)
    adata.write_h5ad(tmp_path / path)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "S100A8" in out and "SPI1" in out
    for name in ("spi1_network.png", "spi1_effects.png", "spi1_knockout.png"):
        assert (tmp_path / name).stat().st_size > 5000
