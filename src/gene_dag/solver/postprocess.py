"""From continuous weights to a guaranteed DAG: threshold, then break what cycles remain."""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from gene_dag.graph import is_dag, strong_components

log = logging.getLogger(__name__)


def _find_cycle(adj: dict[int, list[int]], nodes: list[int]) -> list[tuple[int, int]]:
    """One directed cycle inside a strongly connected node set, as a list of edges."""
    start = nodes[0]
    parent = {start: None}
    stack = [(start, iter(adj[start]))]
    on_path = {start}
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            stack.pop()
            on_path.discard(node)
            continue
        if nxt in on_path:  # back edge closes a cycle
            cycle = [(node, nxt)]
            cur = node
            while cur != nxt:
                cycle.append((parent[cur], cur))
                cur = parent[cur]
            return cycle
        if nxt not in parent:
            parent[nxt] = node
            on_path.add(nxt)
            stack.append((nxt, iter(adj[nxt])))
    raise AssertionError("no cycle in a strongly connected component")


def break_cycles(W: sp.csr_matrix, protected: sp.spmatrix | None = None) -> tuple[sp.csr_matrix, int]:
    """Drop the weakest (smallest |w|) unprotected edge of each remaining cycle until acyclic.

    Returns the DAG and the number of edges dropped. ``protected`` edges (required by the
    prior) are never dropped; the prior guarantees they form no cycle by themselves.
    """
    W = sp.csr_matrix(W, copy=True)
    W.setdiag(0)
    W.eliminate_zeros()
    prot = set() if protected is None else set(zip(*sp.coo_matrix(protected).nonzero(), strict=True))
    dropped = 0
    while True:
        labels = strong_components(W)
        sizes = np.bincount(labels)
        cyclic = np.flatnonzero(sizes > 1)
        if cyclic.size == 0:
            return W, dropped
        coo = W.tocoo()
        in_core = np.isin(labels[coo.row], cyclic) & (labels[coo.row] == labels[coo.col])
        rows, cols, vals = coo.row[in_core], coo.col[in_core], coo.data[in_core]
        adj: dict[int, list[int]] = {}
        weight = {}
        for r, c, v in zip(rows.tolist(), cols.tolist(), vals.tolist(), strict=True):
            adj.setdefault(r, []).append(c)
            weight[(r, c)] = abs(v)
        for lab in cyclic:
            nodes = np.flatnonzero(labels == lab).tolist()
            for node in nodes:
                adj.setdefault(node, [])
            cycle = _find_cycle(adj, nodes)
            candidates = [e for e in cycle if e not in prot] or cycle
            r, c = min(candidates, key=lambda e: weight[e])
            W[r, c] = 0
            dropped += 1
        W.eliminate_zeros()


def threshold_to_dag(
    W: sp.csr_matrix, w_threshold: float, required: sp.spmatrix | None = None
) -> tuple[sp.csr_matrix, dict]:
    """Keep |w| >= w_threshold (and every required edge), then break remaining cycles."""
    W = sp.csr_matrix(W, copy=True)
    keep = np.abs(W.data) >= w_threshold
    if required is not None and required.nnz:
        req = sp.csr_matrix(required, dtype=bool)
        coo = W.tocoo()
        is_req = np.asarray(req[coo.row, coo.col]).ravel().astype(bool)
        keep_coo = (np.abs(coo.data) >= w_threshold) | is_req
        W = sp.csr_matrix((coo.data[keep_coo], (coo.row[keep_coo], coo.col[keep_coo])), shape=W.shape)
    else:
        W.data = np.where(keep, W.data, 0)
        W.eliminate_zeros()
    W, dropped = break_cycles(W, required)
    if dropped:
        log.info("broke %d remaining cycle(s) by dropping their weakest edge", dropped)
    assert is_dag(W), "post-processing must return a DAG"
    return W, {"n_edges": int(W.nnz), "cycle_edges_dropped": dropped}
