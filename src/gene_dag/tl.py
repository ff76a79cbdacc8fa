"""Tools in scanpy's style: learn a network into an AnnData, and ask it what an intervention does.

Every function takes the AnnData first and keyword-only options, stores its result in
the AnnData under ``key_added`` and returns ``None``, or a modified copy with
``copy=True``. The network is read from ``adata.varp[key]`` (row = regulator, column =
target, weights in the units of the data it was learned from), as written by
:func:`learn_dag` and by the workflow's ``network.h5ad``.

>>> import gene_dag
>>> gene_dag.tl.learn_dag(adata, regulators=["SPI1", "IRF8"], lambda1=0.02)
>>> gene_dag.tl.effects(adata, ["SPI1"])              # adata.varm["effects"]
>>> gene_dag.tl.knockout(adata, ["SPI1"], groupby="bulk_labels")  # adata.uns["knockout"]
>>> gene_dag.tl.regulators(adata).head()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gene_dag import effects as _effects
from gene_dag.errors import ConfigError, InputError

if TYPE_CHECKING:
    from anndata import AnnData

log = logging.getLogger(__name__)

__all__ = ["learn_dag", "add_stability", "effects", "knockout", "regulators"]


def _describe(value: Any) -> Any:
    """How a regulator list or prior is recorded in ``uns``: the path, the gene names, or 'none'."""
    if value is None:
        return "none"
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, pd.DataFrame):
        return f"edge table ({len(value)} rows)"
    return np.asarray([str(v) for v in value], dtype=str)


def learn_dag(
    adata: AnnData,
    *,
    layer: str | None = None,
    regulators: Sequence[str] | str | Path | None = None,
    prior: pd.DataFrame | str | Path | None = None,
    groupby: str | None = None,
    key_added: str = "gene_dag",
    copy: bool = False,
    **solver_options: Any,
) -> AnnData | None:
    """Learn a causal DAG over the genes of ``adata`` and store it as ``network.h5ad`` has it.

    Parameters
    ----------
    adata
        Cells x genes. The solver reads ``X`` or ``layer``.
    layer
        A layer name, or ``"raw"`` (then ``adata.raw`` must hold the same genes as ``var``).
    regulators
        Gene names (or a file, one per line) that edges may leave; ``None``: any gene.
    prior
        Edge prior: a table or TSV path with ``source, target, type[, weight]``.
    groupby
        An ``obs`` column of cell groups (cell types, batches): one network pooled over
        all cells, from the statistics of group-centred data, so that differences
        between the groups' means do not become edges.
    key_added
        Key in ``varp`` and ``uns``.
    copy
        Work on a copy and return it.
    **solver_options
        Passed to :func:`gene_dag.fit`: ``lambda1``, ``w_threshold``, ``standardize``,
        ``order_search``, ``acyclicity``, ``device``, ``memory_gb``, ``seed``, ``max_time``,
        ``stability_resamples``, ``checkpoint``, ...

    Returns
    -------
    ``None``, or the AnnData when ``copy``. Sets (all d x d CSR, row = regulator,
    column = target)

    ``adata.varp[key_added]``
        The network (a DAG): float32 weights in the data's units.
    ``adata.varp[key_added + "_std"]``
        The same edges as standardised effects (standard deviations of the target per
        standard deviation of the regulator).
    ``adata.varp[key_added + "_continuous"]``
        The solved weights before the threshold (data units): below-threshold candidates.
    ``adata.varp[key_added + "_score"]``
        The ranking score of every candidate edge (:mod:`gene_dag.solver.ranking`),
        network edges and below-threshold candidates alike: rank by it for a top-k list.
    ``adata.varp[key_added + "_selection"]``, ``adata.varp[key_added + "_orientation"]``
        With ``stability_resamples``: selection and orientation frequencies
        (:mod:`gene_dag.stability`).
    ``adata.var[key_added + "_sd"]``
        Each gene's standard deviation, which converts the two units.
    ``adata.uns[key_added]``
        ``parameters`` (solver settings, plus ``layer``, ``regulators``, ``prior``),
        ``versions`` and ``run`` (``converged``, ``score``, ``final_h``, iterations,
        ``rounds_json``, ``wall_time_s``, ``total_wall_time_s``, ``n_edges``, ...).
    """
    from gene_dag.graph import is_dag
    from gene_dag.solver.api import fit

    adata = adata.copy() if copy else adata
    if layer == "raw" and (adata.raw is None or not adata.raw.var_names.equals(adata.var_names)):
        raise ConfigError("layer='raw' needs adata.raw with the same genes as adata.var (use adata.raw.to_adata())")
    start = time.monotonic()
    result = fit(
        adata, regulators=regulators, prior=prior, layer=layer, groups=groupby, return_result=True, **solver_options
    )
    if not is_dag(result.adjacency):
        raise RuntimeError("the solver returned a graph with a cycle")  # the solver guarantees a DAG
    _store_matrices(adata, result, key_added)
    record = result.info
    record["parameters"].update(
        input="AnnData",
        layer=layer or "X",
        regulators=_describe(regulators),
        prior=_describe(prior),
        groupby=groupby or "none",
    )
    record["run"]["total_wall_time_s"] = time.monotonic() - start
    record["run"]["n_edges"] = int(result.adjacency.nnz)
    adata.uns[key_added] = record
    if not record["run"]["converged"]:
        log.warning(
            "the solver did not converge (time limit or iteration cap); the DAG is the best so far "
            "(uns[%r]['run']['converged'] is False)",
            key_added,
        )
    return adata if copy else None


def add_stability(
    adata: AnnData, counts, *, key: str = "gene_dag", min_frequency: float | None = None, copy: bool = False
) -> AnnData | None:
    """Store stability frequencies from resample edge counts (e.g. summed over fan-out jobs).

    Parameters
    ----------
    adata
        An AnnData with a network in ``varp[key]``.
    counts
        A :class:`gene_dag.stability.EdgeCounts` over the genes of ``adata``.
    key
        The network's key.
    min_frequency
        Drop network edges selected in fewer than this share of the resamples.
    copy
        Work on a copy and return it.

    Returns
    -------
    ``None``, or the AnnData when ``copy``. Sets ``varp[key + "_selection"]`` and
    ``varp[key + "_orientation"]`` and ``uns[key]["run"]["stability_resamples"]``.
    """
    adata = adata.copy() if copy else adata
    if counts.directed.shape != (adata.n_vars, adata.n_vars):
        raise InputError(f"edge counts over {counts.directed.shape[0]} genes for a network of {adata.n_vars}")
    selection, orientation = counts.frequencies()
    adata.varp[key + "_selection"] = sp.csr_matrix(selection, dtype=np.float32)
    adata.varp[key + "_orientation"] = sp.csr_matrix(orientation, dtype=np.float32)
    run = adata.uns.setdefault(key, {}).setdefault("run", {})
    run["stability_resamples"] = int(counts.n_resamples)
    if min_frequency is not None:
        from gene_dag.stability import keep_stable

        names = [k for k in (key, key + "_std") if k in adata.varp]
        kept, run["n_unstable_edges_dropped"] = keep_stable([adata.varp[k] for k in names], selection, min_frequency)
        for name, matrix in zip(names, kept, strict=True):
            adata.varp[name] = matrix.astype(np.float32)
        run["n_edges"] = int(kept[0].nnz)
    return adata if copy else None


def _store_matrices(adata: AnnData, result, key: str) -> None:
    """Write the network and its companions (see :func:`learn_dag`) into ``varp`` and ``var``."""
    adata.varp[key] = result.adjacency
    for suffix, matrix in (
        ("_std", result.adjacency_std),
        ("_continuous", result.weights_continuous),
        ("_score", result.scores),
        ("_selection", result.selection_frequency),
        ("_orientation", result.orientation_frequency),
    ):
        if matrix is not None:
            adata.varp[key + suffix] = sp.csr_matrix(matrix, dtype=np.float32)
        elif key + suffix in adata.varp:
            del adata.varp[key + suffix]  # a stale companion of an earlier network under this key
    if result.gene_sd is not None:
        adata.var[key + "_sd"] = np.asarray(result.gene_sd, dtype=np.float64)


# ----------------------------------------------------------------------------- helpers


def network(adata: AnnData, key: str = "gene_dag") -> sp.csr_matrix:
    """Return the network in ``adata.varp[key]`` as CSR float64 (InputError when absent or malformed)."""
    from gene_dag.export import network_matrix

    return network_matrix(adata, key, source="adata").astype(np.float64)


def gene_indices(adata: AnnData, genes: str | Sequence[str], what: str = "genes") -> np.ndarray:
    """Positions of ``genes`` in ``adata.var_names``; InputError naming the ones that are absent."""
    genes = [genes] if isinstance(genes, str) else [str(g) for g in genes]
    if not genes:
        raise InputError(f"no {what} given")
    if len(set(genes)) != len(genes):
        raise InputError(f"{what} repeat a name: {', '.join(genes)}")
    idx = adata.var_names.get_indexer(genes)
    missing = [g for g, i in zip(genes, idx, strict=True) if i < 0]
    if missing:
        raise InputError(f"{len(missing)} of the {what} are not genes of the network: {', '.join(missing[:10])}")
    return idx.astype(np.int64)


def _warn_no_targets(adata: AnnData, W: sp.csr_matrix, idx: np.ndarray, what: str) -> list[str]:
    leaves = [str(adata.var_names[i]) for i in idx if W.indptr[i + 1] == W.indptr[i]]
    if leaves:
        log.warning("%s has no targets in the network, so %s changes no other gene", ", ".join(leaves), what)
    return leaves


# ----------------------------------------------------------------------------- effects


def effects(
    adata: AnnData,
    genes: str | Sequence[str],
    *,
    key: str = "gene_dag",
    key_added: str = "effects",
    copy: bool = False,
) -> AnnData | None:
    """Total causal effect of a unit intervention do(gene + 1) on every gene.

    Under the learned linear SEM ``X = XW + Z`` the total effect of gene ``Y`` on gene
    ``X`` is entry ``[Y, X]`` of ``(I - W)^{-1}`` (the sum over all directed paths of
    the product of their weights). The rows for ``genes`` are computed by sparse
    propagation in topological order, without forming a d x d matrix.

    Parameters
    ----------
    adata
        AnnData with a network in ``varp[key]``.
    genes
        The genes to intervene on (one at a time).
    key
        ``varp`` key of the network (its weights set the units of the effects).
    key_added
        Prefix of the keys written.
    copy
        Work on a copy and return it.

    Returns
    -------
    ``None``, or the AnnData when ``copy``. Sets

    ``adata.varm[key_added]``
        DataFrame, genes x intervened genes: total effects (1 for a gene on itself).
    ``adata.varm[key_added + "_direct"]``
        DataFrame, the direct effects (the edge weights ``W[gene, :]``).
    ``adata.varm[key_added + "_n_paths"]``
        DataFrame, the number of directed paths from each intervened gene.
    ``adata.uns[key_added]``
        ``genes``, ``key``, ``n_affected`` (genes with a nonzero total effect, itself
        excluded, per intervened gene) and ``no_targets`` (intervened genes that change
        nothing; a WARNING is logged for them).
    """
    adata = adata.copy() if copy else adata
    W = network(adata, key)
    idx = gene_indices(adata, genes)
    names = [str(adata.var_names[i]) for i in idx]
    total = _effects.total_effects(W, idx)
    paths = _effects.path_counts(W, idx)
    direct = W[idx].toarray()
    frame = lambda values: pd.DataFrame(values.T, index=adata.var_names.copy(), columns=names)  # noqa: E731
    adata.varm[key_added] = frame(total)
    adata.varm[f"{key_added}_direct"] = frame(direct)
    adata.varm[f"{key_added}_n_paths"] = frame(paths)
    affected = (total != 0).sum(axis=1) - 1
    adata.uns[key_added] = {
        "genes": np.asarray(names, dtype=str),
        "key": key,
        "n_affected": affected.astype(np.int64),
        "no_targets": np.asarray(_warn_no_targets(adata, W.tocsr(), idx, "an intervention on it"), dtype=str),
    }
    return adata if copy else None


# ----------------------------------------------------------------------------- knockout


def _layer_matrix(adata: AnnData, layer: str | None):
    from gene_dag.io import layer_matrix

    X, names = layer_matrix(adata, layer, "adata")
    if layer == "raw" and not names.equals(adata.var_names):
        raise ConfigError("layer='raw' holds other genes than the network (adata.var)")
    return X


def _column_means(X, cells: np.ndarray) -> np.ndarray:
    sub = X[cells]
    return np.asarray(sub.mean(axis=0), dtype=np.float64).ravel()


def _knockout_target(value: float | Sequence[float] | None, fraction: float | None, *, n_genes: int):
    """Return the level each of ``n_genes`` genes is set to (None with ``fraction``); ConfigError if invalid."""
    if fraction is not None:
        if not np.isfinite(fraction) or fraction < 0:
            raise ConfigError(f"fraction must be a finite number >= 0, not {fraction!r}")
        return None
    if value is None:
        raise ConfigError("give value or fraction")
    target = (
        np.broadcast_to(np.asarray(value, dtype=np.float64), (n_genes,))
        if np.ndim(value) == 0
        else np.asarray(value, dtype=np.float64)
    )
    if target.shape != (n_genes,) or not np.isfinite(target).all():
        raise ConfigError(f"value must be one finite number or one per gene ({n_genes}), not {value!r}")
    return target


def _group_labels(adata: AnnData, groupby: str | None) -> pd.Categorical:
    """Each cell's group: ``obs[groupby]`` as strings, or ``all``; InputError when the column is absent."""
    if groupby is None:
        return pd.Categorical(np.repeat("all", adata.n_obs))
    if groupby not in adata.obs:
        raise InputError(f"no obs column {groupby!r} (obs columns: {', '.join(map(str, adata.obs.columns)) or 'none'})")
    return pd.Categorical(adata.obs[groupby].astype(str))


def knockout(
    adata: AnnData,
    genes: str | Sequence[str],
    *,
    value: float | Sequence[float] | None = 0.0,
    fraction: float | None = None,
    groupby: str | None = None,
    layer: str | None = None,
    per_cell: bool = False,
    key: str = "gene_dag",
    key_added: str = "knockout",
    copy: bool = False,
) -> AnnData | None:
    """Predicted expression when ``genes`` are held at a value: in-silico knockout on the causal model.

    The intervened genes are set (their incoming edges cut) and the change is
    propagated along the network in topological order, in the units of the expression
    the network was learned from: every other gene shifts by ``sum_k shift_k W[k, gene]``.
    With ``value=0.0`` (the default) this is a knockout; ``fraction=0.3`` is a knockdown
    to 30% of the observed level and ``fraction=2`` a doubling (overexpression); an
    absolute ``value`` sets that level in every cell. The model is linear, so a large
    change can predict levels below zero; read them as "down to nothing".

    Parameters
    ----------
    adata
        AnnData with a network in ``varp[key]`` and the expression it was learned from.
    genes
        The genes to set (together).
    value
        The level they are set to (one number, or one per gene). Ignored with ``fraction``.
    fraction
        Set each gene to this multiple of its observed level instead.
    groupby
        ``obs`` column: report the mean of each group (else one group, ``all``).
    layer
        Expression to start from: ``X`` (None), a layer, or ``"raw"``.
    per_cell
        Also store the predicted expression of every cell (a dense cells x genes layer).
    key
        ``varp`` key of the network.
    key_added
        Key of the results.
    copy
        Work on a copy and return it.

    Returns
    -------
    ``None``, or the AnnData when ``copy``. Sets

    ``adata.uns[key_added]``
        ``genes``, ``value`` / ``fraction``, ``groupby``, ``key``, and DataFrames
        (genes x groups) ``observed`` (group means), ``predicted`` (means after the
        intervention) and ``shift`` (predicted - observed); ``n_changed`` (genes other
        than the intervened ones whose mean moves, per group) and ``no_targets``.
    ``adata.layers[key_added]``
        With ``per_cell``: the predicted expression of every cell (float32).
    """
    adata = adata.copy() if copy else adata
    W = network(adata, key)
    idx = gene_indices(adata, genes)
    names = [str(adata.var_names[i]) for i in idx]
    target = _knockout_target(value, fraction, n_genes=idx.size)
    X = _layer_matrix(adata, layer)
    labels = _group_labels(adata, groupby)
    groups = [g for g in labels.categories if (labels == g).any()]
    observed = np.column_stack([_column_means(X, np.flatnonzero(labels == g)) for g in groups])  # d x G
    x_s = observed[idx].T  # G x k
    delta = (fraction - 1.0) * x_s if fraction is not None else target[None, :] - x_s
    T_cut = _effects.total_effects(W, idx, cut=True)
    shift = (delta @ T_cut).T  # d x G
    frame = lambda values: pd.DataFrame(values, index=adata.var_names.copy(), columns=[str(g) for g in groups])  # noqa: E731
    others = np.ones(adata.n_vars, dtype=bool)
    others[idx] = False
    n_changed = (np.abs(shift[others]) > 0).sum(axis=0)
    no_targets = _warn_no_targets(adata, W, idx, "setting it")
    record = {
        "genes": np.asarray(names, dtype=str),
        "groupby": groupby or "none",
        "key": key,
        "layer": layer or "X",
        "observed": frame(observed),
        "predicted": frame(observed + shift),
        "shift": frame(shift),
        "n_changed": pd.Series(n_changed.astype(np.int64), index=[str(g) for g in groups]).to_dict(),
        "no_targets": np.asarray(no_targets, dtype=str),
    }
    if fraction is not None:
        record["fraction"] = float(fraction)
    else:
        record["value"] = target.astype(np.float64)
    adata.uns[key_added] = record
    if per_cell:
        dense = X.toarray() if sp.issparse(X) else np.asarray(X)
        dense = dense.astype(np.float64)
        cell_delta = (fraction - 1.0) * dense[:, idx] if fraction is not None else target[None, :] - dense[:, idx]
        adata.layers[key_added] = (dense + cell_delta @ T_cut).astype(np.float32)
    return adata if copy else None


# ----------------------------------------------------------------------------- regulators


def regulators(adata: AnnData, *, key: str = "gene_dag", key_added: str = "regulators") -> pd.DataFrame:
    """Genes ranked by out-degree, then total absolute downstream effect, then in-degree.

    Parameters
    ----------
    adata
        AnnData with a network in ``varp[key]``.
    key
        ``varp`` key of the network.
    key_added
        ``uns`` key of the table.

    Returns
    -------
    The table (also stored in ``adata.uns[key_added]``), one row per gene, best first:
    ``out_degree``, ``in_degree``, ``sum_abs_weight`` (of the outgoing edges) and
    ``total_abs_effect`` (sum over all other genes of ``|total effect|`` of do(gene + 1)).
    """
    W = network(adata, key)
    genes = np.asarray(adata.var_names, dtype=str)
    out_deg = np.diff(W.indptr)
    in_deg = np.bincount(W.indices, minlength=W.shape[1])
    total = np.zeros(W.shape[0])
    has_targets = np.flatnonzero(out_deg > 0)
    if has_targets.size:
        total[has_targets] = _effects.total_abs_effects(W, has_targets)
    else:
        log.warning("the network in varp[%r] has no edges: no gene regulates another", key)
    table = pd.DataFrame(
        {
            "out_degree": out_deg.astype(np.int64),
            "in_degree": in_deg.astype(np.int64),
            "sum_abs_weight": np.asarray(abs(W).sum(axis=1)).ravel(),
            "total_abs_effect": total,
        },
        index=pd.Index(genes, name="gene"),
    )
    order = np.lexsort((genes, -table["in_degree"].to_numpy(), -total, -out_deg))
    table = table.iloc[order]
    adata.uns[key_added] = table
    return table
