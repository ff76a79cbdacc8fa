"""`gene-dag effects` and `gene-dag knockout` on real .h5ad files."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gene_dag.cli import main


@pytest.fixture
def network_file(tmp_path):
    """A -> B -> C (0.8, -0.5), A -> D (2.0), E alone; cells in two tissues."""
    W = np.zeros((5, 5))
    W[0, 1], W[1, 2], W[0, 3] = 0.8, -0.5, 2.0
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)) @ np.linalg.inv(np.eye(5) - W) + 3
    adata = anndata.AnnData(X=X.astype(np.float32), var=pd.DataFrame(index=list("ABCDE")))
    adata.obs["tissue"] = np.repeat(["liver", "lung"], 30)
    adata.varp["gene_dag"] = sp.csr_matrix(W.astype(np.float32))
    path = tmp_path / "network.h5ad"
    adata.write_h5ad(path)
    return path, adata


def test_effects_table_and_plot(network_file, tmp_path):
    path, _ = network_file
    out, png = tmp_path / "effects.tsv", tmp_path / "effects.png"
    assert main(["effects", str(path), "--genes", "A,B", "--out", str(out), "--plot", str(png)]) == 0
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == ["intervened", "gene", "total_effect", "direct_effect", "n_paths"]
    rows = {(r.intervened, r.gene): (r.total_effect, r.direct_effect, r.n_paths) for r in table.itertuples()}
    assert set(rows) == {("A", "D"), ("A", "B"), ("A", "C"), ("B", "C")}
    assert rows[("A", "C")] == pytest.approx((0.8 * -0.5, 0.0, 1))
    assert rows[("A", "D")] == pytest.approx((2.0, 2.0, 1))
    assert list(table["gene"][table["intervened"] == "A"]) == ["D", "B", "C"]  # by |effect|
    assert png.stat().st_size > 5000


def test_knockout_table_by_group(network_file, tmp_path):
    path, adata = network_file
    out = tmp_path / "ko.tsv"
    assert main(["knockout", str(path), "--genes", "B", "--groupby", "tissue", "--out", str(out),
                 "--plot", str(tmp_path / "ko.png")]) == 0  # fmt: skip
    table = pd.read_csv(out, sep="\t").set_index(["group", "gene"])
    assert list(table.columns) == ["observed", "predicted", "shift"] and len(table) == 10
    b_liver = float(adata.X[:30, 1].mean())
    assert table.loc[("liver", "B"), "predicted"] == pytest.approx(0.0, abs=1e-6)
    assert table.loc[("liver", "C"), "shift"] == pytest.approx(-b_liver * -0.5, rel=1e-5)
    assert table.loc[("liver", "A"), "shift"] == 0 and table.loc[("lung", "D"), "shift"] == 0  # upstream, sibling
    assert (tmp_path / "ko.png").stat().st_size > 5000


def test_knockdown_fraction(network_file, tmp_path):
    path, adata = network_file
    out = tmp_path / "kd.tsv"
    assert main(["knockout", str(path), "--genes", "A", "--fraction", "0.5", "--out", str(out)]) == 0
    table = pd.read_csv(out, sep="\t").set_index("gene")
    mean_a = float(adata.X[:, 0].mean())
    assert table.loc["D", "shift"] == pytest.approx(-0.5 * mean_a * 2.0, rel=1e-5)


def test_missing_gene_is_an_error_or_skipped(network_file, tmp_path, capsys):
    path, _ = network_file
    out = tmp_path / "e.tsv"
    assert main(["effects", str(path), "--genes", "A,NOPE", "--out", str(out)]) == 2
    assert f"gene-dag effects: error: {path}: not genes of the network: NOPE" in capsys.readouterr().err
    assert not out.exists()
    assert main(["effects", str(path), "--genes", "A,NOPE", "--skip-missing", "--out", str(out)]) == 0
    assert set(pd.read_csv(out, sep="\t")["intervened"]) == {"A"}
    assert main(["knockout", str(path), "--genes", "NOPE", "--skip-missing", "--out", str(out)]) == 0
    assert pd.read_csv(out, sep="\t").empty


@pytest.mark.parametrize(
    "argv, message",
    [
        (["knockout", "{path}", "--genes", "A", "--groupby", "nope"], "no obs column 'nope'"),
        (["effects", "{missing}", "--genes", "A"], "file not found"),
        (["effects", "{path}", "--genes", "A", "--key", "other"], "no network in varp['other']"),
    ],
)
def test_bad_input_exits_2_with_one_line(network_file, tmp_path, capsys, argv, message):
    path, _ = network_file
    out = tmp_path / "o.tsv"
    argv = [a.format(path=path, missing=tmp_path / "none.h5ad") for a in argv] + ["--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not out.exists()


def test_plot_writes_figures_and_a_facts_table_with_metrics(network_file, tmp_path, capsys):
    import json

    path, _ = network_file
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"shd": 1, "tpr": 0.75, "fdr": 0.25, "auprc": 0.8}))
    outdir = tmp_path / "figures"
    assert main(["plot", str(path), "--outdir", str(outdir), "--metrics", str(metrics)]) == 0
    for name in ("network.png", "degree.png", "convergence.png"):
        assert (outdir / name).stat().st_size > 5000
    regulators = pd.read_csv(outdir / "regulators.tsv", sep="\t")
    assert list(regulators["gene"][:2]) == ["A", "B"]  # A: two targets, B: one
    facts = pd.read_csv(outdir / "facts.tsv", sep="\t").set_index("what")["value"]
    assert facts["edges"] == "3" and float(facts["true positive rate (TPR)"]) == 0.75
    metrics.write_text("{not json")
    assert main(["plot", str(path), "--outdir", str(tmp_path / "f2"), "--metrics", str(metrics)]) == 2
    assert "cannot read the metrics as JSON" in capsys.readouterr().err
    assert not (tmp_path / "f2").exists()
