"""Prior knowledge as edge masks: regulator lists and known / forbidden / signed edges.

A prior never changes the score, only which edges may exist and how strongly each is
penalised. The solver sees an :class:`EdgeMask`: a row set (the regulators, the only
genes edges may leave) and sparse per-edge constraints inside the k x d block.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gene_dag.errors import InputError

log = logging.getLogger(__name__)

EDGE_TYPES = ("forbidden", "required", "positive", "negative")


def read_regulators(path: str | Path) -> list[str]:
    """Regulator names, one per line; blank lines and ``#`` comments ignored (UTF-8, a BOM is dropped)."""
    from gene_dag.io import read_names

    return read_names(path, "regulator list")


def read_edge_prior(path: str | Path) -> pd.DataFrame:
    """Edge prior TSV with columns source, target, type[, weight], validated.

    ``type`` is one of forbidden / required / positive / negative; ``weight`` is an
    L1 penalty multiplier (>= 0, < 1 favours the edge), default 1. Other columns are
    ignored; ``#`` starts a comment. Contradictory rows (see :func:`check_contradictions`)
    are an InputError naming the file and the line, counted as an editor shows them.
    """
    from gene_dag.io import read_lines

    lines = read_lines(path, "edge prior", strip=False)
    if not lines:
        raise InputError("the edge prior is empty (it needs a header: source, target, type[, weight])", path)
    header_line, header_text = lines[0]
    header = [c.strip() for c in header_text.split("\t")]
    missing = [c for c in ("source", "target", "type") if c not in header]
    if missing:
        raise InputError(
            f"line {header_line}: the header lacks column(s) {missing}; need source, target, type[, weight] "
            f"separated by tabs (got {header_text.strip()[:80]!r})",
            path,
        )
    repeated = sorted({c for c in header if header.count(c) > 1 and c})
    if repeated:
        raise InputError(f"line {header_line}: column(s) {repeated} appear twice in the header", path)
    column = {name: header.index(name) for name in ("source", "target", "type", "weight") if name in header}
    rows = [(*_edge_row(text, number, header, column, path), number) for number, text in lines[1:]]
    table = pd.DataFrame(rows, columns=["source", "target", "type", "weight", "line"])
    loops = table["source"] == table["target"]
    if loops.any():
        log.warning(
            "%s: %d self-loop(s) ignored (a gene never regulates itself; first on line %d)",
            path,
            int(loops.sum()),
            int(table.loc[loops, "line"].iloc[0]),
        )
        table = table[~loops]
    if not len(table):
        log.warning("%s: the edge prior has no edge rows; it constrains nothing", path)
    check_contradictions(table, path, lines=table["line"].tolist(), explicit=table["weight"].notna().tolist())
    table = table.assign(weight=table["weight"].fillna(1.0).astype(float))
    return table[["source", "target", "type", "weight"]].reset_index(drop=True)


def _edge_row(text: str, number: int, header: list[str], column: dict[str, int], path) -> tuple:
    """``(source, target, type, weight)`` of one edge prior line; weight NaN when the line gives none."""
    from gene_dag.io import check_name

    fields = [f.strip() for f in text.split("\t")]
    if len(fields) > len(header):
        raise InputError(f"line {number}: {len(fields)} fields but the header has {len(header)}", path)
    fields += [""] * (len(header) - len(fields))
    source, target, kind = (fields[column[c]] for c in ("source", "target", "type"))
    if not source or not target:
        raise InputError(f"line {number}: empty source or target", path)
    for name in (source, target):
        check_name(name, path, "gene name", number)
    kind = kind.lower()
    if kind not in EDGE_TYPES:
        raise InputError(f"line {number}: unknown edge type {kind!r}; allowed: {', '.join(EDGE_TYPES)}", path)
    text_weight = fields[column["weight"]] if "weight" in column else ""
    if not text_weight:
        return source, target, kind, np.nan
    try:
        weight = float(text_weight)
    except ValueError:
        weight = np.nan
    if not (np.isfinite(weight) and weight >= 0):
        raise InputError(f"line {number}: weight must be a finite number >= 0, not {text_weight!r}", path)
    return source, target, kind, weight


def check_contradictions(
    table: pd.DataFrame,
    source: str | Path,
    *,
    lines: list[int] | None = None,
    explicit: list[bool] | None = None,
) -> None:
    """Raise InputError at the first row of ``table`` that contradicts an earlier row of the same edge.

    Contradictory: ``forbidden`` with any other type (required, positive, negative),
    ``positive`` with ``negative``, a weight other than 1 on a ``forbidden`` edge, and
    two different weights. ``required`` goes with a sign; repeating a row is harmless.

    Parameters
    ----------
    table
        Columns source, target, type, weight.
    source
        The file (or a label) named in the message.
    lines
        The line of each row in the file; default: the row number (1-based).
    explicit
        Whether each row gave its weight (a row without one takes no side on weights);
        default: every weight other than 1.
    """
    where = "line" if lines is not None else "row"
    lines = lines if lines is not None else list(range(1, len(table) + 1))
    explicit = explicit if explicit is not None else [w != 1.0 for w in table["weight"]]
    seen: dict[tuple[str, str], dict] = {}
    rows = zip(table["source"], table["target"], table["type"], table["weight"], lines, explicit, strict=True)
    for src, dst, kind, weight, line, has_weight in rows:
        edge = f"edge {src} -> {dst}"
        if kind == "forbidden" and has_weight and weight != 1.0:
            raise InputError(f"{where} {line}: {edge} is forbidden, so a weight ({weight:g}) has no meaning", source)
        record = seen.setdefault((src, dst), {"types": {}, "weight": None})
        for other, other_line in record["types"].items():
            if other != kind and ("forbidden" in (kind, other) or {kind, other} == {"positive", "negative"}):
                raise InputError(
                    f"{where} {line}: {edge} is both {other} ({where} {other_line}) and {kind}, which contradict",
                    source,
                )
        record["types"].setdefault(kind, line)
        if has_weight:
            if record["weight"] is not None and record["weight"][0] != weight:
                raise InputError(
                    f"{where} {line}: {edge} has weight {weight:g} here but {record['weight'][0]:g} "
                    f"on {where} {record['weight'][1]}",
                    source,
                )
            record["weight"] = record["weight"] or (weight, line)


def _report_unknown(what: str, names: list[str], source: str) -> None:
    if names:
        log.warning(
            "%s: %d %s not in the data, skipped (first: %s)",
            source,
            len(names),
            what,
            ", ".join(names[:5]),
        )


@dataclass
class EdgeMask:
    """Which edges may exist, in the k x d regulator block (row = regulator, column = target).

    ``regulators`` are indices into ``genes``; edges leave only these. The sparse k x d
    matrices hold the exceptions: ``forbidden`` (never an edge), ``required`` (always in
    the support, unpenalised), ``sign`` (+1 / -1 constraint) and ``penalty`` (L1
    multiplier, explicit entries only; 1 elsewhere). Self-loops are always excluded.
    ``candidates``, when set, is the candidate screen's k x d pattern
    (:mod:`gene_dag.solver.screen`): only its edges (less the forbidden ones) are allowed.
    """

    genes: np.ndarray
    regulators: np.ndarray
    forbidden: sp.csr_matrix
    required: sp.csr_matrix
    sign: sp.csr_matrix
    penalty: sp.csr_matrix
    missing: dict = field(default_factory=dict)
    candidates: sp.csr_matrix | None = None

    @property
    def n_genes(self) -> int:
        """Number of genes (columns of the mask)."""
        return len(self.genes)

    @property
    def n_regulators(self) -> int:
        """Number of regulators (rows of the mask)."""
        return len(self.regulators)

    def allowed_block(self, columns: np.ndarray | slice | None = None) -> np.ndarray:
        """Dense boolean k x c block of allowed edges for the given target columns."""
        cols = np.arange(self.n_genes)[columns if columns is not None else slice(None)]
        if self.candidates is None:
            allowed = np.ones((self.n_regulators, len(cols)), dtype=bool)
        else:
            allowed = self.candidates[:, cols].toarray().astype(bool)
        allowed[self.forbidden[:, cols].nonzero()] = False
        position = {int(c): p for p, c in enumerate(cols)}
        for row, gene in enumerate(self.regulators):
            p = position.get(int(gene))
            if p is not None:
                allowed[row, p] = False
        return allowed

    def n_allowed(self) -> int:
        """Count the allowed edges (self-loops and forbidden edges excluded)."""
        if self.candidates is not None:
            return int(
                sum(
                    self.allowed_block(np.arange(a, min(a + 4096, self.n_genes))).sum()
                    for a in range(0, self.n_genes, 4096)
                )
            )
        self_loops = self.n_regulators  # every regulator is also a column
        return self.n_regulators * self.n_genes - self_loops - self.forbidden.nnz

    def penalty_block(self, columns: np.ndarray | None = None) -> np.ndarray | None:
        """Dense k x c L1 multipliers (0 on required edges), or None when all are 1."""
        if self.penalty.nnz == 0 and self.required.nnz == 0:
            return None
        cols = np.arange(self.n_genes) if columns is None else np.asarray(columns)
        position = np.full(self.n_genes, -1, dtype=np.int64)
        position[cols] = np.arange(len(cols))
        dense = np.ones((self.n_regulators, len(cols)), dtype=np.float64)
        for matrix, value in ((self.penalty, None), (self.required, 0.0)):
            coo = matrix.tocoo()  # stored entries, explicit zero weights included
            keep = position[coo.col] >= 0
            dense[coo.row[keep], position[coo.col[keep]]] = coo.data[keep] if value is None else value
        return dense

    def regulator_names(self) -> np.ndarray:
        """Return the regulators' gene names, in row order."""
        return self.genes[self.regulators]


def _regulator_rows(regulators: list[str], index: dict[str, int], source: str) -> tuple[np.ndarray, list[str]]:
    """Return the sorted gene indices of the regulators in the data, and the names not in it (reported)."""
    unknown = [g for g in regulators if g not in index]
    if regulators and len(unknown) == len(regulators):
        raise InputError(
            f"none of the {len(regulators)} regulators is a gene of the data "
            f"(first: {', '.join(unknown[:5])}); wrong gene identifiers?",
            source,
        )
    _report_unknown("regulator(s)", unknown, source)
    return np.array(sorted({index[g] for g in regulators if g in index}), dtype=np.int64), unknown


def _known_edges(edge_prior: pd.DataFrame | None, index: dict[str, int], source: str) -> tuple[pd.DataFrame, list[str]]:
    """Return the checked rows of the edge prior whose two genes are in the data, and the genes not in it."""
    if edge_prior is None:
        edge_prior = pd.DataFrame({"source": [], "target": [], "type": [], "weight": []})
    table = edge_prior.astype({"source": str, "target": str, "type": str, "weight": float})
    check_contradictions(table, source)
    known = table["source"].isin(index) & table["target"].isin(index)
    if len(table) and not (table["source"].isin(index) | table["target"].isin(index)).any():
        raise InputError(
            f"no gene named by the edge prior ({len(table)} rows) is a gene of the data; wrong gene identifiers?",
            source,
        )
    unknown_genes = sorted((set(table["source"]) | set(table["target"])) - set(index))
    _report_unknown("gene(s) named by the edge prior", unknown_genes, source)
    return table[known], unknown_genes


def _edge_matrices(
    table: pd.DataFrame, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Forbidden, required (boolean), sign (int8) and penalty-weight matrices of the prior's rows."""

    def matrix(kind: str, values: np.ndarray) -> sp.csr_matrix:
        sel = (table["type"] == kind).to_numpy() if kind else np.ones(len(table), dtype=bool)
        m = sp.coo_matrix((values[sel], (rows[sel], cols[sel])), shape=shape).tocsr()
        m.sum_duplicates()
        return m

    ones = np.ones(len(table))
    forbidden = matrix("forbidden", ones)
    required = matrix("required", ones)
    sign = matrix("positive", ones) - matrix("negative", ones)
    # one entry per edge: repeated rows agree (check_contradictions) and must not add up
    weighted = ((table["weight"] != 1.0) & ~table.duplicated(["source", "target", "weight"])).to_numpy()
    penalty = sp.coo_matrix(
        (table["weight"].to_numpy(dtype=float)[weighted], (rows[weighted], cols[weighted])), shape=shape
    ).tocsr()
    sign.data = np.sign(sign.data)
    sign.eliminate_zeros()
    forbidden.data[:] = 1
    required.data[:] = 1
    return (
        forbidden.astype(bool).tocsr(),
        required.astype(bool).tocsr(),
        sign.astype(np.int8).tocsr(),
        penalty,
    )


def build_mask(
    genes: list[str] | np.ndarray,
    regulators: list[str] | None = None,
    edge_prior: pd.DataFrame | None = None,
    *,
    source: str = "prior",
) -> EdgeMask:
    """Turn a regulator list and an edge prior table into an :class:`EdgeMask` over ``genes``.

    Genes the prior names that are not in ``genes`` are reported (count and first names)
    and skipped. A required edge out of a non-regulator adds that gene as a regulator.
    Raises InputError for fewer than 2 genes, contradictory rows (:func:`check_contradictions`),
    when no edge at all is allowed, or when the required edges contain a cycle.
    """
    genes = np.asarray(genes, dtype=str)
    if len(genes) < 2:
        raise InputError(f"{len(genes)} gene(s): no possible edge (a network needs at least 2 genes)")
    index = {g: i for i, g in enumerate(genes)}
    missing: dict[str, list[str]] = {}
    if regulators is None:
        reg_idx = np.arange(len(genes))
    else:
        reg_idx, missing["regulators"] = _regulator_rows(regulators, index, source)
    table, missing["edge_prior_genes"] = _known_edges(edge_prior, index, source)

    required_sources = {index[s] for s in table.loc[table["type"] == "required", "source"]}
    extra = sorted(required_sources - set(reg_idx.tolist()))
    if extra:
        log.info("%s: %d required edge source(s) added as regulators", source, len(extra))
        reg_idx = np.array(sorted(set(reg_idx.tolist()) | set(extra)), dtype=np.int64)
    row_of = {int(g): r for r, g in enumerate(reg_idx)}

    from_nonreg = ~table["source"].map(lambda s: index[s] in row_of)
    if from_nonreg.any():
        log.warning("%s: %d prior edge(s) leave a non-regulator, ignored", source, int(from_nonreg.sum()))
        table = table[~from_nonreg]
    rows = table["source"].map(lambda s: row_of[index[s]]).to_numpy(dtype=np.int64)
    cols = table["target"].map(index).to_numpy(dtype=np.int64)
    mask = EdgeMask(genes, reg_idx, *_edge_matrices(table, rows, cols, (len(reg_idx), len(genes))), missing)
    if len(reg_idx) == 0 or mask.n_allowed() <= 0:
        raise InputError("the prior allows no edge at all (no regulator in the data, or all edges forbidden)", source)
    _check_required_acyclic(mask, source)
    return mask


def _check_required_acyclic(mask: EdgeMask, source: str) -> None:
    """Check that the required edges form no cycle: they are kept whatever the data say."""
    if mask.required.nnz == 0:
        return
    from gene_dag.graph import is_dag

    d = mask.n_genes
    coo = mask.required.tocoo()
    graph = sp.csr_matrix((np.ones(coo.nnz), (mask.regulators[coo.row], coo.col)), shape=(d, d))
    if not is_dag(graph):
        raise InputError("the required edges contain a cycle; no DAG can hold them all", source)


def load_mask(
    genes: list[str] | np.ndarray,
    regulators_path: str | Path | None = None,
    prior_path: str | Path | None = None,
) -> EdgeMask:
    """Read the prior files (either may be None) and build the mask over ``genes``."""
    regulators = read_regulators(regulators_path) if regulators_path else None
    table = read_edge_prior(prior_path) if prior_path else None
    source = " + ".join(str(p) for p in (regulators_path, prior_path) if p) or "prior"
    return build_mask(genes, regulators, table, source=source)


def prior_report(mask: EdgeMask) -> dict:
    """Count for a report: regulators found, prior genes missing, constrained edges."""
    return {
        "n_genes": mask.n_genes,
        "n_regulators": mask.n_regulators,
        "n_allowed_edges": int(mask.n_allowed()),
        "n_forbidden": int(mask.forbidden.nnz),
        "n_required": int(mask.required.nnz),
        "n_sign_constrained": int(mask.sign.nnz),
        "n_reweighted": int(mask.penalty.nnz),
        "missing_regulators": list(mask.missing.get("regulators", [])),
        "missing_edge_prior_genes": list(mask.missing.get("edge_prior_genes", [])),
    }
