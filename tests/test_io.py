"""Reading every input format, one-line errors for bad input, atomic writes."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gene_dag import io
from gene_dag.errors import ConfigError, InputError

GENES = ["Gata1", "Spi1", "Fli1", "Klf1"]
CELLS = ["c0", "c1", "c2"]
VALUES = np.array([[1.0, 0.0, 2.5, 3.0], [0.0, 4.0, 0.0, 1.5], [2.0, 2.0, 1.0, 0.0]])


def make_adata(values=VALUES, genes=GENES, sparse=False) -> ad.AnnData:
    X = sp.csr_matrix(values) if sparse else np.asarray(values)
    return ad.AnnData(X=X, obs=pd.DataFrame(index=CELLS[: len(values)]), var=pd.DataFrame(index=genes))


def write_table(path, values=VALUES, genes=GENES, cells=CELLS, transpose=False):
    df = pd.DataFrame(values, index=cells[: len(values)], columns=genes)
    if transpose:
        df = df.T
    df.to_csv(path, sep="\t" if ".tsv" in path.name else ",")
    return path


def write_bad(tmp_path, fmt: str, values=VALUES, genes=GENES) -> str:
    """The same (possibly bad) matrix as h5ad, h5ad with sparse X, or csv."""
    if fmt == "csv":
        return str(write_table(tmp_path / "bad.csv", values, genes))
    path = tmp_path / f"bad_{fmt}.h5ad"
    make_adata(values, genes, sparse=fmt == "h5ad-sparse").write_h5ad(path)
    return str(path)


def dense_x(adata) -> np.ndarray:
    return adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)


# ---------------------------------------------------------------------------- formats


@pytest.mark.parametrize("sparse", [False, True])
def test_h5ad_in_memory_and_backed(tmp_path, sparse):
    path = tmp_path / "x.h5ad"
    make_adata(sparse=sparse).write_h5ad(path)
    a = io.read_expression(path)
    assert list(a.var_names) == GENES and list(a.obs_names) == CELLS and not a.isbacked
    np.testing.assert_array_equal(dense_x(a), VALUES)
    b = io.read_expression(path, backed=True)
    assert b.isbacked and b.shape == (3, 4)
    block = b.X[0:2]
    np.testing.assert_array_equal(block.toarray() if sp.issparse(block) else block, VALUES[:2])


@pytest.mark.parametrize("name", ["x.csv", "x.tsv", "x.csv.gz"])
@pytest.mark.parametrize("orientation", ["cells_x_genes", "genes_x_cells"])
def test_tables_both_orientations(tmp_path, name, orientation):
    path = write_table(tmp_path / name, transpose=orientation == "genes_x_cells")
    a = io.read_expression(path, orientation=orientation)
    assert list(a.obs_names) == CELLS and list(a.var_names) == GENES
    np.testing.assert_array_equal(a.X, VALUES)
    # read with the wrong orientation, the axes swap
    b = io.read_expression(path, orientation=("cells_x_genes" if orientation == "genes_x_cells" else "genes_x_cells"))
    assert b.shape == (4, 3) and list(b.obs_names) == GENES


def test_bad_orientation_and_backed_layer(tmp_path):
    path = write_table(tmp_path / "x.csv")
    with pytest.raises(ConfigError, match="orientation"):
        io.read_expression(path, orientation="rows")
    h5 = tmp_path / "x.h5ad"
    make_adata().write_h5ad(h5)
    with pytest.raises(ConfigError, match="backed"):
        io.read_expression(h5, layer="counts", backed="r")
    with pytest.raises(ConfigError, match="no layers"):
        io.read_expression(path, layer="counts")


def test_loom_roundtrip(tmp_path):
    adata = make_adata(sparse=True)
    adata.layers["spliced"] = sp.csr_matrix(VALUES * 2)
    path = tmp_path / "x.loom"
    adata.write_loom(path)
    a = io.read_expression(path)
    assert list(a.var_names) == GENES and list(a.obs_names) == CELLS
    np.testing.assert_allclose(dense_x(a), VALUES)
    s = io.read_expression(path, layer="spliced")
    np.testing.assert_allclose(dense_x(s), VALUES * 2)


def test_layer_and_raw_selection(tmp_path):
    adata = make_adata()
    adata.layers["counts"] = VALUES * 10
    adata.raw = ad.AnnData(X=VALUES + 100, obs=adata.obs, var=pd.DataFrame(index=[g.upper() for g in GENES]))
    path = tmp_path / "x.h5ad"
    adata.write_h5ad(path)
    np.testing.assert_array_equal(dense_x(io.read_expression(path, layer="counts")), VALUES * 10)
    raw = io.read_expression(path, layer="raw")
    np.testing.assert_array_equal(dense_x(raw), VALUES + 100)
    assert list(raw.var_names) == [g.upper() for g in GENES]
    with pytest.raises(InputError, match=r"x\.h5ad: layer 'nope' not found \(available: raw, counts\)"):
        io.read_expression(path, layer="nope")
    make_adata().write_h5ad(tmp_path / "noraw.h5ad")
    with pytest.raises(InputError, match="noraw.h5ad: layer 'raw' requested but there is no raw"):
        io.read_expression(tmp_path / "noraw.h5ad", layer="raw")


def test_open_h5ad_matrix_streams_a_layer(tmp_path):
    adata = make_adata(sparse=True)
    adata.layers["counts"] = sp.csr_matrix(VALUES * 3)
    path = tmp_path / "x.h5ad"
    adata.write_h5ad(path)
    with io.open_h5ad_matrix(path, "counts") as (matrix, genes):
        assert list(genes) == GENES
        blocks = [b.toarray() for _, _, b in io.iter_row_blocks(matrix, 2)]
    np.testing.assert_array_equal(np.vstack(blocks), VALUES * 3)
    assert [b.shape[0] for b in blocks] == [2, 1]


@pytest.mark.filterwarnings("ignore:Observation names are not unique")  # krumsiek11
def test_bundled_pbmc68k_reduced():
    scaled = io.read_expression("scanpy:pbmc68k_reduced")
    assert scaled.shape == (700, 765)
    raw = io.read_expression("scanpy:pbmc68k_reduced", layer="raw")
    assert raw.shape == (700, 765)
    x = dense_x(raw)
    # raw holds log-normalised values (non-negative, many zeros); X is scaled (negatives)
    assert x.min() >= 0 and (x == 0).mean() > 0.5
    assert dense_x(scaled).min() < 0
    krum = io.read_expression("scanpy:krumsiek11")
    assert krum.n_vars == 11
    with pytest.raises(InputError, match="unknown bundled dataset 'nope'"):
        io.read_expression("scanpy:nope")


# ---------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.h5ad: file not found"):
        io.read_expression(tmp_path / "nothere.h5ad")


def test_unknown_and_unreadable_formats(tmp_path):
    xlsx = tmp_path / "data.xlsx"
    xlsx.write_text("x")
    with pytest.raises(InputError, match=r"data\.xlsx: unsupported format '\.xlsx'"):
        io.read_expression(xlsx)
    junk = tmp_path / "junk.h5ad"
    junk.write_text("not hdf5")
    with pytest.raises(InputError, match=r"junk\.h5ad: cannot read as a \.h5ad file") as err:
        io.read_expression(junk)
    assert "\n" not in str(err.value)
    text = tmp_path / "words.csv"
    text.write_text("cell,A,B\nc0,1,x\n")
    with pytest.raises(InputError, match=r"words\.csv: 1 column\(s\) hold non-numeric values \(first few: B\)"):
        io.read_expression(text)


@pytest.mark.parametrize("fmt", ["h5ad", "h5ad-sparse", "csv"])
@pytest.mark.parametrize(
    "bad,message", [(np.nan, "NaN values"), (np.inf, "infinite values"), (-np.inf, "infinite values")]
)
def test_nan_and_inf(tmp_path, fmt, bad, message):
    values = VALUES.copy()
    values[2, 1] = bad
    path = write_bad(tmp_path, fmt, values)
    with pytest.raises(
        InputError, match=rf"bad\S*: {message} in the expression matrix \(first at cell 'c2', gene 'Spi1'\)"
    ):
        io.read_expression(path)


@pytest.mark.parametrize("fmt", ["h5ad", "h5ad-sparse", "csv"])
def test_empty_matrix(tmp_path, fmt):
    no_cells = write_bad(tmp_path, fmt, VALUES[:0])
    with pytest.raises(InputError, match=r"bad\S*: empty expression matrix: 0 cells x 4 genes"):
        io.read_expression(no_cells)
    no_genes = write_bad(tmp_path, fmt, VALUES[:, :0], genes=[])
    with pytest.raises(InputError, match=r"bad\S*: empty expression matrix: 3 cells x 0 genes"):
        io.read_expression(no_genes)


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
@pytest.mark.parametrize("fmt", ["h5ad", "h5ad-sparse", "csv", "csv-genes-x-cells"])
def test_duplicate_genes(tmp_path, fmt):
    genes = ["A", "B", "A", "B"]
    orientation = "cells_x_genes"
    if fmt == "csv-genes-x-cells":
        path = write_table(tmp_path / "bad.csv", VALUES, genes, transpose=True)
        orientation = "genes_x_cells"
    else:  # in the csv header pandas would rename them A.1, B.1: they must still be caught
        path = write_bad(tmp_path, fmt, VALUES, genes)
    with pytest.raises(InputError, match=r"bad\S*: 2 duplicate gene name\(s\) \(first few: A, B\)"):
        io.read_expression(path, orientation=orientation)


def test_backed_validation_streams_sparse(tmp_path, monkeypatch):
    values = np.zeros((50, 4))
    values[:, 0] = 1.0
    values[41, 3] = np.nan
    path = tmp_path / "big.h5ad"
    ad.AnnData(X=sp.csr_matrix(values), var=pd.DataFrame(index=GENES)).write_h5ad(path)
    monkeypatch.setattr(io, "_SCAN_BLOCK_VALUES", 3)  # blocks of 2 rows
    seen = []
    real = io.iter_row_blocks

    def spy(matrix, rows):
        for start, stop, block in real(matrix, rows):
            assert sp.issparse(block)
            seen.append(stop - start)
            yield start, stop, block

    monkeypatch.setattr(io, "iter_row_blocks", spy)
    with pytest.raises(InputError, match=r"big\.h5ad: NaN values .*cell '41', gene 'Klf1'"):
        io.read_expression(path, backed="r")
    assert set(seen) == {2} and len(seen) == 21


# ---------------------------------------------------------------------------- gene lists


def test_read_gene_list(tmp_path):
    path = tmp_path / "regs.txt"
    path.write_text("# regulators\nGATA1\n\n  SPI1  \nFLI1 # erythroid\n   # indented comment\n")
    assert io.read_gene_list(path) == ["GATA1", "SPI1", "FLI1"]
    with pytest.raises(InputError, match=r"none\.txt: file not found"):
        io.read_gene_list(tmp_path / "none.txt")


# ---------------------------------------------------------------------------- writing


def test_atomic_write_success_and_failure(tmp_path):
    target = tmp_path / "deep" / "dir" / "out.tsv"
    with io.atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".tsv" and not tmp.exists()
        tmp.write_text("ok\n")
    assert target.read_text() == "ok\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.tsv"]

    with pytest.raises(RuntimeError, match="boom"):
        with io.atomic_write(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert target.read_text() == "ok\n"  # old content untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.tsv"]

    fresh = tmp_path / "fresh.h5ad"

    class Broken(ad.AnnData):
        def write_h5ad(self, filename, **kw):
            super().write_h5ad(filename, **kw)
            raise OSError("disk full")

    with pytest.raises(InputError, match=r"fresh\.h5ad: cannot write it \(OSError: disk full\)"):
        io.write_h5ad(Broken(X=VALUES), fresh)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]


def test_writers(tmp_path):
    io.write_json(
        {"b": np.float32(1.5), "a": np.int64(3), "arr": np.arange(2), "flag": np.bool_(True)}, tmp_path / "x.json"
    )
    text = (tmp_path / "x.json").read_text()
    assert json.loads(text) == {"a": 3, "arr": [0, 1], "b": 1.5, "flag": True}
    assert text.index('"a"') < text.index('"b"') and '\n  "a": 3' in text
    io.write_text("hello\n", tmp_path / "x.txt")
    assert (tmp_path / "x.txt").read_text() == "hello\n"
    df = pd.DataFrame({"source": ["A"], "target": ["B"], "weight": [0.5]})
    io.write_table(df, tmp_path / "edges.tsv")
    assert (tmp_path / "edges.tsv").read_text() == "source\ttarget\tweight\nA\tB\t0.5\n"
    io.write_h5ad(make_adata(), tmp_path / "x.h5ad")
    np.testing.assert_array_equal(io.read_expression(tmp_path / "x.h5ad").X, VALUES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edges.tsv", "x.h5ad", "x.json", "x.txt"]
