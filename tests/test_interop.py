"""Networks out to other tools and back: read_network, decoupler and pySCENIC tables, GraphML."""

from __future__ import annotations

import anndata
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gene_dag import io
from gene_dag.cli import main
from gene_dag.errors import InputError

GENES = ["SPI1", "IRF8", "LYZ", "CD14", "MS4A1"]


@pytest.fixture
def solved(tmp_path):
    W = sp.csr_matrix(([0.9, -0.4, 0.2], ([0, 0, 1], [2, 3, 3])), shape=(5, 5), dtype=np.float32)
    adata = anndata.AnnData(
        X=np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32), var=pd.DataFrame(index=GENES)
    )
    adata.varp["gene_dag"] = W
    adata.varp["gene_dag_stability"] = sp.csr_matrix(([1.0, 0.5, 0.25], W.nonzero()), shape=(5, 5))
    path = tmp_path / "solved.h5ad"
    adata.write_h5ad(path)
    return path


def test_export_writes_decoupler_pyscenic_and_graphml_and_read_network_reads_them(solved, tmp_path):
    out = {name: tmp_path / name for name in ("network.h5ad", "edges.tsv", "net.graphml", "dc.tsv", "scenic.tsv")}
    assert main(["export", str(solved), "--h5ad", str(out["network.h5ad"]), "--edges", str(out["edges.tsv"]),
                 "--graphml", str(out["net.graphml"]), "--decoupler", str(out["dc.tsv"]),
                 "--pyscenic", str(out["scenic.tsv"])]) == 0  # fmt: skip
    dc = pd.read_csv(out["dc.tsv"], sep="\t")
    assert list(dc.columns) == ["source", "target", "weight"]
    assert dc.values.tolist() == [["SPI1", "LYZ", pytest.approx(0.9)], ["SPI1", "CD14", pytest.approx(-0.4)],
                                  ["IRF8", "CD14", pytest.approx(0.2)]]  # fmt: skip
    scenic = pd.read_csv(out["scenic.tsv"], sep="\t")
    assert list(scenic.columns) == ["TF", "target", "importance"]
    assert scenic["importance"].tolist() == pytest.approx([0.9, 0.4, 0.2])

    G = nx.read_graphml(out["net.graphml"])
    assert G.nodes["SPI1"]["has_targets"] is True and G.nodes["LYZ"]["has_targets"] is False
    assert all("regulator" not in attrs for _, attrs in G.nodes(data=True))

    from_h5ad = io.read_network(out["network.h5ad"])
    assert set(from_h5ad.nodes) == set(GENES)  # isolated MS4A1 too
    assert from_h5ad["SPI1"]["CD14"]["weight"] == pytest.approx(-0.4) and from_h5ad["SPI1"]["CD14"]["sign"] == "-"
    assert from_h5ad["IRF8"]["CD14"]["stability"] == pytest.approx(0.25)
    from_tsv = io.read_network(out["edges.tsv"])
    assert set(from_tsv.edges) == set(from_h5ad.edges) == {("SPI1", "LYZ"), ("SPI1", "CD14"), ("IRF8", "CD14")}
    assert from_tsv["SPI1"]["LYZ"]["weight"] == pytest.approx(0.9)


def test_read_network_keeps_extra_numeric_columns_and_names_bad_files(tmp_path):
    good = tmp_path / "e.tsv"
    good.write_text("source\ttarget\tweight\tstability\nA\tB\t0.5\t0.9\n")
    assert io.read_network(good)["A"]["B"]["stability"] == pytest.approx(0.9)
    bad = tmp_path / "bad.tsv"
    bad.write_text("source\ttarget\nA\tB\n")
    with pytest.raises(InputError, match=r"bad.tsv: edge table lacks column\(s\) weight"):
        io.read_network(bad)
    bad.write_text("source\ttarget\tweight\nA\tB\tstrong\n")
    with pytest.raises(InputError, match="column 'weight' holds non-numeric"):
        io.read_network(bad)
    with pytest.raises(InputError, match="file not found"):
        io.read_network(tmp_path / "none.h5ad")
