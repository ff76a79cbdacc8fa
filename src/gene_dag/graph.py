"""Graph algorithms on sparse adjacency matrices (row = source, column = target).

Thin wrappers over :mod:`scipy.sparse.csgraph` and :mod:`networkx`, so every module asks
the same questions the same way: strongly connected components, acyclicity, topological
orders and reachability. Nonzero entries are edges; their values are ignored.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, shortest_path


def _pattern(adjacency: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    A = sp.csr_matrix(adjacency, copy=True)
    A.eliminate_zeros()
    return A


def strong_components(adjacency: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Label of the strongly connected component of every node."""
    _, labels = connected_components(_pattern(adjacency), directed=True, connection="strong")
    return labels


def is_dag(adjacency: sp.spmatrix | np.ndarray) -> bool:
    """Tell whether the directed graph has no cycle (a self-loop is a cycle)."""
    A = _pattern(adjacency)
    if A.diagonal().any():
        return False
    if A.nnz == 0:
        return True
    return int(np.bincount(strong_components(A)).max()) <= 1


def _digraph(adjacency: sp.spmatrix | np.ndarray) -> nx.DiGraph:
    A = _pattern(adjacency)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(A.shape[0]))
    coo = A.tocoo()
    graph.add_edges_from(zip(coo.row.tolist(), coo.col.tolist(), strict=True))
    return graph


def topological_order(dag: sp.spmatrix | np.ndarray, key: np.ndarray) -> np.ndarray:
    """Return a topological order of a DAG; among nodes ready at the same time, smallest ``key`` first.

    Raises ``networkx.NetworkXUnfeasible`` when the graph has a cycle.
    """
    keys = np.asarray(key, dtype=float)
    order = nx.lexicographical_topological_sort(_digraph(dag), key=lambda v: (keys[v], v))
    return np.fromiter(order, dtype=np.int64, count=dag.shape[0])


def topological_levels(dag: sp.spmatrix | np.ndarray) -> list[np.ndarray]:
    """Nodes grouped by topological generation: every parent of a node lies in an earlier group.

    Raises ``networkx.NetworkXUnfeasible`` when the graph has a cycle.
    """
    return [np.sort(np.fromiter(level, dtype=np.int64)) for level in nx.topological_generations(_digraph(dag))]


def descendants(dag: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Dense boolean reachability of a DAG: ``reach[u, v]`` when a path u -> v exists (u != v)."""
    A = _pattern(dag)
    n = A.shape[0]
    if A.nnz == 0:
        return np.zeros((n, n), dtype=bool)
    reach = np.isfinite(shortest_path(A, method="D", directed=True, unweighted=True))
    np.fill_diagonal(reach, False)
    return reach
