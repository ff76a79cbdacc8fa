"""Bad input to every subcommand: a one-line error naming the file and the problem, exit 2,
no partial output, and never a user's file removed or overwritten."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gene_dag.cli import main
from gene_dag.io import OUTDIR_MARKER


def counts_adata(n_cells=(60, 50), n_genes=12, seed=0, genes=None):
    """Poisson counts in groups A, B (sizes n_cells), genes G00.. (or ``genes``)."""
    rng = np.random.default_rng(seed)
    n = sum(n_cells)
    X = rng.poisson(3.0, size=(n, n_genes)).astype(np.float32)
    obs = pd.DataFrame({"tissue": pd.Categorical(np.repeat(["A", "B"][: len(n_cells)], n_cells))},
                       index=[f"c{i}" for i in range(n)])
    var = pd.DataFrame(index=genes if genes is not None else [f"G{j:02d}" for j in range(n_genes)])
    return anndata.AnnData(X=sp.csr_matrix(X), obs=obs, var=var)


def fails(capsys, argv, *needles):
    """Run ``gene-dag ARGV``: exit 2 and one stderr line holding every needle; returns that line."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    assert len(err) == 1, err
    for needle in needles:
        assert str(needle) in err[0], err[0]
    return err[0]


def snapshot(directory):
    """Every file under ``directory`` with its bytes."""
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- preprocess --outdir


def preprocess_args(data, outdir, manifest):
    return ["preprocess", data, "--outdir", outdir, "--manifest", manifest, "--groupby", "tissue",
            "--min-group-size", "20"]


def test_preprocess_never_removes_a_directory_it_did_not_write(tmp_path, capsys):
    users = tmp_path / "mine"
    users.mkdir()
    counts_adata().write_h5ad(users / "data.h5ad")
    (users / "notes.txt").write_text("keep me\n")
    before = snapshot(users)
    fails(capsys, preprocess_args(users / "data.h5ad", users, tmp_path / "groups.tsv"), str(users), "input")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me too\n")
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    fails(capsys, preprocess_args(tmp_path / "data.h5ad", tmp_path / "other", tmp_path / "groups.tsv"),
          str(tmp_path / "other"), "not empty", OUTDIR_MARKER, "nothing was removed")
    assert snapshot(users) == before
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me too\n"
    assert not (tmp_path / "groups.tsv").exists()


def test_preprocess_outdir_dot_is_a_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    fails(capsys, preprocess_args("data.h5ad", ".", "groups.tsv"), "current directory")
    assert snapshot(tmp_path) == before


def test_preprocess_replaces_only_its_own_directory(tmp_path, capsys):
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    out = tmp_path / "pre"
    assert main([str(a) for a in preprocess_args(tmp_path / "data.h5ad", out, tmp_path / "g.tsv")]) == 0
    assert (out / OUTDIR_MARKER).is_file() and {"A.h5ad", "B.h5ad"} <= {p.name for p in out.iterdir()}
    (out / "stale.h5ad").write_text("from an earlier run")
    counts_adata(n_cells=(60, 10)).write_h5ad(tmp_path / "data.h5ad")  # B is now skipped
    assert main([str(a) for a in preprocess_args(tmp_path / "data.h5ad", out, tmp_path / "g.tsv")]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([OUTDIR_MARKER, "A.h5ad"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5ad", "g.tsv", "pre"]  # no temporaries left
    # a sibling whose name the old code used for its temporary directory is the user's: kept
    (tmp_path / ".pre.tmp").mkdir()
    (tmp_path / ".pre.tmp" / "x.txt").write_text("mine")
    assert main([str(a) for a in preprocess_args(tmp_path / "data.h5ad", out, tmp_path / "g.tsv")]) == 0
    assert (tmp_path / ".pre.tmp" / "x.txt").read_text() == "mine"


def test_preprocess_an_empty_directory_is_used(tmp_path):
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    (tmp_path / "pre").mkdir()
    assert main([str(a) for a in preprocess_args(tmp_path / "data.h5ad", tmp_path / "pre", tmp_path / "g.tsv")]) == 0
    assert (tmp_path / "pre" / "A.h5ad").is_file()


def test_preprocess_input_inside_its_own_old_outdir_is_refused(tmp_path, capsys):
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    out = tmp_path / "pre"
    assert main([str(a) for a in preprocess_args(tmp_path / "data.h5ad", out, tmp_path / "g.tsv")]) == 0
    before = snapshot(out)
    fails(capsys, preprocess_args(out / "A.h5ad", out, tmp_path / "g2.tsv"), "holds the input")
    assert snapshot(out) == before


def test_preprocess_outputs_that_would_replace_the_input_or_are_not_directories(tmp_path, capsys):
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    before = snapshot(tmp_path)
    fails(capsys, preprocess_args(tmp_path / "data.h5ad", tmp_path / "pre", tmp_path / "data.h5ad"),
          "data.h5ad", "replace the input")
    fails(capsys, preprocess_args(tmp_path / "data.h5ad", tmp_path / "data.h5ad", tmp_path / "g.tsv"),
          "not a directory")
    fails(capsys, preprocess_args(tmp_path / "data.h5ad", tmp_path / "data.h5ad" / "sub", tmp_path / "g.tsv"),
          "not a directory")
    fails(capsys, preprocess_args(tmp_path / "data.h5ad", tmp_path / "pre", tmp_path), "is a directory")
    assert snapshot(tmp_path) == before
