"""Preprocessing, gene selection, prior restriction and export: the science of the workflow's steps."""

from __future__ import annotations

import json
import logging

import anndata
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gene_dag.cli import main
from gene_dag.errors import ConfigError, InputError
from gene_dag.export import edges_table, export_network, read_edges
from gene_dag.graph import is_dag as is_acyclic
from gene_dag.preprocess import group_slugs, preprocess, read_manifest, slugify
from gene_dag.select import prior_genes, select_genes


def counts_adata(n_cells=(60, 50, 10), n_genes=12, seed=0):
    """Small Poisson counts with groups A, B, C (sizes n_cells) and a true chain G00 -> G01 -> G02."""
    rng = np.random.default_rng(seed)
    n = sum(n_cells)
    X = rng.poisson(3.0, size=(n, n_genes)).astype(np.float32)
    groups = np.repeat(["A", "B", "C"], n_cells)
    obs = pd.DataFrame({"tissue": pd.Categorical(groups)}, index=[f"c{i}" for i in range(n)])
    var = pd.DataFrame(index=[f"G{j:02d}" for j in range(n_genes)])
    adata = anndata.AnnData(X=sp.csr_matrix(X), obs=obs, var=var)
    adata.varp["true_dag"] = sp.csr_matrix(([1.0, 1.0], ([0, 1], [1, 2])), shape=(n_genes, n_genes))
    return adata


# ----------------------------------------------------------------------------- slugs


def test_slugs_are_safe_readable_and_deterministic():
    assert slugify("CD14+ Monocyte") == "CD14pos_Monocyte"
    assert slugify("CD4+/CD25 T Reg") == "CD4pos_CD25_T_Reg"
    assert slugify("  ../weird name!! ") == "weird_name"
    assert slugify("///") == "group"
    names = ["a b", "a_b", "A B", "liver"]
    slugs = group_slugs(names)
    assert len(set(s.lower() for s in slugs.values())) == 4  # unique, even case-insensitively
    assert slugs["liver"] == "liver"
    assert all(s.startswith("a_b-") or s.startswith("A_B-") for n, s in slugs.items() if n != "liver")
    assert group_slugs(list(reversed(names))) == slugs  # order does not matter


# ----------------------------------------------------------------------------- preprocess


def test_preprocess_normalises_splits_and_skips_small_groups(caplog):
    adata = counts_adata()
    X = adata.X.toarray()
    X[:60, 5] = 0  # gene G05 is constant (zero) within group A
    adata.X = sp.csr_matrix(X)
    with caplog.at_level(logging.INFO, logger="gene_dag"):
        groups, manifest = preprocess(
            adata, values="counts", groupby="tissue", min_group_size=20, target_sum=1e4, source="toy.h5ad"
        )
    assert [g.name for g in groups] == ["A", "B"]
    a = groups[0].adata
    assert a.n_obs == 60 and "G05" not in a.var_names and a.n_vars == 11
    assert "counts" in a.layers
    totals = np.expm1(a.X.toarray()).sum(axis=1)  # log1p of normalised counts
    np.testing.assert_allclose(
        totals,
        1e4 * np.asarray(a.layers["counts"].sum(axis=1)).ravel() / np.asarray(adata[:60].X.sum(axis=1)).ravel(),
        rtol=1e-4,
    )
    assert a.varp["true_dag"].shape == (11, 11) and a.varp["true_dag"].nnz == 2
    assert a.uns["gene_dag_preprocess"]["group"] == "A"
    row = manifest.set_index("group").loc["C"]
    assert row["status"] == "skipped" and row["reason"] == "10 cells < min_group_size 20"
    assert bool(manifest["has_truth"].all())
    assert "group 'C' skipped: 10 cells < min_group_size 20" in caplog.text
    assert "dropped 1 zero-variance gene(s) (first: G05)" in caplog.text


def test_preprocess_without_groups_and_with_scaling():
    adata = counts_adata()
    groups, manifest = preprocess(adata, values="log", scale_values=True)
    assert [g.slug for g in groups] == ["all"] and manifest["status"].tolist() == ["kept"]
    X = np.asarray(groups[0].adata.X)
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(X.std(axis=0, ddof=1), 1, atol=1e-3)  # scanpy's scale


def test_preprocess_rejects_bad_input():
    adata = counts_adata()
    with pytest.raises(InputError, match="groupby column 'cell_type' is not in obs"):
        preprocess(adata, groupby="cell_type")
    with pytest.raises(InputError, match="no group is left.*A: 60 cells < min_group_size 100"):
        preprocess(adata, groupby="tissue", min_group_size=100)
    negative = counts_adata()
    negative.X = negative.X.toarray() - 1
    with pytest.raises(InputError, match="negative values.*values: scaled"):
        preprocess(negative, values="counts")
    with pytest.raises(ConfigError, match="values must be one of"):
        preprocess(adata, values="tpm")


def test_manifest_round_trip(tmp_path):
    _, manifest = preprocess(counts_adata(), groupby="tissue", min_group_size=20)
    manifest.to_csv(tmp_path / "groups.tsv", sep="\t", index=False)
    back = read_manifest(tmp_path / "groups.tsv")
    assert back["group"].tolist() == ["A", "B", "C"]
    assert back["has_truth"].dtype == bool and back["has_truth"].all()


# ----------------------------------------------------------------------------- select


def test_select_hvg_forces_prior_genes_in():
    adata = preprocess(counts_adata(n_genes=40), values="counts")[0][0].adata
    force = prior_genes(["G39", "G38", "NOT_A_GENE"], None)
    hvg_only = select_genes(adata, n_top_genes=10)
    assert hvg_only.n_vars == 10
    out = select_genes(adata, n_top_genes=10, force=force)
    assert {"G39", "G38"} <= set(out.var_names)
    assert set(out.var_names) == set(hvg_only.var_names) | {"G39", "G38"}
    assert list(out.var_names) == [g for g in adata.var_names if g in set(out.var_names)]  # original order
    reason = out.var["gene_dag_selection"]
    assert (reason == "hvg").sum() == 10
    assert out.uns["gene_dag_select"]["forced_missing"].tolist() == ["NOT_A_GENE"]


def test_select_list_all_and_variance():
    adata = preprocess(counts_adata(n_genes=20), values="counts")[0][0].adata
    out = select_genes(adata, method="list", gene_list=["G03", "G01", "MISSING"])
    assert list(out.var_names) == ["G01", "G03"]
    assert out.uns["gene_dag_select"]["list_missing"].tolist() == ["MISSING"]
    assert select_genes(adata, method="all").n_vars == 20
    top = select_genes(adata, n_top_genes=5, flavor="variance")
    var = np.asarray(adata.X.toarray()).var(axis=0)
    assert set(top.var_names) == set(adata.var_names[np.argsort(-var)[:5]])
    with pytest.raises(InputError, match="at least 2"):
        select_genes(adata, method="list", gene_list=["G01"])
    with pytest.raises(ConfigError, match="seurat_v3"):
        select_genes(preprocess(counts_adata(n_genes=20), values="log")[0][0].adata, n_top_genes=5, flavor="seurat_v3")


def test_prior_genes_skip_forbidden_edges():
    table = pd.DataFrame(
        {"source": ["A", "B"], "target": ["C", "D"], "type": ["required", "forbidden"], "weight": [1.0, 1.0]}
    )
    assert prior_genes(["R"], table) == ["R", "A", "C"]


# ----------------------------------------------------------------------------- export


def network_adata(W, genes=None):
    d = W.shape[0]
    genes = genes or [f"G{j}" for j in range(d)]
    adata = anndata.AnnData(
        X=np.random.default_rng(0).normal(size=(20, d)).astype(np.float32), var=pd.DataFrame(index=genes)
    )
    adata.varp["gene_dag"] = sp.csr_matrix(W, dtype=np.float32)
    adata.uns["gene_dag"] = {"parameters": {"lambda1": 0.05}, "run": {"converged": True, "lasso_iterations": 12}}
    return adata


def test_export_writes_consistent_files(tmp_path):
    W = np.zeros((5, 5))
    W[0, 1], W[0, 2], W[1, 3], W[2, 4] = 0.5, -2.0, 1.0, 0.25
    adata = network_adata(W)
    paths = {
        k: tmp_path / n
        for k, n in (
            ("h5ad", "network.h5ad"),
            ("edges", "edges.tsv"),
            ("graphml", "network.graphml"),
            ("summary", "s.json"),
        )
    }
    info = export_network(adata, **paths, prior_report={"n_regulators": 3}, extra={"dataset": "d", "group": "g"})
    assert info["n_edges"] == 4 and info["top_regulators"][0]["gene"] == "G0"

    back = anndata.read_h5ad(paths["h5ad"])
    M = back.varp["gene_dag"]
    assert sp.issparse(M) and M.shape == (5, 5) and M.dtype == np.float32
    assert back.uns["gene_dag"]["run"]["converged"] and back.uns["gene_dag"]["group"] == "g"
    assert back.uns["gene_dag"]["prior"]["n_regulators"] == 3

    edges = read_edges(paths["edges"])
    assert list(edges.columns) == ["source", "target", "weight"]
    assert edges["weight"].tolist() == [-2.0, 1.0, 0.5, 0.25]  # sorted by |weight|
    coo = M.tocoo()
    assert {
        (back.var_names[r], back.var_names[c], float(w)) for r, c, w in zip(coo.row, coo.col, coo.data, strict=True)
    } == set(edges.itertuples(index=False, name=None))

    G = nx.read_graphml(paths["graphml"])
    assert G.number_of_nodes() == 5 and G.number_of_edges() == 4
    assert G.edges["G0", "G2"]["weight"] == pytest.approx(-2.0) and nx.is_directed_acyclic_graph(G)

    summary = json.loads(paths["summary"].read_text())
    assert summary["dataset"] == "d" and summary["n_edges"] == 4 and summary["converged"] is True
    assert summary["out_degree"]["max"] == 2 and summary["convergence"]["lasso_iterations"] == 12
    assert summary["solver"]["parameters"]["lambda1"] == 0.05


def test_export_refuses_a_cycle_and_writes_nothing(tmp_path):
    W = np.zeros((3, 3))
    W[0, 1] = W[1, 2] = W[2, 0] = 1.0
    assert not is_acyclic(sp.csr_matrix(W))
    with pytest.raises(InputError, match="directed cycle"):
        export_network(network_adata(W), h5ad=tmp_path / "n.h5ad", edges=tmp_path / "e.tsv")
    assert list(tmp_path.iterdir()) == []


def test_edges_table_ties_are_deterministic():
    W = sp.csr_matrix(np.array([[0, 1.0, -1.0], [0, 0, 1.0], [0, 0, 0]]))
    table = edges_table(W, ["a", "b", "c"])
    assert list(zip(table["source"], table["target"], strict=True)) == [("a", "b"), ("a", "c"), ("b", "c")]


# ----------------------------------------------------------------------------- the subcommands


def test_cli_preprocess_select_prior(tmp_path):
    adata = counts_adata(n_genes=30)
    adata.write_h5ad(tmp_path / "in.h5ad")
    (tmp_path / "regs.txt").write_text("# regulators\nG00\nG01 # comment\nNOT_A_GENE\n")
    (tmp_path / "prior.tsv").write_text("source\ttarget\ttype\nG00\tG05\tforbidden\nG07\tG08\tforbidden\n")
    status = main(
        [
            "preprocess",
            str(tmp_path / "in.h5ad"),
            "--outdir",
            str(tmp_path / "pre"),
            "--manifest",
            str(tmp_path / "groups.tsv"),
            "--groupby",
            "tissue",
            "--min-group-size",
            "20",
        ]
    )
    assert status == 0
    assert sorted(p.name for p in (tmp_path / "pre").iterdir()) == [".gene-dag-outdir", "A.h5ad", "B.h5ad"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())

    status = main(
        [
            "select",
            str(tmp_path / "pre" / "A.h5ad"),
            "--out",
            str(tmp_path / "sel.h5ad"),
            "--n-top-genes",
            "8",
            "--regulators",
            str(tmp_path / "regs.txt"),
        ]
    )
    assert status == 0
    sel = anndata.read_h5ad(tmp_path / "sel.h5ad")
    assert {"G00", "G01"} <= set(sel.var_names) and sel.n_vars in (8, 9, 10)
    assert (sel.var["gene_dag_selection"] == "hvg").sum() == 8

    status = main(
        [
            "prior",
            str(tmp_path / "sel.h5ad"),
            "--regulators",
            str(tmp_path / "regs.txt"),
            "--prior",
            str(tmp_path / "prior.tsv"),
            "--out-regulators",
            str(tmp_path / "r.txt"),
            "--out-edges",
            str(tmp_path / "e.tsv"),
            "--report",
            str(tmp_path / "report.json"),
        ]
    )
    assert status == 0
    assert (tmp_path / "r.txt").read_text().split() == ["G00", "G01"]
    kept = pd.read_csv(tmp_path / "e.tsv", sep="\t")
    expected = [("G00", "G05")] if "G05" in set(sel.var_names) else []
    assert list(zip(kept["source"], kept["target"], strict=True)) == expected
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["missing_regulators"] == ["NOT_A_GENE"] and report["n_regulators"] == 2


def test_cli_prior_without_files_allows_every_gene(tmp_path):
    network_adata(np.zeros((4, 4))).write_h5ad(tmp_path / "sel.h5ad")
    status = main(
        [
            "prior",
            str(tmp_path / "sel.h5ad"),
            "--out-regulators",
            str(tmp_path / "r.txt"),
            "--out-edges",
            str(tmp_path / "e.tsv"),
            "--report",
            str(tmp_path / "report.json"),
        ]
    )
    assert status == 0
    assert (tmp_path / "r.txt").read_text().startswith("#")
    assert pd.read_csv(tmp_path / "e.tsv", sep="\t").columns.tolist() == ["source", "target", "type", "weight"]
    assert json.loads((tmp_path / "report.json").read_text())["n_allowed_edges"] == 12


def test_cli_errors_are_one_line(tmp_path, capsys):
    status = main(
        [
            "preprocess",
            str(tmp_path / "missing.h5ad"),
            "--outdir",
            str(tmp_path / "o"),
            "--manifest",
            str(tmp_path / "m.tsv"),
        ]
    )
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.h5ad" in err[0]
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.tsv").exists()
