"""Stability of edges under resampling of cells, from one pass over the data.

The cells are split once, at random (from the seed), into M disjoint chunks, and the
statistics of every chunk are accumulated in the same single pass over the data
(:func:`gene_dag.stats.compute_strata_stats`). A subsample is a union of chunks, so its
statistics are a sum of the chunks' (exact, no second pass). Subsamples come in
complementary pairs (Shah & Samworth 2013): each pair splits a random permutation of
the chunks into two disjoint halves, which bounds the error of selection frequencies
better than independent subsamples do.

Per ordered pair of genes, over B resamples:

* **selection frequency**: the share of resamples whose network links i and j, in
  either direction (symmetric);
* **orientation frequency**: among the resamples that link them, the share in which
  the edge points i -> j (``orientation[i, j] + orientation[j, i] = 1`` where linked).

Their product is the frequency of the directed edge i -> j. The counts of any set of
resamples add up, so blocks of resamples can run as separate jobs and be summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from gene_dag import io
from gene_dag.errors import InputError


def chunk_labels(n_cells: int, n_chunks: int, seed: int) -> np.ndarray:
    """Each cell's chunk, 0 to ``n_chunks`` - 1: a random balanced split from ``seed``."""
    rng = np.random.default_rng([int(seed), 0x5AB1E])
    return (rng.permutation(n_cells) % n_chunks).astype(np.int64)


def resample_plan(n_chunks: int, n_resamples: int, fraction: float, seed: int) -> np.ndarray:
    """Return the chunks of each resample, ``n_resamples`` × round(fraction × n_chunks).

    Resamples 2p and 2p + 1 are disjoint (a complementary pair); the plan depends only
    on its arguments, so any block of resamples can be solved anywhere.
    """
    size = int(round(fraction * n_chunks))
    rng = np.random.default_rng([int(seed), 0xC4A1])
    rows = []
    for _ in range(n_resamples // 2):
        perm = rng.permutation(n_chunks)
        rows += [np.sort(perm[:size]), np.sort(perm[size : 2 * size])]
    return np.array(rows, dtype=np.int64).reshape(-1, size)


@dataclass
class EdgeCounts:
    """How often each directed edge was in the network, over ``n_resamples`` resamples."""

    directed: sp.csr_matrix  # d × d counts of i -> j
    n_resamples: int
    ids: tuple[int, ...] = ()  # the resamples counted (ids of the plan)

    @classmethod
    def empty(cls, d: int) -> EdgeCounts:
        """Start counting: no resample yet."""
        return cls(sp.csr_matrix((d, d), dtype=np.int64), 0)

    def add(self, network: sp.spmatrix, resample: int = -1) -> None:
        """Count one resample's network (its nonzero entries)."""
        self.directed = self.directed + sp.csr_matrix(network, dtype=bool).astype(np.int64)
        self.n_resamples += 1
        self.ids = (*self.ids, int(resample))

    def __add__(self, other: EdgeCounts) -> EdgeCounts:
        """Add the counts of two disjoint sets of resamples (a resample counted twice is a ValueError)."""
        twice = sorted(set(self.ids) & set(other.ids) - {-1})
        if twice:
            raise ValueError(f"resample(s) {twice[:5]} counted in both sets")
        return EdgeCounts(self.directed + other.directed, self.n_resamples + other.n_resamples, self.ids + other.ids)

    def frequencies(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Return (selection frequency, orientation frequency), d × d CSR (module docstring)."""
        if self.n_resamples == 0:
            raise ValueError("no resamples counted")
        D = sp.csr_matrix(self.directed, dtype=np.float64)
        linked = D + D.T
        selection = linked / self.n_resamples
        orientation = D.multiply(_reciprocal(linked))
        return sp.csr_matrix(selection), sp.csr_matrix(orientation)

    def save(self, path: str | Path) -> None:
        """Write to ``.npz`` atomically (loads without pickle)."""
        coo = self.directed.tocoo()
        with io.atomic_write(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                row=coo.row,
                col=coo.col,
                count=coo.data,
                shape=np.array(coo.shape),
                n=self.n_resamples,
                ids=np.array(self.ids, dtype=np.int64),
            )

    @classmethod
    def load(cls, path: str | Path) -> EdgeCounts:
        """Read counts written by :meth:`save`; InputError for anything else."""
        try:
            with np.load(path, allow_pickle=False) as z:
                shape = tuple(int(v) for v in z["shape"])
                M = sp.csr_matrix((z["count"], (z["row"], z["col"])), shape=shape)
                return cls(M, int(z["n"]), tuple(int(i) for i in z["ids"]))
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"not a gene-dag edge-count file ({io.one_line(exc)})", path) from exc


def keep_stable(networks: list[sp.spmatrix], selection: sp.spmatrix, low: float) -> tuple[list[sp.csr_matrix], int]:
    """Keep the entries of each network whose selection frequency is at least ``low``.

    ``networks`` share one support (a network in two units); returns them and how many
    edges of the first were dropped.
    """
    keep = sp.csr_matrix(selection >= low, dtype=bool)
    kept = [sp.csr_matrix(W).multiply(keep).tocsr() for W in networks]
    return kept, int(sp.csr_matrix(networks[0]).nnz - kept[0].nnz)


def _reciprocal(M: sp.csr_matrix) -> sp.csr_matrix:
    M = sp.csr_matrix(M, copy=True)
    M.data = 1.0 / M.data
    return M
