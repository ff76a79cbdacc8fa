"""Causal effects under a learned linear SEM: total effects, path counts and interventions.

The learned model is ``X = X W + Z`` (row of ``W`` = cause, column = target). Setting
gene ``Y`` one unit higher, do(Y = y + 1), moves gene ``X`` by the total effect
``T[Y, X]``, where ``T = (I - W)^{-1} = I + W + W^2 + ...`` (the sum over every directed
path of the product of its weights). Because ``W`` is a DAG, row ``i`` of ``T`` solves
``t = e_i + t W``, so it is filled in topological order: ``t_j = [i == j] + sum_k t_k W[k, j]``
over the parents ``k`` of ``j``. Only the rows asked for are computed, one topological
generation at a time with a sparse product, so the cost is O(nnz(W) x rows) and the
memory O(d x rows): a dense d x d inverse is never formed.

An intervention do(X_S = v) cuts the edges into the genes in ``S`` and moves each
other gene by the propagated shift: ``delta_j = sum_k delta_k W[k, j]`` with
``delta_S = v - x_S``. That is ``delta = (v - x_S) T_cut[S, :]``, where ``T_cut`` is
``T`` of the graph without the edges into ``S``; it is linear in the cells, so the
shift of a group mean is the shift computed from the group's mean.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from gene_dag.errors import InputError

log = logging.getLogger(__name__)

#: Intervened genes propagated together (rows of T held in memory at once).
CHUNK_ROWS = 256


def generations(W: sp.spmatrix) -> list[np.ndarray]:
    """Genes grouped by topological generation of the DAG ``W`` (parents always in earlier groups).

    Raises InputError when ``W`` has a directed cycle (total effects are then undefined).
    """
    import networkx as nx

    W = sp.csr_matrix(W)
    G = nx.DiGraph()
    G.add_nodes_from(range(W.shape[0]))
    coo = W.tocoo()
    G.add_edges_from(zip(coo.row.tolist(), coo.col.tolist(), strict=True))
    try:
        return [np.sort(np.fromiter(g, dtype=np.int64)) for g in nx.topological_generations(G)]
    except nx.NetworkXUnfeasible:
        raise InputError("the network has a directed cycle, so total effects are undefined") from None


def _propagate(W_csc: sp.csc_matrix, start: np.ndarray, gens: list[np.ndarray], fixed: np.ndarray) -> np.ndarray:
    """Solve ``T = start + T W`` column generation by generation; columns in ``fixed`` keep ``start``.

    ``start`` is a dense (rows x d) array, modified and returned.
    """
    T = start
    for gen in gens[1:]:  # the first generation has no parents: T = start there
        cols = gen[~fixed[gen]]
        if cols.size == 0:
            continue
        block = W_csc[:, cols]
        if block.nnz == 0:
            continue
        parents = np.unique(block.indices)
        T[:, cols] += np.asarray(block[parents, :].T @ T[:, parents].T).T
    return T


def total_effects(W: sp.spmatrix, sources: Sequence[int] | np.ndarray, *, cut: bool = False) -> np.ndarray:
    """Rows ``sources`` of ``(I - W)^{-1}``: the total effect of do(source + 1) on every gene.

    Parameters
    ----------
    W
        d x d weighted DAG (row = cause, column = target).
    sources
        Indices of the intervened genes.
    cut
        Cut the edges into every gene in ``sources`` first (they are all held fixed, as in
        a joint intervention); the row of a source then has 1 at itself and 0 at the other
        sources.

    Returns
    -------
    A dense ``len(sources) x d`` float64 array.
    """
    W = sp.csr_matrix(W, dtype=np.float64)
    d = W.shape[0]
    sources = np.asarray(sources, dtype=np.int64)
    gens = generations(W)
    fixed = np.zeros(d, dtype=bool)
    if cut:
        fixed[sources] = True
    W_csc = W.tocsc()
    out = np.empty((sources.size, d))
    for lo in range(0, sources.size, CHUNK_ROWS):
        rows = sources[lo : lo + CHUNK_ROWS]
        start = np.zeros((rows.size, d))
        start[np.arange(rows.size), rows] = 1.0
        out[lo : lo + rows.size] = _propagate(W_csc, start, gens, fixed)
    return out


def path_counts(W: sp.spmatrix, sources: Sequence[int] | np.ndarray) -> np.ndarray:
    """Count the directed paths from each source to every gene (1 for the gene itself)."""
    A = sp.csr_matrix(W, dtype=np.float64, copy=True)
    A.data[:] = 1.0  # the copy keeps the caller's weights
    return total_effects(A, sources)


def total_abs_effects(W: sp.spmatrix, sources: Sequence[int] | np.ndarray) -> np.ndarray:
    """Sum over the other genes of ``|T[source, gene]|``, for each source (in chunks of rows)."""
    sources = np.asarray(sources, dtype=np.int64)
    out = np.zeros(sources.size)
    for lo in range(0, sources.size, CHUNK_ROWS):
        rows = sources[lo : lo + CHUNK_ROWS]
        T = total_effects(W, rows)
        T[np.arange(rows.size), rows] = 0.0
        out[lo : lo + rows.size] = np.abs(T).sum(axis=1)
    return out


def intervention_shift(W: sp.spmatrix, sources: Sequence[int] | np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Shift of every gene when the genes ``sources`` move by ``delta`` (their incoming edges cut).

    Parameters
    ----------
    W
        d x d weighted DAG.
    sources
        Indices of the intervened genes (k of them).
    delta
        ``n x k``: the change of each intervened gene, one row per cell or group.

    Returns
    -------
    ``n x d`` dense array of expression shifts (the intervened genes shift by ``delta``).
    """
    sources = np.asarray(sources, dtype=np.int64)
    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    if delta.shape[1] != sources.size:
        raise ValueError(f"delta has {delta.shape[1]} columns for {sources.size} intervened genes")
    T_cut = total_effects(W, sources, cut=True)
    return delta @ T_cut
