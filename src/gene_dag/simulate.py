"""Synthetic expression data from linear structural equation models on random DAGs.

The ground truth for benchmarks and tests: a random DAG (``er``, ``sf`` or the
regulator-structured ``tf``), edge weights, and cells drawn from X = X W + Z. Everything
is built from edge lists and sparse matrices, never a dense d x d matrix, so 10,000+
genes take seconds. The same seed always gives the same graph, weights and data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from gene_dag.errors import ConfigError, InputError

if TYPE_CHECKING:
    import anndata

GRAPH_TYPES = ("er", "sf", "tf")
NOISE_TYPES = ("gaussian", "exponential", "gumbel")
SeedLike = int | np.random.Generator | np.random.SeedSequence | None

# Cells are simulated in fixed-size chunks to bound memory (d x chunk float64);
# fixed, so the random stream and therefore the data never depend on machine size.
_CELL_CHUNK = 1024


def simulate_graph(
    d: int,
    graph_type: str = "er",
    *,
    edges_per_node: float = 2.0,
    n_regulators: int | None = None,
    regulator_parents: float = 1.0,
    target_parents: float = 2.0,
    seed: SeedLike = 0,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Draw a random DAG on ``d`` nodes.

    Returns a binary adjacency B (int8 CSR, row = cause, column = effect) and a boolean
    ``is_regulator`` vector.

    - ``er``: Erdős–Rényi DAG with ``edges_per_node * d`` edges expected in all.
    - ``sf``: scale-free (Barabási–Albert): each new node receives edges from
      ``m = round(edges_per_node)`` distinct earlier nodes chosen with probability
      proportional to out-degree + 1, so hubs are regulators with many targets
      (NOTEARS/DAGMA point the edges the other way; structure and counts are the same).
    - ``tf``: ``n_regulators`` regulators (default ``d // 10``) form an ER DAG with
      ``regulator_parents`` parents per regulator expected; every other gene gets
      1 + Poisson(``target_parents`` - 1) distinct regulator parents (at least one,
      ``target_parents`` expected) and no children.

    Nodes are randomly permuted, so index order says nothing about causal order. For
    ``er``/``sf``, ``is_regulator`` marks nodes with out-degree > 0; for ``tf`` it marks
    the designated regulators.
    """
    d = _positive_int(d, "genes")
    if graph_type not in GRAPH_TYPES:
        raise ConfigError(f"graph_type: {graph_type!r} is not one of {', '.join(GRAPH_TYPES)}")
    if not edges_per_node >= 0:
        raise ConfigError(f"edges_per_node: must be >= 0, got {edges_per_node}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(d)  # hidden causal order: position -> node id

    if graph_type == "er":
        src, dst = _er_pairs(rng, d, edges_per_node * d)
        src, dst = perm[src], perm[dst]
    elif graph_type == "sf":
        src, dst = _barabasi_albert_pairs(rng, d, int(round(edges_per_node)))
        src, dst = perm[src], perm[dst]
    else:
        k = d // 10 if n_regulators is None else n_regulators
        if not 1 <= k <= d:
            raise ConfigError(f"n_regulators: must be between 1 and the number of genes ({d}), got {k}")
        if not regulator_parents >= 0:
            raise ConfigError(f"regulator_parents: must be >= 0, got {regulator_parents}")
        if not target_parents >= 1:
            raise ConfigError(f"target_parents: must be >= 1 (every target has a parent), got {target_parents}")
        regs, targets = perm[:k], perm[k:]
        r_src, r_dst = _er_pairs(rng, k, regulator_parents * k)
        counts = np.minimum(1 + rng.poisson(target_parents - 1, size=targets.size), k)
        t_par = _distinct_per_group(rng, counts, k)
        src = np.concatenate([regs[r_src], regs[t_par]])
        dst = np.concatenate([regs[r_dst], np.repeat(targets, counts)])

    B = sp.csr_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(d, d))
    B.sum_duplicates()
    if graph_type == "tf":
        is_regulator = np.zeros(d, dtype=bool)
        is_regulator[perm[:k]] = True
    else:
        is_regulator = np.diff(B.indptr) > 0
    return B, is_regulator


def simulate_weights(
    B: sp.spmatrix | np.ndarray,
    w_range: tuple[float, float] = (0.5, 2.0),
    seed: SeedLike = 0,
) -> sp.csr_matrix:
    """Weighted adjacency with B's edges: magnitudes uniform in ``w_range``, random signs.

    Magnitudes are kept away from zero (``w_range[0] > 0``) so every true edge is
    detectable in principle.
    """
    lo, hi = (float(v) for v in w_range)
    if not 0 <= lo <= hi:
        raise ConfigError(f"w_range: need 0 <= low <= high, got ({lo}, {hi})")
    rng = np.random.default_rng(seed)
    W = sp.csr_matrix(B, dtype=np.float64)
    W.eliminate_zeros()
    W.sum_duplicates()
    signs = np.where(rng.random(W.nnz) < 0.5, -1.0, 1.0)
    W.data = rng.uniform(lo, hi, size=W.nnz) * signs
    return W


def simulate_sem(
    W: sp.spmatrix | np.ndarray,
    n: int,
    noise_scale: float | np.ndarray = 1.0,
    noise_type: str = "gaussian",
    seed: SeedLike = 0,
) -> np.ndarray:
    """``n`` cells (rows) from the linear SEM X = X W + Z, i.e. X = Z (I - W)^-1, as float32.

    ``W[i, j]`` is the effect of gene i on gene j and must be acyclic. Z has independent
    columns scaled by ``noise_scale`` (scalar or one value per gene): standard normal
    (``gaussian``), ``exponential`` (mean = scale, as NOTEARS) or ``gumbel`` (scale).
    Genes are filled level by level in topological order with sparse products, so cost
    is O(n * (d + nnz(W))) and no dense d x d matrix is formed.
    """
    n = _positive_int(n, "cells")
    if noise_type not in NOISE_TYPES:
        raise ConfigError(f"noise_type: {noise_type!r} is not one of {', '.join(NOISE_TYPES)}")
    W = sp.csr_matrix(W, dtype=np.float64)
    d = W.shape[0]
    if W.shape != (d, d):
        raise InputError(f"W must be square, got shape {W.shape}")
    scale = np.asarray(noise_scale, dtype=np.float64)
    if scale.ndim not in (0, 1) or (scale.ndim == 1 and scale.shape[0] != d):
        raise ConfigError(f"noise_scale: must be a scalar or have one value per gene ({d}), got shape {scale.shape}")
    if np.any(~(scale >= 0)):
        raise ConfigError("noise_scale: must be >= 0")

    levels = _topological_levels(W)
    WT = W.T.tocsr()  # row = effect, column = cause
    # The first level has no parents: its genes are pure noise.
    blocks = [(lvl, WT[lvl]) for lvl in levels[1:]]

    rng = np.random.default_rng(seed)
    X = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, _CELL_CHUNK):
        stop = min(start + _CELL_CHUNK, n)
        Z = _noise(rng, noise_type, (stop - start, d)) * scale
        XT = np.ascontiguousarray(Z.T)  # genes x cells: level rows are contiguous
        for lvl, block in blocks:
            XT[lvl] += block @ XT
        X[start:stop] = XT.T
    return X


def simulate_adata(
    d: int = 100,
    n: int = 1000,
    *,
    graph_type: str = "er",
    edges_per_node: float = 2.0,
    n_regulators: int | None = None,
    regulator_parents: float = 1.0,
    target_parents: float = 2.0,
    w_range: tuple[float, float] = (0.5, 2.0),
    noise_scale: float | np.ndarray = 1.0,
    noise_type: str = "gaussian",
    seed: int = 0,
) -> anndata.AnnData:
    """Simulate a dataset as an AnnData that the pipeline and ``gene-dag evaluate`` read.

    ``X``: cells x genes float32; ``var_names`` ``G0000``...; ``varp["true_dag"]``: the
    weighted true adjacency (CSR, row = cause, column = effect); ``var["is_regulator"]``;
    ``uns["simulation"]``: every parameter (h5ad-serialisable), enough to regenerate it.
    Graph, weights and cells use independent streams spawned from ``seed``.
    """
    import anndata
    import pandas as pd

    seed = int(seed)
    g_rng, w_rng, x_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    B, is_regulator = simulate_graph(
        d,
        graph_type,
        edges_per_node=edges_per_node,
        n_regulators=n_regulators,
        regulator_parents=regulator_parents,
        target_parents=target_parents,
        seed=g_rng,
    )
    W = simulate_weights(B, w_range, seed=w_rng)
    X = simulate_sem(W, n, noise_scale=noise_scale, noise_type=noise_type, seed=x_rng)

    var = pd.DataFrame(
        {"is_regulator": is_regulator},
        index=pd.Index([f"G{i:0{max(4, len(str(d - 1)))}d}" for i in range(d)]),
    )
    obs = pd.DataFrame(index=pd.Index([f"C{i:0{max(4, len(str(n - 1)))}d}" for i in range(n)]))
    params: dict = {
        "genes": int(d),
        "cells": int(n),
        "graph_type": graph_type,
        "edges_per_node": float(edges_per_node),
        "w_range": np.asarray(w_range, dtype=np.float64),
        "noise_scale": np.asarray(noise_scale, dtype=np.float64) if np.ndim(noise_scale) else float(noise_scale),
        "noise_type": noise_type,
        "seed": seed,
        "n_edges": int(W.nnz),
    }
    if graph_type == "tf":
        params.update(
            n_regulators=int(is_regulator.sum()),
            regulator_parents=float(regulator_parents),
            target_parents=float(target_parents),
        )
    adata = anndata.AnnData(X=X, obs=obs, var=var)
    adata.varp["true_dag"] = W
    adata.uns["simulation"] = params
    return adata


# ----------------------------------------------------------------------------- helpers


def _positive_int(value: int, key: str) -> int:
    if int(value) != value or value < 1:
        raise ConfigError(f"{key}: must be a positive integer, got {value}")
    return int(value)


def _er_pairs(rng: np.random.Generator, d: int, expected_edges: float) -> tuple[np.ndarray, np.ndarray]:
    """Draw distinct pairs (i, j), i < j, each present independently.

    The probability gives ``expected_edges`` in expectation (capped at the complete DAG).
    """
    n_pairs = d * (d - 1) // 2
    if n_pairs == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    p = min(1.0, expected_edges / n_pairs)
    m = rng.binomial(n_pairs, p)
    t = np.sort(rng.choice(n_pairs, size=m, replace=False)).astype(np.int64)
    # Pair index t enumerates j = 1, 2, ... and i < j: t = j (j - 1) / 2 + i.
    j = np.floor((1 + np.sqrt(1 + 8 * t.astype(np.float64))) / 2).astype(np.int64)
    j -= j * (j - 1) // 2 > t  # correct float rounding either way
    j += (j + 1) * j // 2 <= t
    return t - j * (j - 1) // 2, j


def _barabasi_albert_pairs(rng: np.random.Generator, d: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw pairs by preferential attachment.

    Node t receives edges from min(t, m) distinct earlier nodes, drawn with probability
    proportional to their out-degree + 1.
    """
    if m < 1 or d < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pool = np.empty(d + m * d, dtype=np.int64)  # each node once, plus once per out-edge
    pool[0] = 0
    size = 1
    src, dst = [], []
    for t in range(1, d):
        if t <= m:
            parents = np.arange(t)
        else:
            parents = np.unique(pool[rng.integers(0, size, size=m)])
            while parents.size < m:
                extra = pool[rng.integers(0, size, size=m - parents.size)]
                parents = np.union1d(parents, extra)
        src.append(parents)
        dst.append(np.full(parents.size, t))
        pool[size : size + parents.size] = parents
        pool[size + parents.size] = t
        size += parents.size + 1
    return np.concatenate(src), np.concatenate(dst)


def _distinct_per_group(rng: np.random.Generator, counts: np.ndarray, k: int) -> np.ndarray:
    """Draw, for each group g, ``counts[g] <= k`` distinct values from range(k), uniformly.

    All groups at once (Floyd's algorithm, vectorised over groups); concatenated by group.
    """
    counts = np.asarray(counts, dtype=np.int64)
    width = int(counts.max(initial=0))
    chosen = np.full((counts.size, width), -1, dtype=np.int64)
    for s in range(width):
        active = np.flatnonzero(counts > s)
        j = k - counts[active] + s  # Floyd: draw from range(j + 1); on a repeat take j
        t = (rng.random(active.size) * (j + 1)).astype(np.int64)
        seen = (chosen[active, :s] == t[:, None]).any(axis=1)
        chosen[active, s] = np.where(seen, j, t)
    return chosen[np.arange(width) < counts[:, None]]


def _topological_levels(A: sp.csr_matrix) -> list[np.ndarray]:
    """Genes by topological generation (every parent in an earlier one); InputError on a cycle."""
    import networkx as nx

    from gene_dag.graph import topological_levels

    try:
        return topological_levels(A)
    except nx.NetworkXUnfeasible:
        raise InputError("the weight matrix is not acyclic: some genes lie on a cycle") from None


def _noise(rng: np.random.Generator, noise_type: str, shape: tuple[int, int]) -> np.ndarray:
    if noise_type == "gaussian":
        return rng.standard_normal(shape)
    if noise_type == "exponential":
        return rng.exponential(1.0, shape)
    return rng.gumbel(0.0, 1.0, shape)
