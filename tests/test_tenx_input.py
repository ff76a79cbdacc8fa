"""10x Genomics inputs: Cell Ranger .h5 files and Matrix Market folders, read with scanpy's readers."""

from __future__ import annotations

import gzip

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from gene_dag import io
from gene_dag.errors import ConfigError, InputError

SYMBOLS = ["CD14", "LYZ", "MS4A1", "LYZ", "SPI1"]  # LYZ twice: two gene IDs, one symbol
IDS = [f"ENSG{i:05d}" for i in range(len(SYMBOLS))]


def counts() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    return sp.csr_matrix(rng.poisson(2.0, size=(6, len(SYMBOLS))).astype(np.float32))  # cells x genes


def write_h5(path) -> None:
    """Cell Ranger >= 3 layout: /matrix with CSC genes x cells and /matrix/features."""
    M = sp.csc_matrix(counts().T.astype(np.int32))
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["data"], g["indices"], g["indptr"] = M.data, M.indices.astype(np.int64), M.indptr.astype(np.int64)
        g["shape"] = np.array(M.shape, dtype=np.int32)
        g["barcodes"] = np.array([f"AAAC-{i}" for i in range(M.shape[1])], dtype="S")
        feats = g.create_group("features")
        feats["id"] = np.array(IDS, dtype="S")
        feats["name"] = np.array(SYMBOLS, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * len(IDS), dtype="S")
        feats["genome"] = np.array(["GRCh38"] * len(IDS), dtype="S")
        feats["_all_tag_keys"] = np.array(["genome"], dtype="S")


def write_mtx(folder) -> None:
    folder.mkdir()
    with gzip.open(folder / "matrix.mtx.gz", "wb") as f:
        scipy.io.mmwrite(f, sp.coo_matrix(counts().T))
    with gzip.open(folder / "features.tsv.gz", "wt") as f:
        f.writelines(f"{i}\t{s}\tGene Expression\n" for i, s in zip(IDS, SYMBOLS, strict=True))
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as f:
        f.writelines(f"AAAC-{i}\n" for i in range(6))


@pytest.mark.parametrize("kind", ["h5", "mtx"])
def test_10x_inputs_give_cells_by_genes_with_unique_symbols(tmp_path, caplog, kind):
    path = tmp_path / ("filtered.h5" if kind == "h5" else "filtered_feature_bc_matrix")
    write_h5(path) if kind == "h5" else write_mtx(path)
    adata = io.read_expression(path)
    assert adata.shape == (6, 5)
    assert list(adata.var_names) == ["CD14", "LYZ", "MS4A1", "LYZ-1", "SPI1"]
    assert list(adata.var["gene_ids"]) == IDS
    np.testing.assert_array_equal(sp.csr_matrix(adata.X).toarray(), counts().toarray())
    assert "1 gene symbol(s) occur more than once (first few: LYZ)" in caplog.text


def test_a_folder_without_a_matrix_and_a_layer_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is a directory without matrix.mtx"):
        io.read_expression(tmp_path / "empty")
    write_h5(tmp_path / "x.h5")
    with pytest.raises(ConfigError, match="has no layers"):
        io.read_expression(tmp_path / "x.h5", layer="counts")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="bad.h5: cannot read"):
        io.read_expression(tmp_path / "bad.h5")
