"""Gene selection: highly variable genes, every gene the prior names forced in, or a list.

AnnData in, AnnData out (restricted to the selected genes, in their original order).
``var["gene_dag_selection"]`` says why each gene is there (``hvg``, ``prior``, ``list``
or ``all``) and ``uns["gene_dag_select"]`` records the parameters and the forced genes
that were absent from the data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd

from gene_dag.errors import ConfigError, InputError

log = logging.getLogger(__name__)

METHODS = ("hvg", "list", "all")
FLAVORS = ("seurat", "cell_ranger", "seurat_v3", "variance")
"""``seurat`` and ``cell_ranger`` (log data), ``seurat_v3`` (needs counts, in
``layers["counts"]``, and scikit-misc) are ``scanpy.pp.highly_variable_genes``;
``variance`` ranks genes by plain variance (any values, e.g. simulated data)."""


def prior_genes(regulators: Iterable[str] | None = None, edge_prior: pd.DataFrame | None = None) -> list[str]:
    """Genes a prior names as positive knowledge: regulators, and both ends of non-forbidden edges."""
    genes = list(regulators or [])
    if edge_prior is not None and len(edge_prior):
        kept = edge_prior[edge_prior["type"] != "forbidden"]
        genes += kept["source"].tolist() + kept["target"].tolist()
    return list(dict.fromkeys(genes))


def highly_variable(adata, n_top_genes: int, flavor: str = "seurat") -> np.ndarray:
    """Boolean mask of the ``n_top_genes`` most variable genes under ``flavor``."""
    if flavor not in FLAVORS:
        raise ConfigError(f"flavor must be one of {', '.join(FLAVORS)}, got {flavor!r}")
    if n_top_genes >= adata.n_vars:
        return np.ones(adata.n_vars, dtype=bool)
    if flavor == "variance":
        from gene_dag.preprocess import gene_variance

        var = gene_variance(adata.X)
        order = np.argsort(-var, kind="stable")[:n_top_genes]
        mask = np.zeros(adata.n_vars, dtype=bool)
        mask[order] = True
        return mask

    import scanpy as sc

    layer = None
    if flavor == "seurat_v3":
        if "counts" not in adata.layers:
            raise ConfigError("flavor seurat_v3 needs count data (values: counts); use seurat or cell_ranger")
        try:
            import skmisc  # noqa: F401
        except ImportError:
            raise ConfigError("flavor seurat_v3 needs scikit-misc (pip install scikit-misc)") from None
        layer = "counts"
    table = sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes, flavor=flavor, layer=layer, inplace=False)
    mask = np.asarray(table["highly_variable"], dtype=bool)
    if mask.sum() > n_top_genes:
        # scanpy keeps every gene tied at the cut-off (e.g. genes alone in their mean bin all
        # get a normalised dispersion of 1); break ties by raw dispersion, then gene order.
        if flavor == "seurat_v3":
            primary = -np.asarray(table["highly_variable_rank"], dtype=float)
            secondary = np.asarray(table["variances_norm"], dtype=float)
        else:
            primary = np.asarray(table["dispersions_norm"], dtype=float)
            secondary = np.asarray(table["dispersions"], dtype=float)
        primary = np.where(mask & np.isfinite(primary), primary, -np.inf)
        secondary = np.where(np.isfinite(secondary), secondary, -np.inf)
        order = np.lexsort((np.arange(adata.n_vars), -secondary, -primary))[:n_top_genes]
        mask = np.zeros(adata.n_vars, dtype=bool)
        mask[order] = True
    return mask


def _reasons(
    adata, *, method: str, n_top_genes: int, flavor: str, gene_list: Iterable[str] | None, source: str
) -> tuple[pd.Series, list[str]]:
    """Why each gene is selected by ``method`` ("" when it is not), and the gene list's absent names."""
    genes = adata.var_names
    reason = pd.Series("", index=genes, dtype=object)
    if method == "all":
        reason[:] = "all"
        return reason, []
    if method == "hvg":
        if n_top_genes < 1:
            raise ConfigError(f"n_top_genes must be >= 1, got {n_top_genes}")
        if n_top_genes >= adata.n_vars:
            log.info("%s: n_top_genes %d >= %d genes: every gene is selected", source, n_top_genes, adata.n_vars)
        reason[highly_variable(adata, n_top_genes, flavor)] = "hvg"
        return reason, []
    names = list(dict.fromkeys(gene_list or []))
    if not names:
        raise ConfigError("gene selection method 'list' needs a gene list")
    missing_list = [g for g in names if g not in set(genes)]
    if missing_list:
        log.warning(
            "%s: %d gene(s) of the gene list are not in the data (first: %s)",
            source,
            len(missing_list),
            ", ".join(missing_list[:5]),
        )
    reason[genes.isin(names)] = "list"
    return reason, missing_list


def select_genes(
    adata,
    *,
    method: str = "hvg",
    n_top_genes: int = 300,
    flavor: str = "seurat",
    gene_list: Iterable[str] | None = None,
    force: Iterable[str] | None = None,
    source: str = "data",
):
    """Restrict ``adata`` to the selected genes and say why each one is there.

    ``method="hvg"``: the ``n_top_genes`` most variable genes by ``flavor``;
    ``method="list"``: the genes of ``gene_list``; ``method="all"``: every gene.
    Every gene of ``force`` (the genes the prior names) present in the data is added.
    Names in ``gene_list`` or ``force`` absent from the data are logged and recorded.
    """
    if method not in METHODS:
        raise ConfigError(f"gene selection method must be one of {', '.join(METHODS)}, got {method!r}")
    genes = adata.var_names
    reason, missing_list = _reasons(
        adata, method=method, n_top_genes=n_top_genes, flavor=flavor, gene_list=gene_list, source=source
    )

    forced = list(dict.fromkeys(force or []))
    missing_forced = [g for g in forced if g not in set(genes)]
    newly = genes.isin(forced) & (reason == "").to_numpy()
    reason[newly] = "prior"
    if missing_forced:
        log.warning(
            "%s: %d gene(s) named by the prior are not in the data (absent or constant here; first: %s)",
            source,
            len(missing_forced),
            ", ".join(missing_forced[:5]),
        )
    keep = (reason != "").to_numpy()
    if keep.sum() < 2:
        raise InputError(f"gene selection kept {int(keep.sum())} gene(s); a network needs at least 2", source)
    out = adata[:, keep].copy()
    out.var["gene_dag_selection"] = pd.Categorical(reason[keep].to_numpy())
    out.uns["gene_dag_select"] = {
        "method": method,
        "n_top_genes": int(n_top_genes),
        "flavor": flavor,
        "n_selected": int(keep.sum()),
        "n_forced": int(newly.sum()),
        "n_forced_missing": len(missing_forced),
        "forced_missing": np.asarray(missing_forced, dtype=str),
        "n_list_missing": len(missing_list),
        "list_missing": np.asarray(missing_list, dtype=str),
    }
    log.info(
        "%s: selected %d of %d genes (%s%s)",
        source,
        out.n_vars,
        adata.n_vars,
        {"hvg": f"{n_top_genes} highly variable by {flavor}", "list": "gene list", "all": "all genes"}[method],
        f", {int(newly.sum())} more named by the prior" if newly.any() else "",
    )
    return out
