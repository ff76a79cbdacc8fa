"""Learned networks out to where users look for them: AnnData, an edge table, GraphML, a summary.

The network lives in ``adata.varp[key]`` (row = regulator, column = target, value =
edge weight, CSR float32) with the solver's record in ``adata.uns[key]``.
:func:`export_network` checks that it is a DAG over the AnnData's genes and writes

- ``network.h5ad``: the AnnData (loads with ``sc.read_h5ad`` and nothing else),
- ``edges.tsv``: the network's edges and, when the solver scored them, the best-ranked
  candidates below the threshold: ``source, target, weight`` (data units, the solved
  weight before the threshold), ``weight_std`` (standardised), ``score`` (the ranking
  score), ``in_network`` and, with stability resamples, ``selection_frequency`` and
  ``orientation_frequency``; network edges first, each part by score (or |weight|),
- ``network.graphml``: every gene a node (degrees, ``has_targets``), every edge weighted,
- ``summary.json``: counts, degree statistics, top regulators, convergence, prior report,
- optionally a decoupler network (``source, target, weight``; signed) and a pySCENIC
  adjacency table (``TF, target, importance``, every ranked candidate, importance = the
  score, or ``|weight|`` for a network without scores: like GRNBoost2's importances it
  has no sign and ranks, so pySCENIC's top-k and per-target rules apply).

Every file is written atomically (a failed export leaves no partial file).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gene_dag.errors import InputError
from gene_dag.graph import is_dag

log = logging.getLogger(__name__)

EDGE_COLUMNS = ("source", "target", "weight")
#: Candidates below the threshold that ``edges.tsv`` lists: this many times the network's
#: edges, and at least MIN_CANDIDATES.
CANDIDATES_PER_EDGE = 10
MIN_CANDIDATES = 1000
CONVERGENCE_KEYS = (
    "converged", "timed_out", "score", "h", "iterations", "lasso_iterations", "core_rounds",
    "wall_time_s", "total_wall_time_s", "device",
)  # fmt: skip


def network_matrix(adata, key: str = "gene_dag", source: str = "data") -> sp.csr_matrix:
    """``adata.varp[key]`` as a square CSR float32 matrix without explicit zeros."""
    if key not in adata.varp:
        have = ", ".join(adata.varp.keys()) or "none"
        raise InputError(f"no network in varp[{key!r}] (varp keys: {have})", source)
    W = sp.csr_matrix(adata.varp[key], dtype=np.float32)
    W.eliminate_zeros()
    if W.shape != (adata.n_vars, adata.n_vars):
        raise InputError(f"varp[{key!r}] is {W.shape}, not square over the {adata.n_vars} genes", source)
    if W.nnz and not np.isfinite(W.data).all():
        raise InputError(f"varp[{key!r}] holds NaN or infinite weights", source)
    return W


def edges_table(W: sp.spmatrix, genes) -> pd.DataFrame:
    """Edges as ``source, target, weight``, sorted by |weight| (then source, target)."""
    coo = sp.coo_matrix(W)
    genes = np.asarray(genes, dtype=str)
    table = pd.DataFrame({"source": genes[coo.row], "target": genes[coo.col], "weight": coo.data.astype(np.float32)})
    table["_abs"] = -np.abs(table["weight"])
    table = table.sort_values(["_abs", "source", "target"], kind="mergesort").drop(columns="_abs")
    return table.reset_index(drop=True)


def decoupler_table(W: sp.spmatrix, genes) -> pd.DataFrame:
    """Return the network in decoupler's format: ``source, target, weight`` (signed), strongest first."""
    return edges_table(W, genes)


def pyscenic_table(W: sp.spmatrix, genes, scores: sp.spmatrix | None = None) -> pd.DataFrame:
    """Return pySCENIC adjacencies ``TF, target, importance``, strongest first.

    importance = ``scores`` over every scored candidate when given, else |weight| of the
    network's edges.
    """
    table = edges_table(W if scores is None else abs(sp.csr_matrix(scores)), genes)
    return pd.DataFrame({"TF": table["source"], "target": table["target"], "importance": table["weight"].abs()})


def ranked_edges(adata, W: sp.csr_matrix, key: str = "gene_dag", max_candidates: int | None = None) -> pd.DataFrame:
    """Return the network's edges and its best-ranked candidates as one table (module docstring).

    Without a ``varp[key + "_score"]`` (a network not made by gene-dag's solver), the
    table is the network alone, ``source, target, weight``.
    """
    varp = adata.varp
    if key + "_score" not in varp:
        return edges_table(W, adata.var_names)
    score = sp.csr_matrix(varp[key + "_score"], dtype=np.float64)
    network = sp.csr_matrix(W, dtype=bool).astype(np.float64)
    limit = max_candidates if max_candidates is not None else max(CANDIDATES_PER_EDGE * W.nnz, MIN_CANDIDATES)
    # every network edge, then the best candidates: select on score + 2 x in_network
    rank = (score + 2.0 * network).tocoo()  # network edges first, even one the ranking did not score
    keep = np.argsort(-rank.data, kind="stable")[: W.nnz + limit]
    rows, cols = rank.row[keep], rank.col[keep]
    genes = np.asarray(adata.var_names, dtype=str)
    cont = sp.csr_matrix(varp.get(key + "_continuous", W), dtype=np.float64)
    weight = np.asarray(cont[rows, cols]).ravel()
    in_net = np.asarray(network[rows, cols]).ravel() > 0
    weight = np.where(in_net, np.asarray(W[rows, cols]).ravel(), weight)
    table = pd.DataFrame({"source": genes[rows], "target": genes[cols], "weight": weight.astype(np.float32)})
    sd = adata.var.get(key + "_sd")
    if sd is not None:
        sd = np.asarray(sd, dtype=np.float64)
        safe = np.where(sd > 0, sd, 1.0)
        table["weight_std"] = (weight * safe[rows] / safe[cols]).astype(np.float32)
    table["score"] = np.asarray(score[rows, cols]).ravel().astype(np.float32)
    table["in_network"] = in_net
    for name, column in ((key + "_selection", "selection_frequency"), (key + "_orientation", "orientation_frequency")):
        if name in varp:
            table[column] = np.asarray(sp.csr_matrix(varp[name])[rows, cols]).ravel().astype(np.float32)
    return table.iloc[np.lexsort((-table["score"].to_numpy(), ~in_net))].reset_index(drop=True)


def read_edges(path, *, network_only: bool = False) -> pd.DataFrame:
    """Read an ``edges.tsv`` written by :func:`export_network` (``network_only``: drop the candidates)."""
    table = pd.read_csv(path, sep="\t", dtype={"source": str, "target": str, "weight": float}, keep_default_na=False)
    if network_only and "in_network" in table:
        table = table[table["in_network"].astype(str).str.lower() == "true"].reset_index(drop=True)
    return table


def graph(W: sp.spmatrix, genes):
    """Build a ``networkx.DiGraph``: every gene a node, every edge with weight, |weight| and sign."""
    import networkx as nx

    W = sp.csr_matrix(W)
    genes = [str(g) for g in genes]
    out_deg = np.diff(W.indptr)
    in_deg = np.bincount(W.indices, minlength=W.shape[1])
    G = nx.DiGraph()
    for i, g in enumerate(genes):
        G.add_node(g, out_degree=int(out_deg[i]), in_degree=int(in_deg[i]), has_targets=bool(out_deg[i] > 0))
    coo = W.tocoo()
    for r, c, w in zip(coo.row, coo.col, coo.data, strict=True):
        G.add_edge(genes[r], genes[c], weight=float(w), abs_weight=float(abs(w)), sign="+" if w > 0 else "-")
    return G


def _degree_stats(deg: np.ndarray) -> dict:
    if deg.size == 0:
        return {"mean": 0.0, "median": 0.0, "max": 0}
    return {"mean": float(deg.mean()), "median": float(np.median(deg)), "max": int(deg.max())}


def _jsonable(value):
    """Convert ``uns`` content to plain JSON types (numpy scalars and arrays included); None when impossible."""
    if isinstance(value, dict):
        return {str(k): v for k, v in ((k, _jsonable(v)) for k, v in value.items()) if v is not None}
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 1000 else None
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return None


def summarize(adata, W: sp.csr_matrix, key: str = "gene_dag", prior_report: dict | None = None, top: int = 10) -> dict:
    """Summarise a network: counts, degree statistics, top regulators, the solver's record and the prior report."""
    genes = np.asarray(adata.var_names, dtype=str)
    out_deg = np.diff(W.indptr)
    in_deg = np.bincount(W.indices, minlength=W.shape[1])
    abs_out = np.asarray(abs(W).sum(axis=1)).ravel()
    order = np.lexsort((genes, -abs_out, -out_deg))
    top_regs = [
        {"gene": genes[i], "out_degree": int(out_deg[i]), "sum_abs_weight": float(abs_out[i])}
        for i in order[:top]
        if out_deg[i] > 0
    ]
    d = W.shape[0]
    solver = _jsonable(dict(adata.uns.get(key, {}))) or {}
    run = solver.get("run") if isinstance(solver.get("run"), dict) else solver  # gene-dag solve nests it
    convergence = {k: run[k] for k in CONVERGENCE_KEYS if k in run}
    summary = {
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "n_edges": int(W.nnz),
        "n_positive": int((W.data > 0).sum()),
        "n_negative": int((W.data < 0).sum()),
        "density": float(W.nnz / (d * (d - 1))) if d > 1 else 0.0,
        "n_regulators_with_targets": int((out_deg > 0).sum()),
        "n_genes_with_regulators": int((in_deg > 0).sum()),
        "out_degree": _degree_stats(out_deg),
        "in_degree": _degree_stats(in_deg),
        "top_regulators": top_regs,
        "acyclic": True,
        "converged": run.get("converged"),
        "convergence": convergence,
        "solver": solver,
    }
    if prior_report is not None:
        summary["prior"] = prior_report
    return summary


def export_network(
    adata,
    *,
    key: str = "gene_dag",
    h5ad: str | Path | None = None,
    edges: str | Path | None = None,
    graphml: str | Path | None = None,
    summary: str | Path | None = None,
    decoupler: str | Path | None = None,
    pyscenic: str | Path | None = None,
    prior_report: dict | None = None,
    extra: dict | None = None,
    source: str = "data",
) -> dict:
    """Check the network in ``adata.varp[key]`` and write the requested files; returns the summary.

    ``extra`` (e.g. dataset and group names) goes into the summary and ``uns[key]``.
    Raises InputError when the network is missing, not square or not acyclic.
    """
    from gene_dag import io

    io.validate_gene_names(adata.var_names, source)  # a tab or control character breaks edges.tsv and GraphML
    W = network_matrix(adata, key, source)
    if not is_dag(W):
        raise InputError(f"the network in varp[{key!r}] has a directed cycle; refusing to export it", source)
    adata.varp[key] = W
    info = summarize(adata, W, key, prior_report)
    if extra:
        info = {**extra, **info}
    record = dict(adata.uns.get(key, {}))
    record.update({k: v for k, v in (extra or {}).items() if isinstance(v, (str, int, float, bool))})
    record["n_edges"] = int(W.nnz)
    if prior_report is not None:
        record["prior"] = {k: v for k, v in prior_report.items() if isinstance(v, (int, float, str, bool))}
    adata.uns[key] = record

    if h5ad is not None:
        io.write_h5ad(adata, h5ad)
    if edges is not None:
        io.write_table(ranked_edges(adata, W, key), edges)
    if graphml is not None:
        import networkx as nx

        with io.atomic_write(graphml) as tmp:
            nx.write_graphml(graph(W, adata.var_names), tmp)
    if summary is not None:
        io.write_json(info, summary)
    if decoupler is not None:
        io.write_table(decoupler_table(W, adata.var_names), decoupler)
    if pyscenic is not None:
        io.write_table(pyscenic_table(W, adata.var_names, adata.varp.get(key + "_score")), pyscenic)
    log.info(
        "%s: %d genes, %d edges, %d regulators with targets",
        source,
        info["n_genes"],
        info["n_edges"],
        info["n_regulators_with_targets"],
    )
    return info


def collect_summaries(records: list[dict]) -> pd.DataFrame:
    """One row per network from ``{dataset, group, summary: dict, metrics: dict | None}`` records."""
    rows = []
    for rec in records:
        s, m = rec["summary"], rec.get("metrics") or {}
        row = {
            "dataset": rec["dataset"],
            "group": rec["group"],
            "n_cells": s.get("n_cells"),
            "n_genes": s.get("n_genes"),
            "n_edges": s.get("n_edges"),
            "regulators_with_targets": s.get("n_regulators_with_targets"),
            "converged": s.get("converged"),
            "top_regulator": (s.get("top_regulators") or [{}])[0].get("gene", ""),
        }
        for name in ("shd", "tpr", "fdr", "auprc"):
            row[name] = m.get(name, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)
