"""``gene_dag.fit``: expression data (array or AnnData) + prior -> weighted DAG."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gene_dag.errors import ConfigError, InputError
from gene_dag.prior import EdgeMask, build_mask, read_edge_prior, read_regulators
from gene_dag.solver.driver import SolveResult, solve
from gene_dag.solver.lambda_path import LambdaPath, at_lambda, select_lambda
from gene_dag.solver.ranking import edge_scores, rescale, to_gene_rows, unit_weights
from gene_dag.solver.screen import screen_mask, widen_screen
from gene_dag.solver.settings import SolverSettings, resolve_device, resolved, settings_from
from gene_dag.stability import EdgeCounts, chunk_labels, keep_stable, resample_plan
from gene_dag.stats import StrataStats, SufficientStats, compute_stats, compute_strata_stats

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """The learned DAG, its edge scores and its provenance (what ``uns["gene_dag"]`` stores).

    All matrices are d × d CSR, row = regulator, column = target.
    """

    adjacency: sp.csr_matrix  # the network in the data's units, float32
    genes: np.ndarray
    mask: EdgeMask
    info: dict
    adjacency_std: sp.csr_matrix | None = None  # the same edges, standardised effects
    weights_continuous: sp.csr_matrix | None = None  # solved weights before the threshold, data units
    scores: sp.csr_matrix | None = None  # ranking score of every candidate edge (solver.ranking)
    selection_frequency: sp.csr_matrix | None = None  # with stability_resamples
    orientation_frequency: sp.csr_matrix | None = None
    gene_sd: np.ndarray | None = None  # each gene's standard deviation (converts the units)


@dataclass
class Network:
    """One solve on one set of statistics: the λ path, the solver's result, the units."""

    path: LambdaPath
    result: SolveResult
    settings: SolverSettings  # with the λ used


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
    groups: Any = None,
    checkpoint: str | Path | None = None,
    return_result: bool = False,
    **options: Any,
) -> sp.csr_matrix | FitResult:
    """Learn a DAG over all genes of ``data`` (cells × genes array, sparse matrix or AnnData).

    Parameters
    ----------
    data
        Cells × genes: an array, a sparse matrix, an AnnData or an ``.h5ad`` path.
    regulators
        Names (or a file, one per line) that edges may leave; ``None``: any gene.
    prior
        An edge table (or TSV path) with source, target, type[, weight].
    genes
        Gene names for an array without them.
    layer
        For AnnData or a path: None (X), ``"raw"`` or a layer name.
    groups
        Cell groups (one label per cell, or an ``obs`` column of an AnnData) to centre
        on their own means before the statistics: one network pooled over the groups in
        which differences between the groups' means (cell types, batches) are not edges.
    checkpoint
        A directory: the solve checkpoints there and a rerun resumes.
    return_result
        Return a :class:`FitResult` instead of the adjacency.
    **options
        :class:`SolverSettings` fields (lambda1, w_threshold, standardize, order_search, acyclicity,
        device, memory_gb, seed, max_time, stability_resamples, ...).

    Returns
    -------
    The d × d weighted adjacency in the data's units (CSR, row = cause), or a
    :class:`FitResult` when ``return_result``.
    """
    settings = settings_from(**options)
    gene_names = _genes_of(data, genes)
    mask = _mask(gene_names, regulators, prior)
    cells = CellStrata.of(data, groups, settings)
    strata, stats = _statistics(data, cells, mask, settings, layer)
    net = learn_network(stats, mask, settings, checkpoint=checkpoint)
    counts = None
    if settings.stability_resamples:
        counts = resample_counts(
            strata, cells, mask, path=net.path, settings=net.settings, resamples=range(settings.stability_resamples)
        )
    result = _result(stats, mask, net, counts, settings=settings, gene_names=gene_names)
    result.info["run"].update(groups=cells.describe())
    return result if return_result else result.adjacency


def _mask(gene_names: np.ndarray, regulators, prior) -> EdgeMask:
    sources = " + ".join(str(p) for p in (regulators, prior) if isinstance(p, (str, Path))) or "prior"
    if isinstance(regulators, (str, Path)):
        regulators = read_regulators(regulators)
    if isinstance(prior, (str, Path)):
        prior = read_edge_prior(prior)
    return build_mask(gene_names, regulators, prior, source=sources)


@dataclass
class CellStrata:
    """How the cells are split for one pass: chunks (stability) within groups (centring)."""

    labels: np.ndarray | None  # each cell's stratum, or None for one stratum
    n_chunks: int
    group_names: list[str]
    seed: int

    @classmethod
    def of(cls, data: Any, groups: Any, settings: SolverSettings) -> CellStrata:
        """Strata of ``data``'s cells for these ``groups`` and stability settings."""
        m = settings.stability_chunks if settings.stability_resamples else 1
        codes, names = _group_codes(data, groups)
        if codes is None and m == 1:
            return cls(None, 1, [], settings.seed)
        n = _n_cells(data)
        chunks = chunk_labels(n, m, settings.seed) if m > 1 else np.zeros(n, np.int64)
        base = np.zeros(n, np.int64) if codes is None else codes
        return cls(base * m + chunks, m, names, settings.seed)

    @property
    def group_of_stratum(self) -> np.ndarray | None:
        """Return the group of each stratum (for centring), or None without groups."""
        if not self.group_names:
            return None
        return np.repeat(np.arange(len(self.group_names)), self.n_chunks)

    def members(self, chunks: np.ndarray) -> np.ndarray:
        """Return the strata of these chunks, in every group."""
        n_groups = max(len(self.group_names), 1)
        return (np.arange(n_groups)[:, None] * self.n_chunks + np.asarray(chunks)[None, :]).ravel()

    def describe(self) -> str:
        """Name the groups centred on (for ``uns``), or "none"."""
        return ", ".join(self.group_names) if self.group_names else "none"


def _group_codes(data: Any, groups: Any) -> tuple[np.ndarray | None, list[str]]:
    if groups is None:
        return None, []
    if isinstance(groups, str):
        obs = getattr(data, "obs", None)
        if obs is None or groups not in obs:
            raise ConfigError(f"groups={groups!r} is not an obs column of the data")
        groups = obs[groups]
    labels = pd.Series(np.asarray(groups, dtype=object))
    if labels.isna().any():
        raise InputError(f"{int(labels.isna().sum())} cell(s) have no group label")
    cat = pd.Categorical(labels.astype(str))
    if len(cat) != _n_cells(data):
        raise ConfigError(f"groups has {len(cat)} labels for {_n_cells(data)} cells")
    return cat.codes.astype(np.int64), [str(c) for c in cat.categories]


def _n_cells(data: Any) -> int:
    if isinstance(data, (str, Path)):
        import anndata

        backed = anndata.read_h5ad(data, backed="r")
        try:
            return int(backed.n_obs)
        finally:
            backed.file.close()
    return int(data.shape[0])


def _statistics(data: Any, cells: CellStrata, mask: EdgeMask, settings: SolverSettings, layer: str | None):
    """Return (per-stratum statistics or None, the statistics of all cells) from one pass."""
    common = dict(
        regulators=mask.regulators,
        layer=layer,
        memory_gb=settings.memory_gb,
        device=str(resolve_device(settings.device)),
        progress=False,
    )
    if cells.labels is None:
        return None, compute_stats(data, scale=settings.standardize, **common)
    strata = compute_strata_stats(data, cells.labels, **common)
    stats = strata.combine(groups=cells.group_of_stratum, scale=settings.standardize)
    return strata, stats


def _variances(stats: SufficientStats, *, standardize: bool) -> np.ndarray:
    if standardize:
        return np.where(stats.zero_variance, 0.0, 1.0)
    return np.where(stats.zero_variance, 0.0, stats.std.astype(np.float64) ** 2)


#: At most this many solves on a screened mask, each with the candidates the last one missed.
SCREEN_SOLVES = 2


def learn_network(
    stats: SufficientStats,
    mask: EdgeMask,
    settings: SolverSettings,
    *,
    checkpoint: str | Path | None = None,
    path: LambdaPath | None = None,
) -> Network:
    """Solve the DAG on ``stats`` at λ (the user's, or chosen along the path).

    ``path`` reuses a path already computed (resamples keep the full data's λ).
    """
    cov = np.asarray(stats.cov, dtype=np.float64)
    variances = _variances(stats, standardize=settings.standardize)
    screen = screen_mask(cov, variances, mask, settings, stats.n)
    if screen is not None:
        mask = screen.mask
    started = time.monotonic()
    if path is None:
        path = lambda_path(stats, mask, settings)
        _warn_path_end(path)
    path_time = time.monotonic() - started
    used = resolved(settings, lambda1=path.lambda1)
    result = solve(cov, variances, mask, used, checkpoint, V0=path.V_chosen, n_cells=stats.n)
    result.info["time_lambda_path_s"] = path_time
    solves = [result.info]
    while result.screen_missed is not None and result.screen_missed.nnz and len(solves) < SCREEN_SOLVES:
        # edges the completion found were missing from the constrained solve, whose order
        # they may change: solve again with them among the candidates
        mask = widen_screen(mask, result.screen_missed)
        again = None if checkpoint is None else Path(checkpoint) / f"widened_screen_{len(solves)}"
        result = solve(cov, variances, mask, used, again, V0=path.V_chosen, n_cells=stats.n)
        solves.append(result.info)
    if len(solves) > 1:
        result.info.update(
            screen_solves=len(solves),
            screen_edges_entered_per_solve=[int(i["screen_edges_entered"]) for i in solves],
            time_lambda_path_s=path_time,
            time_earlier_solves_s=float(sum(i["wall_time_s"] for i in solves[:-1])),
        )
    result.info.update({"screened": screen is not None, **({} if screen is None else screen.info)})
    return Network(path, result, used)


def lambda_path(stats: SufficientStats, mask: EdgeMask, settings: SolverSettings) -> LambdaPath:
    """Compute the λ path of these statistics: chosen by the criterion, or at the user's λ."""
    cov = np.asarray(stats.cov, dtype=np.float64)
    variances = _variances(stats, standardize=settings.standardize)
    if settings.lambda1 is None and settings.standardize:
        return select_lambda(cov, variances, mask, settings, stats.n)
    return at_lambda(cov, variances, mask, resolved(settings))


def _warn_path_end(path: LambdaPath) -> None:
    end = path.at_end
    if end == "largest":
        log.warning(
            "the chosen lambda1 (%.4g) is the largest of its path: the criterion prefers no edge at all; "
            "the data may hold too few cells or too little signal",
            path.lambda1,
        )
    elif end == "smallest":
        log.warning(
            "the chosen lambda1 (%.4g) is the smallest of its path: the criterion wants still more edges; "
            "set lambda1, or lower tuning path_ratio",
            path.lambda1,
        )


def resample_counts(
    strata: StrataStats,
    cells: CellStrata,
    mask: EdgeMask,
    *,
    path: LambdaPath,
    settings: SolverSettings,
    resamples,
) -> EdgeCounts:
    """Count the network edges of the given resamples (their ids; the plan comes from the seed).

    Every resample is solved at the full data's λ (``path``), with ``settings`` resolved.
    """
    s = settings
    plan = resample_plan(cells.n_chunks, s.stability_resamples, s.stability_fraction, s.seed)
    counts = EdgeCounts.empty(mask.n_genes)
    for b in resamples:
        if not 0 <= b < len(plan):
            raise ConfigError(f"resample {b} is not one of the {len(plan)} resamples (0 to {len(plan) - 1})")
        sub = strata.combine(members=cells.members(plan[b]), groups=cells.group_of_stratum, scale=s.standardize)
        W = learn_network(sub, mask, s, path=path).result.W
        counts.add(W, b)
        log.info("stability resample %d of %d: %d edges", b + 1, s.stability_resamples, W.nnz)
    return counts


def stability_block(
    data: Any,
    resamples,
    *,
    regulators: list[str] | str | Path | None = None,
    prior: pd.DataFrame | str | Path | None = None,
    genes: list[str] | None = None,
    layer: str | None = None,
    groups: Any = None,
    **options: Any,
) -> EdgeCounts:
    """Solve some of the stability resamples of :func:`fit` and count their edges.

    The same one pass over the cells, the same λ and the same resample plan as ``fit``
    with these options, so the counts of disjoint blocks of resamples (separate jobs)
    add up to exactly those of one ``fit``: the engine of a fan-out.

    Parameters
    ----------
    data, regulators, prior, genes, layer, groups, **options
        As for :func:`fit`; ``stability_resamples`` is the total number B.
    resamples
        Ids of the resamples to solve, from 0 to B - 1.
    """
    settings = settings_from(**options)
    if not settings.stability_resamples:
        raise ConfigError("stability_resamples must be > 0 for a block of stability resamples")
    mask = _mask(_genes_of(data, genes), regulators, prior)
    cells = CellStrata.of(data, groups, settings)
    strata, stats = _statistics(data, cells, mask, settings, layer)
    path = lambda_path(stats, mask, settings)
    used = resolved(settings, lambda1=path.lambda1)
    return resample_counts(strata, cells, mask, path=path, settings=used, resamples=list(resamples))


def _result(stats, mask: EdgeMask, net: Network, counts, *, settings: SolverSettings, gene_names) -> FitResult:
    """Assemble the FitResult: both units, scores, frequencies and flags."""
    res = net.result
    std = np.asarray(stats.std, dtype=np.float64)
    W, W_std = unit_weights(res.W, std, standardized=settings.standardize)
    W_cont, _ = unit_weights(res.W_continuous, std, standardized=settings.standardize)
    scale = np.ones_like(std) if settings.standardize else np.where(std > 0, std, 1.0)
    beta = [
        rescale(to_gene_rows(V, mask.regulators, mask.n_genes), np.ones_like(scale), 1 / scale)
        for V in (net.path.V_chosen, net.path.V_last)
    ]
    scores = edge_scores(beta[0], beta[1], res.W_continuous)
    info = {**res.info, **net.path.record(), "w_threshold_used": net.settings.w_threshold, "n_cells": int(stats.n)}
    selection = orientation = None
    if counts is not None:
        selection, orientation = counts.frequencies()
        dropped = 0
        if settings.stability_min_frequency is not None:
            (W, W_std), dropped = keep_stable([W, W_std], selection, settings.stability_min_frequency)
        info.update(stability_resamples=counts.n_resamples, n_unstable_edges_dropped=dropped)
    outliers = gene_names[stats.outlier_dominated]
    info.update(
        n_zero_variance_genes=int(stats.zero_variance.sum()),
        n_outlier_dominated_genes=int(outliers.size),
        outlier_dominated_genes=outliers[:100].tolist(),
        n_edges=int(W.nnz),
    )
    info.update(_degenerate_flags(stats, mask, W, net.settings))
    return FitResult(
        W.astype(np.float32),
        gene_names,
        mask,
        provenance(settings, info),
        adjacency_std=W_std.astype(np.float32),
        weights_continuous=W_cont.astype(np.float32),
        scores=scores.astype(np.float32),
        selection_frequency=selection,
        orientation_frequency=orientation,
        gene_sd=std,
    )


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
        units = "standardised effects" if settings.standardize else "the units of the data"
        log.warning(
            "the network is empty: no edge reached |w| >= w_threshold = %g at lambda1 = %.4g (%s); "
            "the ranked candidates (scores) are still reported",
            settings.w_threshold,
            settings.lambda1,
            units,
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
    for name in ("lambda1", "w_threshold"):
        if getattr(settings, name) is None:
            params[name] = "auto"  # the values used are in run: lambda1_selected, w_threshold_used
    rounds = info.get("rounds", [])
    run = {k: v for k, v in info.items() if k not in ("rounds", "path_stages")}
    run["final_h"] = float(max((r["max_h"] for r in rounds), default=0.0)) if rounds else 0.0
    run["rounds_json"] = json.dumps(rounds)
    # one entry per central-path stage of every constrained solve: round, bucket, stage, mu, max_h, evals
    run["stages_json"] = json.dumps(info.get("path_stages", []))
    return {"parameters": params, "versions": versions, "run": run}
