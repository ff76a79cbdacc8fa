"""Streamed sufficient statistics against a direct float64 computation."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gene_dag import stats as gstats
from gene_dag.errors import ConfigError, InputError
from gene_dag.stats import SufficientStats, compute_stats

N, D = 301, 40
REGS = [3, 0, 17, 39, 8]  # unsorted on purpose: row order must follow the list


def make_sparse(seed: int = 0, density: float = 0.08) -> sp.csr_matrix:
    """Counts-like sparse data (float32, CSR) with unequal gene scales."""
    rng = np.random.default_rng(seed)
    X = sp.random(N, D, density=density, format="csr", random_state=seed, dtype=np.float32)
    X.data = np.round(X.data * 20).astype(np.float32) + 1
    return sp.csr_matrix(X @ sp.diags(rng.uniform(0.5, 5, D).astype(np.float32)))


def direct(X, regulators=None, scale=False):
    """Reference: numpy float64, explicit centring, population std."""
    A = X.toarray() if sp.issparse(X) else np.asarray(X)
    A = A.astype(np.float64)
    R = np.arange(A.shape[1]) if regulators is None else np.asarray(regulators)
    mean = A.mean(0)
    C = A - mean
    std = C.std(0)
    cov = C[:, R].T @ C / len(A)
    if scale:
        s = np.where(std == 0, 1, std)
        cov = cov / s[R][:, None] / s[None, :]
    return mean, std, cov


def assert_matches(st: SufficientStats, X, regulators=None, scale=False, rtol=1e-6):
    mean, std, cov = direct(X, regulators, scale)
    assert st.n == X.shape[0]
    assert st.cov.shape == cov.shape
    assert st.scaled is scale
    np.testing.assert_allclose(st.mean, mean, rtol=rtol, atol=rtol * np.abs(mean).max())
    np.testing.assert_allclose(st.std, std, rtol=rtol, atol=rtol * std.max())
    np.testing.assert_allclose(st.cov, cov, rtol=rtol, atol=rtol * np.abs(cov).max())


def write_backed(tmp_path, X, name="x.h5ad", **kw):
    genes = [f"g{i}" for i in range(X.shape[1])]
    adata = ad.AnnData(X=X, var={"gene": genes}, **kw)
    adata.var_names = genes
    path = tmp_path / name
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize("kind", ["dense", "csr", "anndata", "backed", "path"])
@pytest.mark.parametrize("block_rows", [1, 17, 64, None])
@pytest.mark.parametrize("regulators", [None, REGS])
@pytest.mark.parametrize("scale", [False, True])
def test_stream_matches_direct(tmp_path, kind, block_rows, regulators, scale):
    X = make_sparse()
    data = {"dense": lambda: X.toarray(), "csr": lambda: X, "anndata": lambda: ad.AnnData(X=X)}.get(
        kind, lambda: None
    )()
    if kind in ("backed", "path"):
        path = write_backed(tmp_path, X)
        data = ad.read_h5ad(path, backed="r") if kind == "backed" else path
    st = compute_stats(data, regulators=regulators, scale=scale, block_rows=block_rows, progress=False)
    assert_matches(st, X, regulators, scale)
    expected = np.arange(D) if regulators is None else REGS
    np.testing.assert_array_equal(st.regulators, expected)
    assert st.regulators.dtype == np.int64


def test_sparse_and_dense_paths_agree():
    """The sparse product path and the densified path give the same statistics."""
    X = make_sparse(density=0.05)
    sparse = compute_stats(X, REGS, block_rows=50, progress=False)
    dense = compute_stats(X.toarray(), REGS, block_rows=50, progress=False)
    np.testing.assert_allclose(sparse.cov, dense.cov, rtol=1e-10, atol=1e-12)
    # and denser than the threshold, a sparse matrix goes through the dense path
    Y = sp.csr_matrix(np.random.default_rng(1).normal(size=(N, D)))
    assert_matches(compute_stats(Y, REGS, block_rows=33, progress=False), Y, REGS)


def test_names_as_regulators_and_gene_names(tmp_path):
    X = make_sparse()
    path = write_backed(tmp_path, X)
    st = compute_stats(path, regulators=["g3", "g0", "g17", "g3"], progress=False)
    np.testing.assert_array_equal(st.regulators, [3, 0, 17])  # duplicate dropped, order kept
    np.testing.assert_array_equal(st.regulator_names, ["g3", "g0", "g17"])
    assert st.genes.dtype.kind == "U" and st.genes[5] == "g5"
    np.testing.assert_allclose(st.cov_rr, st.cov[:, [3, 0, 17]])


def test_unknown_regulators_are_listed(tmp_path):
    path = write_backed(tmp_path, make_sparse())
    with pytest.raises(InputError, match=r"x\.h5ad: 2 of 3 regulators are not among the 40 genes.*NOPE, ALSO"):
        compute_stats(path, regulators=["g1", "NOPE", "ALSO"], progress=False)
    with pytest.raises(ConfigError, match="outside"):
        compute_stats(make_sparse(), regulators=[0, 40], progress=False)


@pytest.mark.parametrize("sparse", [False, True])
def test_large_means_do_not_cancel(sparse):
    """Mean 1e4 x std: a naive E[xy] - E[x]E[y] loses ~8 digits; the stream must not."""
    rng = np.random.default_rng(3)
    A = rng.normal(size=(N, D)) @ rng.normal(size=(D, D)) * 0.3 + 1e4
    data = sp.csr_matrix(A) if sparse else A
    for block_rows in (1, 50, None):
        st = compute_stats(data, REGS, block_rows=block_rows, progress=False)
        assert_matches(st, A, REGS, rtol=1e-8)
    naive = A[:, REGS].T @ A / N - np.outer(A.mean(0)[REGS], A.mean(0))
    ref = direct(A, REGS)[2]
    assert np.abs(naive - ref).max() / np.abs(ref).max() > 1e-10  # the test has teeth


@pytest.mark.parametrize("sparse", [False, True])
def test_zero_variance_genes(caplog, monkeypatch, sparse):
    X = make_sparse().toarray().astype(np.float64)
    X[:, 5] = 0.0
    X[:, 8] = 7.3  # constant, in the regulator list
    X[:, 30] = 1e4 / 3
    data = X
    if sparse:  # force the sparse-product path although this matrix is 15% dense
        monkeypatch.setattr(gstats, "DENSE_ABOVE_DENSITY", 1.0)
        data = sp.csr_matrix(X)
        assert gstats._plan(
            data, 5, memory_gb=1.0, dev=torch.device("cpu"), dtype=np.dtype(np.float64), block_rows=None
        ).sparse
    with caplog.at_level(logging.WARNING, logger="gene_dag.stats"):
        st = compute_stats(data, REGS, scale=True, block_rows=37, progress=False)
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "3 gene(s) with zero variance" in warning and "5, 8, 30" in warning
    assert np.isfinite(st.cov).all() and np.isfinite(st.std).all()
    np.testing.assert_array_equal(np.flatnonzero(st.zero_variance), [5, 8, 30])
    assert (st.std[[5, 8, 30]] == 0).all()
    assert (st.cov[:, [5, 8, 30]] == 0).all() and (st.cov[REGS.index(8)] == 0).all()
    # other genes are correlations: the regulators' own entries are 1
    for i, r in enumerate(REGS):
        if r != 8:
            assert st.cov[i, r] == pytest.approx(1.0, rel=1e-12)
    # and equal the direct computation that divides zero-variance genes by 1
    ref = direct(X, REGS, scale=True)[2]
    ref[:, [5, 8, 30]] = 0
    ref[REGS.index(8)] = 0
    np.testing.assert_allclose(st.cov, ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(st.mean[[5, 8, 30]], [0, 7.3, 1e4 / 3], rtol=1e-14)


def test_nan_in_stream_names_file(tmp_path):
    X = make_sparse()
    pos = X.indptr[100]
    assert X.indptr[101] > pos  # row 100 has a stored value
    X.data[pos] = np.nan
    gene = f"g{X.indices[pos]}"
    path = write_backed(tmp_path, X, name="nan.h5ad")
    with pytest.raises(InputError, match=rf"nan\.h5ad: NaN values .* row 100, gene '{gene}'"):
        compute_stats(path, block_rows=30, progress=False)


def test_save_load_roundtrip(tmp_path):
    X = make_sparse().toarray()
    X[:, 2] = 0
    st = compute_stats(X, REGS, scale=True, dtype=np.float32, progress=False)
    assert st.cov.dtype == np.float32
    path = tmp_path / "sub" / "stats.npz"
    st.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["stats.npz"]
    back = SufficientStats.load(path)
    for field in ("genes", "regulators", "mean", "std", "cov", "zero_variance"):
        np.testing.assert_array_equal(getattr(back, field), getattr(st, field))
        assert getattr(back, field).dtype == getattr(st, field).dtype, field
    assert back.genes.dtype.kind == "U"
    assert (back.n, back.scaled) == (st.n, True)
    assert back.zero_variance[2]


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="missing.npz: file not found"):
        SufficientStats.load(tmp_path / "missing.npz")
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(InputError, match="other.npz: not a gene-dag statistics file"):
        SufficientStats.load(other)
    junk = tmp_path / "junk.npz"
    junk.write_text("hello")
    with pytest.raises(InputError, match="junk.npz: cannot read statistics"):
        SufficientStats.load(junk)


def test_memory_budget_sets_block_rows():
    X = make_sparse()
    dense = X.toarray()
    plan = gstats._plan(
        dense, len(REGS), memory_gb=1e-4, dev=torch.device("cpu"), dtype=np.dtype(np.float64), block_rows=None
    )
    per_row = (4 + 8) * D + 8 * len(REGS)
    assert plan.rows == int((1e-4 * 2**30 - 8 * len(REGS) * D) // per_row) and not plan.sparse
    assert gstats._plan(
        X, len(REGS), memory_gb=1.0, dev=torch.device("cpu"), dtype=np.dtype(np.float64), block_rows=None
    ).sparse
    # a tiny budget still streams correctly (many small blocks) ...
    tiny = 8 * len(REGS) * D * 3 / 2**30
    assert_matches(compute_stats(dense, REGS, memory_gb=tiny, progress=False), dense, REGS)
    # ... and one too small for the accumulators is a clear error
    with pytest.raises(ConfigError, match="memory_gb=1e-06 is too small for 40 regulators x 40 genes"):
        compute_stats(dense, memory_gb=1e-6, progress=False)


def test_input_does_not_change():
    X = np.random.default_rng(0).normal(size=(50, 6))
    before = X.copy()
    compute_stats(X, progress=False)
    np.testing.assert_array_equal(X, before)


def test_layers(tmp_path):
    X = make_sparse()
    counts = make_sparse(seed=5)
    adata = ad.AnnData(X=X, layers={"counts": counts})
    adata.raw = ad.AnnData(X=make_sparse(seed=7))
    assert_matches(compute_stats(adata, REGS, layer="counts", progress=False), counts, REGS)
    assert_matches(compute_stats(adata, REGS, layer="raw", progress=False), adata.raw.X, REGS)
    path = tmp_path / "layers.h5ad"
    adata.write_h5ad(path)
    assert_matches(compute_stats(path, REGS, layer="counts", block_rows=40, progress=False), counts, REGS)
    with pytest.raises(InputError, match="layers.h5ad: layer 'nope' not found"):
        compute_stats(path, layer="nope", progress=False)
    with pytest.raises(ConfigError, match="layer"):
        compute_stats(X, layer="counts", progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sparse", [False, True])
def test_cuda_matches_cpu(sparse):
    X = make_sparse()
    data = X if sparse else X.toarray()
    gpu = compute_stats(data, REGS, scale=True, block_rows=64, device="cuda", progress=False)
    assert_matches(gpu, X, REGS, scale=True)


def test_cuda_unavailable_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ConfigError, match="cuda"):
        compute_stats(np.ones((3, 2)), device="cuda", progress=False)
