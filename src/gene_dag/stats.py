"""Streamed sufficient statistics: gene means, scales and regulator covariance rows.

The solver never touches cells: it needs only C[R, :] = X_Rᵀ X / n of the centred
(optionally unit-variance) data, for the k regulator rows R (docs/design.md, section 1).
:func:`compute_stats` computes it in one pass over row blocks of a dense, sparse,
in-memory or backed (on-disk) matrix, with peak memory set by ``memory_gb``.

Numerics: sums are kept in float64 around a per-gene shift ``s`` (the mean of the
first block), so the final ``E[xy] - E[x]E[y]`` never cancels large means. Dense
blocks are centred explicitly before the product. Sparse blocks use the sparse
product ``X_b[:, R]ᵀ X_b`` with the shift applied as rank-one corrections: exact
algebra, with a rounding error of about 1e-16 x mean_i mean_j relative to the
covariance, which is small for really sparse data (for a gene stored in a fraction
p of cells, mean² <= p/(1-p) x variance); means and variances come from the
deviations of the stored values from the shift and stay exact for constant genes.
Sparse inputs denser than ``DENSE_ABOVE_DENSITY`` are densified block by block.

Memory model (bytes; ``B = memory_gb * 2**30``, k regulators, d genes, ``s`` bytes
per stored value of the input, ``z`` stored values per row on average):

- fixed: accumulator ``8kd`` (+ ``8kd`` host copy of the result on a GPU, + ``4kd``
  for a float32 result), plus, for sparse blocks on the CPU, the products of ``t``
  concurrent regulator chunks of ``c`` rows: ``t * 24 * c * d`` (sparse result with
  indices + its dense copy); ``c`` is chosen so these take at most a quarter of what
  the accumulators leave free.
- per block row: dense ``(s + 8) d + 8k`` (the block as read, its float64 centred
  copy, the regulator columns); sparse ``40 z`` (the block as read, its float64
  copy, its deviations from the shift, the regulator columns and their
  transpose); a sparse block that is
  densified (GPU, or dense-ish data) costs both.
- block rows = ``(B - fixed) / per_row``; a budget below one row raises ConfigError.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from gene_dag import io
from gene_dag.errors import ConfigError, InputError

log = logging.getLogger(__name__)

#: Sparse inputs with more stored values than this fraction go through the dense path
#: (per block): measured on this project's 2-core CPUs, the scipy sparse product is
#: faster below about 10% density and the dense float64 product above.
DENSE_ABOVE_DENSITY = 0.12
#: A gene is zero-variance when std <= this * |mean| (float rounding of a constant).
ZERO_VARIANCE_RTOL = 1e-10
#: A gene is reported as outlier-dominated when one cell holds more than this share of
#: its variance: its weights then describe that cell, not the population.
SINGLE_CELL_VARIANCE_SHARE = 0.5
_SPARSE_BYTES_PER_VALUE = 40
_SPARSE_PRODUCT_BYTES_PER_ENTRY = 24
_SPARSE_PRODUCT_SHARE = 0.25
_FORMAT_VERSION = 1


@dataclass
class SufficientStats:
    """What the solver needs from the cells.

    ``cov[i, j]`` is the covariance (or, if ``scaled``, the correlation) of gene
    ``genes[regulators[i]]`` with gene ``genes[j]``; ``mean``/``std`` are the raw
    per-gene mean and population standard deviation (ddof=0), kept to map weights
    learned on scaled data back to expression units. Zero-variance genes have std 0
    and all-zero covariance rows and columns.
    """

    genes: np.ndarray
    regulators: np.ndarray
    n: int
    mean: np.ndarray
    std: np.ndarray
    cov: np.ndarray
    scaled: bool
    zero_variance: np.ndarray
    #: per gene, the largest share of its variance that one cell contributes, (x - mean)² / (n var)
    max_cell_share: np.ndarray | None = None

    @property
    def outlier_dominated(self) -> np.ndarray:
        """Genes where one cell holds more than ``SINGLE_CELL_VARIANCE_SHARE`` of the variance."""
        if self.max_cell_share is None:
            return np.zeros(len(self.genes), dtype=bool)
        return self.max_cell_share > SINGLE_CELL_VARIANCE_SHARE

    def __post_init__(self) -> None:
        """Check that the arrays' shapes agree with the genes and regulators."""
        d, k = len(self.genes), len(self.regulators)
        if self.cov.shape != (k, d) or self.mean.shape != (d,) or self.std.shape != (d,):
            raise ValueError(
                f"inconsistent statistics: {d} genes, {k} regulators, cov {self.cov.shape}, "
                f"mean {self.mean.shape}, std {self.std.shape}"
            )

    @property
    def regulator_names(self) -> np.ndarray:
        """Names of the regulators, in the order of the rows of ``cov``."""
        return self.genes[self.regulators]

    @property
    def cov_rr(self) -> np.ndarray:
        """The k x k regulator block C[R, R] (a copy)."""
        return self.cov[:, self.regulators]

    def save(self, path: str | os.PathLike) -> None:
        """Write to an uncompressed ``.npz`` atomically (loads without pickle)."""
        arrays = {
            "genes": np.asarray(self.genes, dtype=str),
            "regulators": np.asarray(self.regulators, dtype=np.int64),
            "n": np.int64(self.n),
            "mean": self.mean,
            "std": self.std,
            "cov": self.cov,
            "scaled": np.bool_(self.scaled),
            "zero_variance": np.asarray(self.zero_variance, dtype=bool),
            **({} if self.max_cell_share is None else {"max_cell_share": self.max_cell_share}),
            "format_version": np.int64(_FORMAT_VERSION),
        }
        with io.atomic_write(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SufficientStats:
        """Read statistics written by :meth:`save`; InputError for a missing or foreign file."""
        path = Path(path)
        if not path.exists():
            raise InputError("file not found", path)
        try:
            with np.load(path, allow_pickle=False) as z:
                optional = {"max_cell_share"}
                missing = [f for f in cls.__dataclass_fields__ if f not in z.files and f not in optional]
                if missing:
                    raise InputError(f"not a gene-dag statistics file (missing {', '.join(missing)})", path)
                a = {f: z[f] for f in cls.__dataclass_fields__ if f in z.files}
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - not an npz, corrupt, pickled objects ...
            raise InputError(f"cannot read statistics ({io.one_line(exc)})", path) from exc
        return cls(
            genes=a["genes"],
            regulators=a["regulators"].astype(np.int64),
            n=int(a["n"]),
            mean=a["mean"],
            std=a["std"],
            cov=a["cov"],
            scaled=bool(a["scaled"]),
            zero_variance=a["zero_variance"].astype(bool),
            max_cell_share=a.get("max_cell_share"),
        )


def compute_stats(
    data: Any,
    regulators: Sequence[str] | Sequence[int] | np.ndarray | None = None,
    *,
    layer: str | None = None,
    scale: bool = False,
    memory_gb: float = 2.0,
    device: str = "cpu",
    progress: bool = True,
    block_rows: int | None = None,
    dtype: type | np.dtype = np.float64,
) -> SufficientStats:
    """Stream ``data`` once in row blocks and return its sufficient statistics.

    Parameters
    ----------
    data
        Cells x genes: a dense array, a scipy sparse matrix (CSR streams without a
        copy), an AnnData (in memory or backed) or the path of an ``.h5ad`` file
        (streamed from disk, only the chosen matrix is read).
    regulators
        Gene names, integer indices (order kept, duplicates dropped) or a boolean mask
        over genes; ``None``: all genes. Unknown names raise InputError.
    layer
        For AnnData or a path: None (X), ``"raw"`` or a layer name.
    scale
        Return correlations (each gene scaled to unit variance; zero-variance genes
        are divided by 1) instead of covariances.
    memory_gb
        Budget for the block and the accumulators (module docstring has the formula).
    device
        ``"cpu"`` or ``"cuda"`` (any torch device): where the float64 products run.
    progress
        Progress bar on a terminal, else an INFO log line every ~10% of the cells.
    block_rows
        Override the number of rows per block (tests, tuning).
    dtype
        dtype of the returned ``cov`` (float64 or float32); sums are always float64.
    """
    _device_and_dtype(device, dtype)
    strata = _accumulate(
        data, regulators, layer=layer, memory_gb=memory_gb, device=device, progress=progress, block_rows=block_rows
    )
    stats = strata.combine(scale=scale, dtype=dtype)
    _warn_degenerate(stats, strata.source)
    return stats


@dataclass
class StrataStats:
    """Per-stratum statistics from one pass: any union of strata combines into SufficientStats.

    A stratum is a set of cells (a chunk of cells for stability resamples, a cell type,
    or both). ``cov[s]`` is the k x d covariance of stratum ``s`` about its own mean
    (ddof=0), so unions combine exactly, without a second pass, by the parallel formula
    of Chan, Golub & LeVeque (1979): scatter = sum of n_s (cov_s + (m_s - m)(m_s - m)^T).
    """

    genes: np.ndarray
    regulators: np.ndarray
    n: np.ndarray  # (S,) cells per stratum
    mean: np.ndarray  # (S, d)
    var: np.ndarray  # (S, d)
    cov: np.ndarray  # (S, k, d)
    share: np.ndarray  # (S, d) largest one-cell share of each stratum's variance
    source: str | None = None

    @property
    def n_strata(self) -> int:
        """Number of strata."""
        return len(self.n)

    def combine(
        self,
        members: Sequence[int] | np.ndarray | None = None,
        groups: Sequence[int] | np.ndarray | None = None,
        *,
        scale: bool = False,
        dtype: type | np.dtype = np.float64,
    ) -> SufficientStats:
        """Return the statistics of the cells of strata ``members`` (default all).

        ``groups`` (one integer per stratum) centres each group on its own mean first:
        the statistics of group-centred data, in which differences between the groups'
        means (cell types, batches) do not appear as covariance.
        """
        members = np.arange(self.n_strata) if members is None else np.asarray(members, dtype=np.int64)
        members = members[self.n[members] > 0]
        labels = np.zeros(self.n_strata, np.int64) if groups is None else np.asarray(groups, np.int64)
        n_s = self.n[members].astype(np.float64)
        n = float(n_s.sum())
        mean = (n_s[:, None] * self.mean[members]).sum(0) / n
        reg = self.regulators
        d, k = len(self.genes), len(reg)
        var = np.zeros(d)
        if members.size == 1:  # one stratum: its own statistics (one copy, no k x d temporaries)
            scatter = self.cov[members[0]] * n
            var = self.var[members[0]] * n
            groups_present: np.ndarray = np.zeros(0, np.int64)
        else:
            scatter = np.zeros((k, d))
            groups_present = np.unique(labels[members])
        for g in groups_present:
            part = members[labels[members] == g]
            w = self.n[part].astype(np.float64)
            centre = (w[:, None] * self.mean[part]).sum(0) / w.sum()
            for s_, ws in zip(part, w, strict=True):
                dev = self.mean[s_] - centre
                scatter += ws * self.cov[s_]
                scatter += np.outer(ws * dev[reg], dev)
                var += ws * (self.var[s_] + dev * dev)
        var /= n
        cov = scatter / n
        cov[np.arange(k), reg] = var[reg]
        zero = np.sqrt(var) <= ZERO_VARIANCE_RTOL * np.abs(mean)
        std = np.where(zero, 0.0, np.sqrt(var))
        # exact for one stratum; across strata, the largest stratum-level share rescaled
        safe = np.where(var > 0, n * var, 1.0)
        share = np.max(self.share[members] * (n_s[:, None] * self.var[members]) / safe, axis=0)
        share = np.where(zero, 0.0, np.clip(share, 0.0, 1.0))
        cov[:, zero] = 0
        cov[zero[reg]] = 0
        if scale:
            denom = np.where(zero, 1.0, std)
            cov /= denom[reg, None]
            cov /= denom[None, :]
        return SufficientStats(
            genes=self.genes,
            regulators=reg,
            n=int(n),
            mean=mean,
            std=std,
            cov=cov.astype(dtype, copy=False),
            scaled=bool(scale),
            zero_variance=zero,
            max_cell_share=share,
        )


def compute_strata_stats(
    data: Any,
    strata: np.ndarray,
    regulators: Sequence[str] | Sequence[int] | np.ndarray | None = None,
    *,
    layer: str | None = None,
    memory_gb: float = 2.0,
    device: str = "cpu",
    progress: bool = True,
) -> StrataStats:
    """Stream ``data`` once and return the statistics of each stratum of cells.

    ``strata`` gives each cell's stratum, an integer from 0 to S - 1; the other
    arguments are those of :func:`compute_stats`. The accumulators take S times the
    memory of one (``8 S k d`` bytes), within ``memory_gb``.
    """
    labels = np.asarray(strata)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
        raise ConfigError("strata must be one non-negative integer per cell")
    return _accumulate(
        data, regulators, layer=layer, memory_gb=memory_gb, device=device, progress=progress, strata=labels
    )


def _accumulate(
    data: Any,
    regulators: Any,
    *,
    layer: str | None,
    memory_gb: float,
    device: str,
    progress: bool,
    block_rows: int | None = None,
    strata: np.ndarray | None = None,
) -> StrataStats:
    """Make the one pass over the cells behind :func:`compute_stats` and :func:`compute_strata_stats`."""
    import torch

    dev, _ = _device_and_dtype(device, np.float64)
    with _open(data, layer) as (matrix, genes, source):
        n, d = matrix.shape
        if n == 0 or d == 0:
            raise InputError(f"empty expression matrix: {n} cells x {d} genes", source)
        if strata is not None and strata.shape != (n,):
            raise ConfigError(f"strata has {strata.shape[0]} entries for {n} cells")
        n_strata = 1 if strata is None else int(strata.max()) + 1
        reg = _resolve_regulators(regulators, genes, source)
        plan = _plan(
            matrix, len(reg), memory_gb=memory_gb, dev=dev, dtype=np.float64, block_rows=block_rows, copies=n_strata
        )
        log.info(
            "stats: %d cells x %d genes, %d regulators, %d strata, %s blocks of %d rows on %s "
            "(torch threads %d, %d product thread(s))",
            n,
            d,
            len(reg),
            n_strata,
            "sparse" if plan.sparse else "dense",
            plan.rows,
            dev,
            torch.get_num_threads(),
            plan.threads,
        )
        accs = [_Accumulator(reg, d, dev, plan) for _ in range(n_strata)]
        with _Progress(n, enabled=progress) as bar:
            for start, stop, block in io.iter_row_blocks(matrix, plan.rows):
                io.check_finite_block(block, start, genes, source)
                _add_block(accs, block, None if strata is None else strata[start:stop])
                bar.update(stop - start)
        parts = [acc.finish(scale=False) if acc.n else None for acc in accs]
    k = len(reg)
    empty = (np.zeros(d), np.zeros(d), np.zeros((k, d)), np.ones(d, bool), np.zeros(d))
    parts = [p if p is not None else empty for p in parts]
    return StrataStats(
        genes=genes,
        regulators=reg,
        n=np.array([acc.n for acc in accs], dtype=np.int64),
        mean=np.stack([p[0] for p in parts]).astype(np.float64),
        var=np.stack([p[1].astype(np.float64) ** 2 for p in parts]),
        cov=np.stack([p[2] for p in parts]).astype(np.float64, copy=False),
        share=np.stack([p[4] for p in parts]).astype(np.float64),
        source=source,
    )


def _add_block(accs: list, block: Any, labels: np.ndarray | None) -> None:
    """Add a row block to the accumulators of its cells' strata."""
    if labels is None:
        accs[0].add(block)
        return
    for s_ in np.unique(labels):
        accs[s_].add(block[np.flatnonzero(labels == s_)])


def _device_and_dtype(device: str, dtype: type | np.dtype) -> tuple[Any, np.dtype]:
    """Check and return the torch device (CUDA only when torch sees one) and the dtype of ``cov``."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' requested but torch sees no CUDA device")
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ConfigError(f"dtype must be float64 or float32, not {dtype}")
    return dev, dtype


def _warn_degenerate(stats: SufficientStats, source: str | None) -> None:
    """Warn about, naming them, the genes with zero variance and those whose variance one cell holds."""
    if stats.zero_variance.any():
        names = stats.genes[stats.zero_variance]
        log.warning(
            "%d gene(s) with zero variance (first few: %s): std kept at 0, covariance set to 0, left out of scaling",
            len(names),
            io.first_few(names),
        )
    if stats.outlier_dominated.any():
        names = stats.genes[stats.outlier_dominated]
        log.warning(
            "%s%d gene(s) owe more than %d%% of their variance to a single cell (first few: %s): "
            "an outlier or a unit error? Their edges describe that cell",
            f"{source}: " if source else "",
            len(names),
            round(100 * SINGLE_CELL_VARIANCE_SHARE),
            io.first_few(names),
        )


# ---------------------------------------------------------------------------- inputs


@contextlib.contextmanager
def _open(data: Any, layer: str | None) -> Iterator[tuple[Any, np.ndarray, str | None]]:
    """Yield ``(row-sliceable matrix, gene names as str array, source label)``."""
    import anndata as ad

    if isinstance(data, (str, os.PathLike)):
        with io.open_h5ad_matrix(data, layer) as (matrix, genes):
            yield matrix, _names(genes), str(data)
        return
    if isinstance(data, ad.AnnData):
        source = str(data.filename) if data.isbacked else None
        matrix, genes = io.layer_matrix(data, layer, source)
        if getattr(matrix, "format", None) == "csc" and not sp.issparse(matrix):
            raise InputError("X is stored as CSC on disk; streaming cells needs CSR", source)
        yield _in_memory(matrix), _names(genes), source
        return
    if layer is not None:
        raise ConfigError(f"layer={layer!r} needs an AnnData or an .h5ad path, not {type(data).__name__}")
    matrix = _in_memory(data)
    if matrix.ndim != 2:
        raise InputError(f"expression data must be 2-D (cells x genes), not {matrix.ndim}-D")
    yield matrix, np.arange(matrix.shape[1]).astype(str), None


def _in_memory(matrix: Any) -> Any:
    """CSR for in-memory sparse matrices, ndarray for array-likes, on-disk objects as they are."""
    if sp.issparse(matrix):
        if matrix.format != "csr":
            log.info("converting %s matrix to CSR to stream rows (a copy, not densified)", matrix.format)
            return sp.csr_matrix(matrix)
        return matrix
    if hasattr(matrix, "shape") and hasattr(matrix, "dtype") and not isinstance(matrix, np.ndarray):
        return matrix  # h5py.Dataset or anndata backed sparse dataset: sliced on demand
    return np.asarray(matrix)


def _names(index: Any) -> np.ndarray:
    """Gene names as a fixed-width unicode array."""
    return np.asarray(index, dtype=object).astype(str)


def _resolve_regulators(regulators: Any, genes: np.ndarray, source: str | None) -> np.ndarray:
    """Regulator indices (int64, order kept, duplicates dropped with a warning)."""
    d = len(genes)
    if regulators is None:
        return np.arange(d, dtype=np.int64)
    values = np.asarray(list(regulators) if not isinstance(regulators, np.ndarray) else regulators)
    if values.size == 0:
        raise ConfigError("the regulator list is empty (pass None to use every gene)")
    if values.dtype.kind == "b":
        if values.shape != (d,):
            raise ConfigError(f"a boolean regulator mask needs one entry per gene ({d}), not {values.shape}")
        values = np.flatnonzero(values)
    if values.dtype.kind in "iu":
        idx = values.astype(np.int64).ravel()
        bad = idx[(idx < 0) | (idx >= d)]
        if bad.size:
            raise ConfigError(f"{bad.size} regulator index(es) outside 0..{d - 1} (first few: {io.first_few(bad)})")
    else:
        import pandas as pd

        names = values.astype(str).ravel()
        idx = pd.Index(genes).get_indexer(names).astype(np.int64)
        missing = names[idx < 0]
        if missing.size:
            raise InputError(
                f"{missing.size} of {names.size} regulators are not among the {d} genes "
                f"(first few: {io.first_few(missing)})",
                source,
            )
    _, first = np.unique(idx, return_index=True)
    if first.size < idx.size:
        log.warning("%d duplicate regulator(s) dropped", idx.size - first.size)
        idx = idx[np.sort(first)]
    return idx


# ---------------------------------------------------------------------------- plan


@dataclass
class _Plan:
    """How to stream: rows per block, sparse or dense products, regulator chunking."""

    rows: int
    sparse: bool
    chunk: int
    threads: int


def _is_sparse_source(matrix: Any) -> bool:
    return sp.issparse(matrix) or getattr(matrix, "format", None) == "csr"


def _plan(
    matrix: Any, k: int, *, memory_gb: float, dev: Any, dtype: np.dtype, block_rows: int | None, copies: int = 1
) -> _Plan:
    """Block rows and product layout from the memory budget (formula: module docstring)."""
    import torch

    if not memory_gb > 0:
        raise ConfigError(f"memory_gb must be positive, not {memory_gb}")
    n, d = matrix.shape
    budget = memory_gb * 2**30
    per_value = io.stored_values_per_row(matrix)
    sparse_source = _is_sparse_source(matrix)
    sparse = sparse_source and dev.type == "cpu" and per_value <= DENSE_ABOVE_DENSITY * d
    fixed = copies * (8 * k * d + (8 * k * d if dev.type != "cpu" else 0)) + (4 * k * d if dtype == np.float32 else 0)
    threads, chunk = 1, k
    if sparse:
        threads = max(1, min(torch.get_num_threads(), k))
        room = _SPARSE_PRODUCT_SHARE * max(budget - fixed, 0) / (threads * _SPARSE_PRODUCT_BYTES_PER_ENTRY * d)
        chunk = max(1, min(math.ceil(k / threads), int(room)))
        fixed += threads * chunk * _SPARSE_PRODUCT_BYTES_PER_ENTRY * d
        per_row = _SPARSE_BYTES_PER_VALUE * per_value + 16
    else:
        itemsize = np.dtype(matrix.dtype).itemsize
        per_row = (itemsize + 8) * d + 8 * k
        if sparse_source:
            per_row += _SPARSE_BYTES_PER_VALUE * per_value
    if block_rows is not None:
        rows = int(block_rows)
        if rows < 1:
            raise ConfigError(f"block_rows must be at least 1, not {block_rows}")
    else:
        rows = int((budget - fixed) // per_row)
        if rows < 1:
            raise ConfigError(
                f"memory_gb={memory_gb} is too small for {k} regulators x {d} genes: the "
                f"accumulators need {fixed / 2**30:.3g} GiB plus {per_row / 2**20:.3g} MiB per "
                "block row; raise memory_gb or use fewer regulators"
            )
    return _Plan(rows=min(rows, n), sparse=sparse, chunk=chunk, threads=threads)


# ---------------------------------------------------------------------------- accumulation


class _Accumulator:
    """Shifted float64 sums: Σ(x-s), Σ(x-s)², Σ(x-s)_R (x-s)ᵀ, with s the first block's mean."""

    def __init__(self, reg: np.ndarray, d: int, dev: Any, plan: _Plan):
        import torch

        self.torch, self.dev, self.plan = torch, dev, plan
        self.reg = reg
        self.reg_t = torch.as_tensor(reg, device=dev)
        f64 = dict(dtype=torch.float64, device=dev)
        self.n = 0
        self.shift: Any = None
        self.s1 = torch.zeros(d, **f64)
        self.sq = torch.zeros(d, **f64)
        self.cross = torch.zeros(len(reg), d, **f64)
        self.hi = torch.full((d,), -math.inf, **f64)  # per-gene extremes, for outlier shares
        self.lo = torch.full((d,), math.inf, **f64)
        self.pool = ThreadPoolExecutor(plan.threads) if plan.threads > 1 else None

    def add(self, block: Any) -> None:
        """Add one row block (dense array or CSR)."""
        torch = self.torch
        if self.shift is None:
            first = np.asarray(block.sum(axis=0, dtype=np.float64)).ravel() / block.shape[0]
            self.shift = torch.as_tensor(first, dtype=torch.float64, device=self.dev)
        if sp.issparse(block) and self.plan.sparse:
            self._add_sparse(block)
        else:
            self._add_dense(block)
        self.n += block.shape[0]

    def _add_dense(self, block: Any) -> None:
        """Centre the block in float64 on the device, then one matrix product."""
        torch = self.torch
        if sp.issparse(block):
            owned = True  # a fresh dense copy, safe to modify in place
            if self.dev.type == "cpu":
                x = torch.from_numpy(_native_float(block.toarray()))
            else:  # ship the CSR arrays (much smaller than dense) and densify on the device
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is beta"
                    x = (
                        torch.sparse_csr_tensor(
                            torch.from_numpy(block.indptr.astype(np.int64)),
                            torch.from_numpy(block.indices.astype(np.int64)),
                            torch.from_numpy(_native_float(block.data)),
                            size=block.shape,
                        )
                        .to(self.dev)
                        .to_dense()
                    )
        else:
            arr = _native_float(np.ascontiguousarray(block))
            owned = arr is not block  # converted: already a private copy
            x = torch.from_numpy(arr)
        x = x.to(device=self.dev, dtype=torch.float64, copy=not owned)  # never alias the caller's array
        torch.maximum(self.hi, x.amax(0), out=self.hi)
        torch.minimum(self.lo, x.amin(0), out=self.lo)
        x -= self.shift
        self.s1 += x.sum(0)
        self.sq += torch.linalg.vector_norm(x, dim=0).square_()
        self.cross.addmm_(x[:, self.reg_t].T, x)

    def _add_sparse(self, block: sp.csr_matrix) -> None:
        """Sparse product X_b[:, R]ᵀ X_b by regulator chunks in threads, shift as rank-one terms."""
        torch = self.torch
        b, d = block.shape
        block = sp.csr_matrix((block.data.astype(np.float64), block.indices, block.indptr), shape=(b, d))
        if not block.has_canonical_format:
            block.sum_duplicates()
        s = self.shift.numpy()
        ones = np.ones(b)

        def colsums(values: np.ndarray) -> np.ndarray:  # per-gene sums of stored values
            return sp.csr_matrix((values, block.indices, block.indptr), shape=(b, d)).T @ ones

        colsum = colsums(block.data)
        # extremes over stored values and implicit zeros alike
        torch.maximum(self.hi, torch.from_numpy(block.max(axis=0).toarray().ravel()), out=self.hi)
        torch.minimum(self.lo, torch.from_numpy(block.min(axis=0).toarray().ravel()), out=self.lo)
        zeros = b - colsums(np.ones_like(block.data))  # implicit zeros per gene
        dev = block.data - s[block.indices]  # stored values minus the shift: no cancellation
        self.s1 += torch.from_numpy(colsums(dev) - zeros * s)
        self.sq += torch.from_numpy(colsums(dev * dev) + zeros * s * s)
        del dev
        s_t, c_t = self.shift, torch.from_numpy(colsum)
        c_shift = torch.from_numpy(colsum - b * s)

        def chunk(r0: int) -> None:
            r1 = min(r0 + self.plan.chunk, len(self.reg))
            rows = self.reg[r0:r1]
            prod = (block[:, rows].T.tocsr() @ block).toarray()
            rows = torch.from_numpy(rows)
            out = self.cross[r0:r1]
            out += torch.from_numpy(prod)
            # Σ (x_R - s_R)(x - s)ᵀ = Σ x_R xᵀ - s_R (Σx - b s)ᵀ - (Σx_R) sᵀ
            out.addr_(s_t[rows], c_shift, alpha=-1).addr_(c_t[rows], s_t, alpha=-1)

        starts = range(0, len(self.reg), self.plan.chunk)
        if self.pool is None:
            for r0 in starts:
                chunk(r0)
        else:
            list(self.pool.map(chunk, starts))  # disjoint rows of self.cross: no race

    def finish(self, *, scale: bool) -> tuple[np.ndarray, ...]:
        """Return the statistics as numpy arrays on the host.

        mean, std, cov (in place in the accumulator), the zero-variance mask and the largest
        one-cell share of each gene's variance.
        """
        torch = self.torch
        if self.pool is not None:
            self.pool.shutdown()
        n = self.n
        m = self.s1 / n  # mean of x - s: small, so the products below do not cancel
        mean = self.shift + m
        var = (self.sq / n - m * m).clamp_(min=0)
        std = var.sqrt()
        cov = self.cross.div_(n).addr_(m[self.reg_t], m, alpha=-1)
        # the regulators' own variances from the per-gene sums (exact for constant genes
        # on the sparse path, where the cross products carry the shift as corrections)
        cov[torch.arange(len(self.reg), device=self.dev), self.reg_t] = var[self.reg_t]
        zero = std <= ZERO_VARIANCE_RTOL * mean.abs()
        spread = torch.maximum((self.hi - mean).square(), (self.lo - mean).square())
        share = torch.where(zero, torch.zeros_like(var), spread / (n * var).clamp_min(1e-300))
        std[zero] = 0
        cov[:, zero] = 0
        cov[zero[self.reg_t]] = 0
        if scale:
            denom = torch.where(zero, torch.ones_like(std), std)
            cov.div_(denom[self.reg_t, None]).div_(denom[None, :])
        return (
            mean.cpu().numpy(),
            std.cpu().numpy(),
            cov.cpu().numpy(),
            zero.cpu().numpy(),
            share.clamp_(max=1.0).cpu().numpy(),
        )


def _native_float(a: np.ndarray) -> np.ndarray:
    """Return ``a`` itself if torch can wrap it (native float32/64), else a float64 copy."""
    if a.dtype in (np.float32, np.float64) and a.dtype.isnative:
        return a
    return a.astype(np.float64)


class _Progress:
    """tqdm bar on a terminal; otherwise an INFO line every ~10% (Snakemake logs)."""

    def __init__(self, total: int, *, enabled: bool):
        self.total, self.enabled, self.done, self.next_log = total, enabled, 0, total / 10
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="cell", unit_scale=True, desc="stats", leave=False)

    def __enter__(self) -> _Progress:
        return self

    def update(self, rows: int) -> None:
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
        elif self.enabled and self.done >= self.next_log and self.done < self.total:
            log.info(
                "stats: %d/%d cells (%.0f%%), %.1f s",
                self.done,
                self.total,
                100 * self.done / self.total,
                time.perf_counter() - self.t0,
            )
            self.next_log += self.total / 10

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.enabled and exc[0] is None:
            log.info("stats: %d cells in %.1f s", self.done, time.perf_counter() - self.t0)
