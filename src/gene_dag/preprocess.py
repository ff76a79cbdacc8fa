"""Quality control, normalisation and splitting by group (tissue, cell type), scanpy style.

AnnData in, AnnData out. The workflow's ``preprocess`` rule calls :func:`preprocess`
through ``gene-dag preprocess``: QC filters on the whole dataset, ``normalize_total`` +
``log1p`` when the values are counts, a split into one AnnData per group (groups below a
minimum size are skipped with their reason), zero-variance genes dropped inside each
group (a constant gene has no variance to explain and breaks the solver's scaling), and
optional scaling per group.

Group names come from the data, so each gets a filesystem-safe *slug* (:func:`group_slugs`)
that is deterministic: the same set of group names always gives the same slugs.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gene_dag.errors import ConfigError, InputError

log = logging.getLogger(__name__)

VALUE_KINDS = ("counts", "log", "scaled")
"""What the input values are: raw ``counts`` (normalised + log1p here), ``log``
(already log-normalised; used as they are) or ``scaled`` (continuous values such as
z-scores or simulated SEM data; used as they are, no expression-based QC)."""

ALL_CELLS = "all"
"""Group name (and slug) of the single group when a dataset is not split."""

MANIFEST_COLUMNS = ("group", "slug", "status", "n_cells", "n_genes", "has_truth", "reason")


# ----------------------------------------------------------------------------- slugs


def slugify(name: object) -> str:
    """Make a filesystem- and wildcard-safe version of a group name (no hash; see group_slugs).

    ``+`` becomes ``pos`` (``CD14+ Monocyte`` -> ``CD14pos_Monocyte``), every run of other
    characters outside ``[A-Za-z0-9._-]`` becomes ``_``, leading/trailing ``._-`` go.
    """
    text = str(name).replace("+", "pos")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return text or "group"


def group_slugs(names: Iterable[object]) -> dict[str, str]:
    """Map each group name to a unique slug, deterministically.

    Names whose slugs collide (compared case-insensitively, as on macOS and Windows
    file systems) all get a suffix from the SHA-1 of the name, so no slug depends on
    the order in which names appear.
    """
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError("group names are not unique")
    base = {n: slugify(n) for n in names}
    counts = pd.Series([s.lower() for s in base.values()]).value_counts()
    out = {}
    for n, s in base.items():
        if counts[s.lower()] > 1:
            s = f"{s}-{hashlib.sha1(n.encode()).hexdigest()[:8]}"
        out[n] = s
    return out


# ----------------------------------------------------------------------------- steps


def check_values(adata, values: str, source: str = "data") -> None:
    """Refuse values that contradict what the config says they are (one clear message)."""
    if values not in VALUE_KINDS:
        raise ConfigError(f"values must be one of {', '.join(VALUE_KINDS)}, got {values!r}")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(f"empty matrix ({adata.n_obs} cells x {adata.n_vars} genes)", source)
    data = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    if data.size == 0:
        return
    lo, hi = float(np.min(data)), float(np.max(data))
    if values in ("counts", "log") and lo < 0:
        raise InputError(
            f"values: {values} but the matrix has negative values (min {lo:.3g}); "
            "use values: scaled for centred or scaled data",
            source,
        )
    if values == "counts":
        sample = data[: min(data.size, 100_000)]
        if not np.allclose(sample, np.round(sample)):
            log.warning("%s: values: counts but the matrix holds non-integers (normalised already?)", source)
    if values == "log" and hi > 50:
        log.warning("%s: values: log but the largest value is %.3g (raw counts? then say values: counts)", source, hi)


def qc_filter(adata, min_genes: int = 0, min_cells: int = 0, source: str = "data"):
    """Drop cells expressing fewer than ``min_genes`` genes, then genes seen in fewer than ``min_cells`` cells."""
    import scanpy as sc

    if min_genes > 0:
        before = adata.n_obs
        sc.pp.filter_cells(adata, min_genes=min_genes)
        log.info(
            "%s: QC removed %d of %d cells with < %d expressed genes", source, before - adata.n_obs, before, min_genes
        )
    if min_cells > 0:
        before = adata.n_vars
        sc.pp.filter_genes(adata, min_cells=min_cells)
        log.info(
            "%s: QC removed %d of %d genes expressed in < %d cells", source, before - adata.n_vars, before, min_cells
        )
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(
            f"QC (min_genes={min_genes}, min_cells={min_cells}) left {adata.n_obs} cells x {adata.n_vars} genes",
            source,
        )
    return adata


def normalize_log(adata, target_sum: float | None = None):
    """``normalize_total`` + ``log1p`` (the counts are kept in ``layers["counts"]``)."""
    import scanpy as sc

    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    return adata


def gene_variance(X) -> np.ndarray:
    """Per-gene variance of a dense or sparse cells x genes matrix (float64, ddof 0)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        mean = np.asarray(X.mean(axis=0)).ravel()
        mean_sq = np.asarray(X.multiply(X).mean(axis=0)).ravel()
        return np.maximum(mean_sq - mean**2, 0.0)
    return np.asarray(X, dtype=np.float64).var(axis=0)


def drop_constant_genes(adata, tol: float = 1e-12, source: str = "data"):
    """Remove genes whose variance is <= ``tol`` (they break the solver); returns (adata, dropped names)."""
    var = gene_variance(adata.X)
    constant = var <= tol
    dropped = adata.var_names[constant].tolist()
    if dropped:
        log.info("%s: dropped %d zero-variance gene(s) (first: %s)", source, len(dropped), ", ".join(dropped[:5]))
        adata = adata[:, ~constant].copy()
    return adata, dropped


def scale(adata, max_value: float | None = None):
    """Centre and scale every gene to unit variance (``scanpy.pp.scale``), clipping at ``max_value``."""
    import scanpy as sc

    if sp.issparse(adata.X):
        adata.X = adata.X.toarray()  # centred values are dense anyway
    sc.pp.scale(adata, max_value=max_value)
    return adata


# ----------------------------------------------------------------------------- the whole step


@dataclass
class Group:
    """One group after preprocessing: its name in the data, its slug and its cells."""

    name: str
    slug: str
    adata: object


def preprocess(
    adata,
    *,
    values: str = "counts",
    groupby: str | None = None,
    min_group_size: int = 50,
    min_genes: int = 0,
    min_cells: int = 0,
    target_sum: float | None = None,
    scale_values: bool = False,
    max_value: float | None = None,
    truth_key: str = "true_dag",
    source: str = "data",
) -> tuple[list[Group], pd.DataFrame]:
    """QC, normalise and split ``adata``; returns the kept groups and a manifest of all groups.

    The manifest has one row per group found in ``obs[groupby]`` (or one row ``all``):
    ``group, slug, status (kept | skipped), n_cells, n_genes, has_truth, reason``.
    Cells with no group label are dropped (and counted in the log). Each kept group's
    AnnData has the processed values in ``X``, the raw counts in ``layers["counts"]``
    when the input was counts, no ``raw``, and ``uns["gene_dag_preprocess"]`` saying
    what was done. Raises InputError when no group is left.
    """
    _check_arguments(adata, values=values, groupby=groupby, min_group_size=min_group_size, source=source)
    adata = _qc_and_normalise(
        _lean_copy(adata, source),
        values=values,
        min_genes=min_genes,
        min_cells=min_cells,
        target_sum=target_sum,
        source=source,
    )
    labels, names = _group_labels(adata, groupby, source)
    slugs = group_slugs(names)
    has_truth = truth_key in adata.varp
    params = {
        "source": str(source),
        "values": values,
        "groupby": groupby or "",
        "min_group_size": int(min_group_size),
        "min_genes": int(min_genes),
        "min_cells": int(min_cells),
        "target_sum": float(target_sum) if target_sum else 0.0,
        "scaled": bool(scale_values),
    }

    groups: list[Group] = []
    rows = []
    for name in names:
        group, row = _one_group(
            adata,
            (labels == name).to_numpy(),
            Group(name, slugs[name], None),
            params=params,
            has_truth=has_truth,
            min_group_size=min_group_size,
            scale_values=scale_values,
            max_value=max_value,
            source=source,
        )
        rows.append(row)
        if group is not None:
            groups.append(group)

    _check_groups_left(names, rows, groupby=groupby, source=source)
    return groups, pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def _check_groups_left(names: list[str], rows: list[dict], *, groupby: str | None, source: str) -> None:
    """Raise InputError when no cell has a label or every group was skipped (each with its reason)."""
    if not names:
        raise InputError(f"no cell has a {groupby!r} label, so there is no group to learn a network on", source)
    if not any(r["status"] == "kept" for r in rows):
        detail = "; ".join(f"{r['group']}: {r['reason']}" for r in rows)
        raise InputError(f"no group is left to learn a network on ({detail})", source)


def _check_arguments(adata, *, values: str, groupby: str | None, min_group_size: int, source: str) -> None:
    """Raise InputError or ConfigError for values the data do not hold, or options out of range."""
    check_values(adata, values, source)
    if groupby is not None and groupby not in adata.obs.columns:
        have = ", ".join(map(str, adata.obs.columns[:20])) or "none"
        raise InputError(f"groupby column {groupby!r} is not in obs (obs columns: {have})", source)
    if min_group_size < 1:
        raise ConfigError(f"min_group_size must be >= 1, got {min_group_size}")


def _qc_and_normalise(adata, *, values: str, min_genes: int, min_cells: int, target_sum: float | None, source: str):
    """Cell and gene QC (not on scaled values), then normalise and log-transform counts."""
    if values == "scaled":
        if min_genes > 0 or min_cells > 0:
            log.warning("%s: values: scaled, so the expression-based QC (min_genes, min_cells) is skipped", source)
    else:
        adata = qc_filter(adata, min_genes=min_genes, min_cells=min_cells, source=source)
    if values == "counts":
        adata = normalize_log(adata, target_sum=target_sum)
        log.info("%s: normalize_total (target_sum=%s) + log1p", source, target_sum or "median")
    return adata


def _group_labels(adata, groupby: str | None, source: str) -> tuple[pd.Series, list[str]]:
    """Each cell's group name (None when unlabelled) and the group names in order.

    The order is that of the categories for a categorical column, else sorted.
    """
    if groupby is None:
        return pd.Series(ALL_CELLS, index=adata.obs_names), [ALL_CELLS]
    column = adata.obs[groupby]
    unlabelled = int(column.isna().sum())
    if unlabelled:
        log.warning("%s: %d cell(s) have no %r label and are left out", source, unlabelled, groupby)
    labels = column.astype(object).where(column.notna(), None)
    if isinstance(column.dtype, pd.CategoricalDtype):
        present = set(labels.dropna())
        names = [str(c) for c in column.cat.categories if c in present]
    else:
        names = sorted({str(v) for v in labels.dropna()})
    return labels.map(lambda v: None if v is None else str(v)), names


def _one_group(
    adata,
    cells: np.ndarray,
    group: Group,
    *,
    params: dict,
    has_truth: bool,
    min_group_size: int,
    scale_values: bool,
    max_value: float | None,
    source: str,
) -> tuple[Group | None, dict]:
    """Make the group's cells a Group (None when skipped) and its manifest row."""
    name, slug = group.name, group.slug
    n_cells = int(cells.sum())
    row = {"group": name, "slug": slug, "n_cells": n_cells, "n_genes": adata.n_vars, "has_truth": has_truth}
    if n_cells < min_group_size:
        reason = f"{n_cells} cells < min_group_size {min_group_size}"
        log.warning("%s: group %r skipped: %s", source, name, reason)
        return None, {**row, "status": "skipped", "reason": reason}
    sub = adata[cells].copy()
    sub, dropped = drop_constant_genes(sub, source=f"{source} [{name}]")
    if sub.n_vars < 2:
        reason = f"{sub.n_vars} gene(s) vary within the group (need >= 2)"
        log.warning("%s: group %r skipped: %s", source, name, reason)
        return None, {**row, "n_genes": sub.n_vars, "status": "skipped", "reason": reason}
    if scale_values:
        sub = scale(sub, max_value=max_value)
    sub.uns["gene_dag_preprocess"] = {**params, "group": name, "slug": slug, "n_constant_genes_dropped": len(dropped)}
    log.info("%s: group %r (%s): %d cells x %d genes", source, name, slug, sub.n_obs, sub.n_vars)
    return Group(name, slug, sub), {**row, "n_genes": sub.n_vars, "status": "kept", "reason": ""}


def _lean_copy(adata, source: str = "data"):
    """Copy ``adata`` without what preprocessing invalidates or never uses (raw, obsp, most of uns)."""
    import anndata

    X = adata.X
    if X is None:
        raise InputError("the matrix X is empty", source)
    if not sp.issparse(X):
        X = np.asarray(X)
    if X.dtype.kind != "f":
        X = X.astype(np.float32)
    out = anndata.AnnData(
        X=X.copy(),
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        obsm={k: v.copy() for k, v in adata.obsm.items()},
        varp={k: v.copy() for k, v in adata.varp.items()},
        uns={k: v for k, v in adata.uns.items() if str(k).endswith("_colors") or k == "simulation"},
    )
    return out


def read_manifest(path) -> pd.DataFrame:
    """Read the groups manifest written by ``gene-dag preprocess`` (TSV, one row per group)."""
    table = pd.read_csv(path, sep="\t", dtype={"group": str, "slug": str, "reason": str}, keep_default_na=False)
    missing = set(MANIFEST_COLUMNS) - set(table.columns)
    if missing:
        raise InputError(f"groups manifest lacks column(s) {sorted(missing)}", path)
    table["has_truth"] = table["has_truth"].astype(str).str.lower().isin(("true", "1"))
    return table
