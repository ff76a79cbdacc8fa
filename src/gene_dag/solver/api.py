"""``gene_dag.fit``: expression data (array or AnnData) + prior -> weighted DAG."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gene_dag.prior import EdgeMask, build_mask, read_edge_prior, read_regulators
from gene_dag.solver.driver import solve
from gene_dag.solver.settings import SolverSettings, resolve_device, settings_from

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """The learned DAG and its provenance (what ``uns["gene_dag"]`` stores)."""

    adjacency: sp.csr_matrix  # d × d, row = regulator, column = target, float32
    genes: np.ndarray
    mask: EdgeMask
    info: dict


def _genes_of(data: Any, genes: list[str] | None) -> np.ndarray:
    if genes is not None:
        return np.asarray(genes, dtype=str)
    var_names = getattr(data, "var_names", None)
    if var_names is not None:
        return np.asarray(var_names, dtype=str)
    d = data.shape[1]
    return np.asarray([f"G{i}" for i in range(d)], dtype=str)


def fit(
    data: Any,
    *,
    regulators: list[str] | str | Path | None = None,
    prior: pd.DataFrame | str | Path | None = None,
    genes: list[str] | None = None,
    layer: str | None = None,
    checkpoint: str | Path | None = None,
    return_result: bool = False,
    **options: Any,
) -> sp.csr_matrix | FitResult:
    """Learn a DAG over all genes of ``data`` (cells × genes array, sparse matrix or AnnData).

    ``regulators``: names (or a file, one per line) that edges may leave; ``prior``:
    an edge table (or TSV path) with source, target, type[, weight]. Other keyword
    options are :class:`SolverSettings` fields (lambda1, w_threshold, acyclicity,
    device, memory_gb, seed, max_time, ...). Returns the d × d weighted adjacency
    (CSR, row = cause), or a :class:`FitResult` when ``return_result``.
    """
    from gene_dag.stats import compute_stats

    settings = settings_from(**options)
    gene_names = _genes_of(data, genes)
    sources = " + ".join(str(p) for p in (regulators, prior) if isinstance(p, (str, Path))) or "prior"
    if isinstance(regulators, (str, Path)):
        regulators = read_regulators(regulators)
    if isinstance(prior, (str, Path)):
        prior = read_edge_prior(prior)
    mask = build_mask(gene_names, regulators, prior, source=sources)
    stats = compute_stats(
        data,
        regulators=mask.regulators,
        layer=layer,
        memory_gb=settings.memory_gb,
        device=str(resolve_device(settings.device)),
        progress=False,
    )
    variances = np.where(stats.zero_variance, 0.0, stats.std.astype(np.float64) ** 2)
    result = solve(np.asarray(stats.cov, dtype=np.float64), variances, mask, settings, checkpoint)
    adjacency = result.W.astype(np.float32)
    outliers = gene_names[stats.outlier_dominated]
    info = {
        **result.info,
        "n_cells": int(stats.n),
        "n_zero_variance_genes": int(stats.zero_variance.sum()),
        "n_outlier_dominated_genes": int(outliers.size),
        "outlier_dominated_genes": outliers[:100].tolist(),
    }
    info.update(_degenerate_flags(stats, mask, adjacency, settings))
    if not return_result:
        return adjacency
    return FitResult(adjacency, gene_names, mask, provenance(settings, info))


def _degenerate_flags(stats, mask: EdgeMask, adjacency: sp.csr_matrix, settings: SolverSettings) -> dict:
    """WARNINGs and ``uns`` flags for results that are empty or rest on too little data."""
    constant = mask.genes[mask.regulators[stats.zero_variance[mask.regulators]]]
    flags = {
        "empty_network": bool(adjacency.nnz == 0),
        "fewer_cells_than_genes": bool(stats.n < mask.n_genes),
        "n_constant_regulators": int(constant.size),
        "constant_regulators": constant[:100].tolist(),
    }
    if flags["empty_network"]:
        log.warning(
            "the network is empty: no edge reached |w| >= w_threshold = %g with lambda1 = %g; both are "
            "in the units of the data, so lower them for data of small variance",
            settings.w_threshold,
            settings.lambda1,
        )
    if flags["fewer_cells_than_genes"]:
        log.warning(
            "%d cells for %d genes: fewer cells than genes, so the covariance is singular and the "
            "network rests on the L1 penalty alone",
            stats.n,
            mask.n_genes,
        )
    if constant.size:
        log.warning(
            "%d regulator(s) are constant in these cells and can have no targets (first few: %s)",
            constant.size,
            ", ".join(map(str, constant[:5])),
        )
    return flags


def provenance(settings: SolverSettings, info: dict) -> dict:
    """Parameters, versions and run facts, flattened to h5ad-storable values."""
    versions = {}
    for pkg in ("gene-dag", "torch", "numpy", "scipy", "anndata", "scanpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    versions["python"] = platform.python_version()
    params = {k: ("none" if v is None else v) for k, v in asdict(settings).items()}
    rounds = info.get("rounds", [])
    run = {k: v for k, v in info.items() if k not in ("rounds", "path_stages")}
    run["final_h"] = float(max((r["max_h"] for r in rounds), default=0.0)) if rounds else 0.0
    run["rounds_json"] = json.dumps(rounds)
    # one entry per central-path stage of every constrained solve: round, bucket, stage, mu, max_h, evals
    run["stages_json"] = json.dumps(info.get("path_stages", []))
    return {"parameters": params, "versions": versions, "run": run}
