"""Reading every input format and writing every output atomically.

Inputs: ``.h5ad`` (in memory or backed), ``.loom``, ``.csv`` / ``.tsv`` (optionally
gzipped), 10x Genomics ``.h5`` files and Matrix Market folders (``matrix.mtx[.gz]`` with
``features.tsv[.gz]`` or ``genes.tsv`` and ``barcodes.tsv[.gz]``, as Cell Ranger writes
them; read with scanpy's readers) and the demo datasets bundled with scanpy (``scanpy:pbmc68k_reduced``,
``scanpy:krumsiek11``). Whatever the format, the result is an AnnData with cells as
``obs``, genes as ``var`` and the chosen values in ``X``. Bad input raises
:class:`~gene_dag.errors.InputError` with a one-line message naming the file.

Outputs go through :func:`atomic_write`, so a failed or interrupted step never leaves
a partial file where Snakemake would take it for a finished one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from gene_dag.errors import ConfigError, InputError

if TYPE_CHECKING:
    import anndata
    import pandas as pd

log = logging.getLogger(__name__)

#: Bundled scanpy datasets that need no download.
BUNDLED_DATASETS = ("pbmc68k_reduced", "krumsiek11")
ORIENTATIONS = ("cells_x_genes", "genes_x_cells")
_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".csv.gz": ",", ".tsv.gz": "\t"}
#: 10x Genomics formats: a Cell Ranger .h5 file, or a folder holding matrix.mtx[.gz].
TENX_H5, TENX_MTX = ".h5", "mtx folder"
#: Values per block when scanning a matrix for NaN/Inf (64 MiB of float32).
_SCAN_BLOCK_VALUES = 1 << 24


def _format_of(path: Path) -> str:
    """Return the format key of a file name: '.h5ad', '.loom', '.csv', '.tsv.gz', ... ('' if unknown)."""
    name = path.name.lower()
    for suffix in (".h5ad", ".loom", TENX_H5, *_TABLE_SUFFIXES):
        if name.endswith(suffix):
            return suffix
    return ""


def one_line(exc: BaseException) -> str:
    """Write an exception as one line, 'Type: message' (for InputError messages)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def first_few(items: Sequence[Any] | np.ndarray, n: int = 5) -> str:
    """Comma-separated first ``n`` items, with '...' when there are more (for messages)."""
    items = list(items)
    text = ", ".join(str(x) for x in items[:n])
    return text + (", ..." if len(items) > n else "")


# ---------------------------------------------------------------------------- reading


def read_expression(
    source: str | os.PathLike,
    layer: str | None = None,
    *,
    backed: bool | str = False,
    orientation: str = "cells_x_genes",
    validate: bool = True,
) -> anndata.AnnData:
    """Read an expression matrix as AnnData (cells x genes, chosen values in ``X``).

    Parameters
    ----------
    source
        ``.h5ad``, ``.loom``, ``.csv``/``.tsv`` (``.gz`` allowed) or
        ``"scanpy:pbmc68k_reduced"`` / ``"scanpy:krumsiek11"``.
    layer
        ``None``: ``X``. A name: that layer (h5ad or loom layer) is put in ``X``.
        ``"raw"``: ``adata.raw.X`` with the raw gene names as ``var``.
    backed
        ``True`` or ``"r"``: open an ``.h5ad`` read-only in backed mode; ``X`` stays on
        disk. Backed mode streams only ``X``: combining it with ``layer`` raises
        :class:`ConfigError` (anndata reads layers into memory in backed mode and
        cannot put one in ``X`` without writing to the file); to stream a layer from
        disk use :func:`open_h5ad_matrix` or ``stats.compute_stats(path, layer=...)``.
        For other formats backed mode is ignored with a warning.
    orientation
        Tables only: ``"cells_x_genes"`` (rows are cells, the default) or
        ``"genes_x_cells"``. The first column holds row names, the header column names.
    validate
        Run :func:`validate_expression` (empty matrix, duplicate gene names, NaN/Inf).
        For a large backed file the value check is a full pass over the data;
        ``stats.compute_stats`` skips it because it checks every block it streams.
    """
    if orientation not in ORIENTATIONS:
        raise ConfigError(f"orientation must be one of {ORIENTATIONS}, not {orientation!r}")
    mode = _backed_mode(backed)
    label = str(source)
    if label.startswith("scanpy:"):
        adata = _read_bundled(label)
        mode = None  # bundled datasets are small and live in memory
    else:
        path = Path(source)
        if not path.exists():
            raise InputError("file not found", path)
        if path.is_dir() and not is_mtx_folder(path):
            raise InputError(
                "is a directory without matrix.mtx or matrix.mtx.gz, expected an expression file "
                "or a 10x Matrix Market folder",
                path,
            )
        fmt = TENX_MTX if path.is_dir() else _format_of(path)
        if not fmt:
            raise InputError(
                f"unsupported format {path.suffix or '(no extension)'!r}: expected .h5ad, "
                ".loom, .csv, .tsv, a 10x .h5 file or Matrix Market folder, or scanpy:<name> "
                "for a bundled dataset",
                path,
            )
        if mode and fmt != ".h5ad":
            log.warning("%s: backed mode is only for .h5ad; reading into memory", path)
            mode = None
        if mode and layer is not None:
            raise ConfigError(
                f"layer={layer!r} cannot be combined with backed mode (backed mode streams "
                "only X); read without backed, or stream the layer with "
                "gene_dag.stats.compute_stats(path, layer=...)"
            )
        if (fmt in _TABLE_SUFFIXES or fmt in (TENX_H5, TENX_MTX)) and layer is not None:
            raise ConfigError(f"layer={layer!r} given, but {path.name} ({fmt}) has no layers")
        adata = _read_file(path, fmt, mode, orientation)
    if layer is not None:
        adata = _with_layer_in_x(adata, layer, label)
    if validate:
        validate_expression(adata, label)
    log.info(
        "read %s: %d cells x %d genes%s%s",
        label,
        adata.n_obs,
        adata.n_vars,
        f", layer {layer}" if layer else "",
        ", backed" if mode else "",
    )
    return adata


def _backed_mode(backed: bool | str) -> str | None:  # noqa: FBT001 (the value it normalises, not a flag)
    """Normalise the ``backed`` argument to anndata's mode string (read-only) or None."""
    if backed is False or backed is None:
        return None
    if backed is True or backed == "r":
        return "r"
    raise ConfigError(f"backed must be False, True or 'r' (read-only), not {backed!r}")


def _read_bundled(label: str) -> anndata.AnnData:
    """Load a dataset that ships with scanpy (no download)."""
    name = label.split(":", 1)[1]
    if name not in BUNDLED_DATASETS:
        raise InputError(
            f"unknown bundled dataset {name!r}; available: " + ", ".join(f"scanpy:{n}" for n in BUNDLED_DATASETS),
            label,
        )
    import scanpy as sc

    return getattr(sc.datasets, name)()


def _read_file(path: Path, fmt: str, mode: str | None, orientation: str) -> anndata.AnnData:
    """Dispatch on the format; every reader failure becomes a one-line InputError."""
    import anndata as ad

    try:
        if fmt == ".h5ad":
            return ad.read_h5ad(path, backed=mode)
        if fmt == ".loom":
            return _read_loom(path)
        if fmt in (TENX_H5, TENX_MTX):
            return _read_10x(path, fmt)
        return _read_table(path, _TABLE_SUFFIXES[fmt], orientation)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure means a bad file for the user
        raise InputError(f"cannot read as a {fmt} file ({one_line(exc)})", path) from exc


def is_mtx_folder(path: Path) -> bool:
    """Tell whether a folder holds a 10x Matrix Market matrix (``matrix.mtx`` or ``matrix.mtx.gz``)."""
    return path.is_dir() and any((path / name).is_file() for name in ("matrix.mtx", "matrix.mtx.gz"))


def _read_10x(path: Path, fmt: str) -> anndata.AnnData:
    """Read a Cell Ranger .h5 file or Matrix Market folder via scanpy; gene symbols as names, made unique."""
    import scanpy as sc

    adata = (
        sc.read_10x_h5(path) if fmt == TENX_H5 else sc.read_10x_mtx(path, var_names="gene_symbols", make_unique=False)
    )
    repeated = adata.var_names[adata.var_names.duplicated()].unique()
    if len(repeated):
        # 10x references repeat some symbols (one per gene ID); keep every gene, renamed -1, -2, ...
        log.warning(
            "%s: %d gene symbol(s) occur more than once (first few: %s); made unique with "
            "var_names_make_unique (SYMBOL-1, ...); the gene IDs are in var['gene_ids']",
            path,
            len(repeated),
            first_few(repeated),
        )
        adata.var_names_make_unique()
    return adata


def _read_loom(path: Path) -> anndata.AnnData:
    """Loom via anndata: the main matrix is X, named loom layers are layers."""
    import anndata as ad
    import h5py

    with h5py.File(path, "r") as f:
        rows = set(f["row_attrs"]) if "row_attrs" in f else set()
        cols = set(f["col_attrs"]) if "col_attrs" in f else set()
    # loompy's convention (Gene / CellID) first, then the names anndata.write_loom uses
    var_key = next((k for k in ("Gene", "var_names", "gene_names") if k in rows), "Gene")
    obs_key = next((k for k in ("CellID", "obs_names", "cell_names") if k in cols), "CellID")
    return ad.io.read_loom(path, sparse=True, X_name="", var_names=var_key, obs_names=obs_key)


def _read_table(path: Path, sep: str, orientation: str) -> anndata.AnnData:
    """CSV/TSV: first column row names, header column names, numbers elsewhere."""
    import anndata as ad
    import pandas as pd

    try:
        df = pd.read_csv(path, sep=sep, index_col=0)
    except UnicodeDecodeError:
        raise InputError(
            f"line {_first_undecodable_line(path)}: not UTF-8 text; save the table as UTF-8", path
        ) from None
    # pandas renames repeated header names (A, A.1); keep them as written so that
    # duplicate gene names are reported, not silently renamed
    header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    if header.shape[1] == df.shape[1] + 1:
        df.columns = header.iloc[0, 1:].to_numpy()
    non_numeric = [
        c for c, t in zip(df.columns, df.dtypes, strict=True) if len(df) and not pd.api.types.is_numeric_dtype(t)
    ]
    if non_numeric:
        raise InputError(
            f"{len(non_numeric)} column(s) hold non-numeric values (first few: {first_few(non_numeric)})",
            path,
        )
    if orientation == "genes_x_cells":
        df = df.T
    return ad.AnnData(
        X=df.to_numpy(dtype=np.float64),
        obs=pd.DataFrame(index=pd.Index(df.index.astype(str), name=None)),
        var=pd.DataFrame(index=pd.Index(df.columns.astype(str), name=None)),
    )


def _first_undecodable_line(path: Path) -> int:
    """Return the 1-based number of the first line of a (possibly gzipped) text file that is not UTF-8."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def layer_matrix(
    adata: anndata.AnnData, layer: str | None, source: str | os.PathLike | None = None
) -> tuple[Any, pd.Index]:
    """Return the matrix and gene names that ``layer`` selects: X (None), ``"raw"`` or a layer.

    Returns ``(matrix, gene_names)``; for a backed AnnData the matrix of ``X`` or
    ``raw`` stays on disk. Raises InputError when there is no such layer.
    """
    if layer is None:
        if adata.X is None:
            raise InputError("no expression matrix (X is empty)", source)
        return adata.X, adata.var_names
    if layer == "raw":
        if adata.raw is None:
            raise InputError("layer 'raw' requested but there is no raw data (adata.raw)", source)
        return adata.raw.X, adata.raw.var_names
    if layer not in adata.layers:
        available = ", ".join(["raw"] * (adata.raw is not None) + list(adata.layers)) or "none"
        raise InputError(f"layer {layer!r} not found (available: {available})", source)
    return adata.layers[layer], adata.var_names


def _with_layer_in_x(adata: anndata.AnnData, layer: str, source: str) -> anndata.AnnData:
    """Return the AnnData with the chosen layer in X (raw: the raw genes as var); no data copy."""
    matrix, _ = layer_matrix(adata, layer, source)
    if layer == "raw":
        return adata.raw.to_adata()
    adata.X = matrix
    return adata


@contextlib.contextmanager
def open_h5ad_matrix(path: str | os.PathLike, layer: str | None = None) -> Iterator[tuple[Any, pd.Index]]:
    """Open one matrix of an ``.h5ad`` file on disk, loading nothing else but gene names.

    Yields ``(matrix, gene_names)``: ``matrix`` is an ``h5py.Dataset`` (dense) or an
    anndata backed CSR dataset, whose row slices are read from disk on demand.
    ``layer`` as in :func:`read_expression` (None: X, ``"raw"``: raw/X, else
    ``layers/<name>``). Unlike ``anndata.read_h5ad(backed="r")``, layers are not read
    into memory. CSC matrices cannot be streamed by cells and raise InputError.
    """
    import anndata as ad
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if _format_of(path) != ".h5ad":
        raise InputError("expected an .h5ad file to stream from disk", path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"cannot read as a .h5ad file ({one_line(exc)})", path) from exc
    with f:
        key = "X" if layer is None else "raw/X" if layer == "raw" else f"layers/{layer}"
        var_key = "raw/var" if layer == "raw" else "var"
        if key not in f or var_key not in f:
            available = ["raw"] * ("raw/X" in f) + (list(f["layers"]) if "layers" in f else [])
            what = "no expression matrix X" if layer is None else f"layer {layer!r} not found"
            raise InputError(f"{what} (available layers: {', '.join(available) or 'none'})", path)
        elem = f[key]
        if isinstance(elem, h5py.Dataset):
            matrix = elem
        else:
            encoding = elem.attrs.get("encoding-type", "")
            if encoding != "csr_matrix":
                raise InputError(
                    f"{key} is stored as {encoding or 'an unknown encoding'}; streaming cells "
                    "needs a dense or CSR matrix (rewrite it as CSR)",
                    path,
                )
            matrix = ad.io.sparse_dataset(elem)
        genes = ad.io.read_elem(f[var_key]).index
        yield matrix, genes


def iter_row_blocks(matrix: Any, block_rows: int) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(start, stop, block)`` for consecutive row blocks of ``matrix``.

    ``matrix``: a dense array, a scipy sparse matrix (CSR for speed), an
    ``h5py.Dataset`` or an anndata backed CSR dataset. A block is a dense array or a
    CSR matrix. Nothing is densified.
    """
    n = matrix.shape[0]
    block_rows = max(1, int(block_rows))
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        block = matrix[start:stop]
        if sp.issparse(block) and block.format != "csr":
            block = sp.csr_matrix(block)
        yield start, stop, block


def stored_values_per_row(matrix: Any) -> float:
    """Average number of stored values per row (every column for a dense matrix)."""
    n, d = matrix.shape
    if sp.issparse(matrix):
        return matrix.nnz / max(n, 1)
    group = getattr(matrix, "group", None)  # anndata backed CSR dataset
    if group is not None and "indptr" in group:
        return float(group["indptr"][-1]) / max(n, 1)
    return float(d)


def check_finite_block(
    block: Any,
    start: int,
    genes: Sequence[str],
    source: str | os.PathLike | None,
    cells: Sequence[str] | None = None,
) -> None:
    """Raise InputError naming the first NaN or Inf in ``block`` (whose rows begin at ``start``).

    For sparse blocks only the stored values are checked (implicit zeros are finite).
    """
    values = block.data if sp.issparse(block) else np.asarray(block)
    if values.dtype == bool or not np.issubdtype(values.dtype, np.number):
        raise InputError(f"expression values have non-numeric dtype {values.dtype}", source)
    if np.issubdtype(values.dtype, np.integer):
        return
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    if sp.issparse(block):
        pos = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(block.indptr, pos, side="right") - 1)
        col = int(block.indices[pos])
        value = block.data[pos]
    else:
        row, col = (int(i) for i in np.argwhere(bad)[0])
        value = values[row, col]
    kind = "NaN" if np.isnan(value) else "infinite"
    cell = f"cell {str(cells[start + row])!r}" if cells is not None else f"row {start + row}"
    raise InputError(
        f"{kind} values in the expression matrix (first at {cell}, gene {str(genes[col])!r})",
        source,
    )


def validate_expression(adata: anndata.AnnData, source: str | os.PathLike) -> None:
    """Raise a one-line InputError naming ``source`` if ``adata`` is unusable.

    Checks: an X matrix exists and is not empty (0 cells or 0 genes); there are at least
    2 genes and 2 cells (a network needs them); gene names are unique and hold no control
    character (see :func:`validate_gene_names`); there are no NaN or Inf values. Values
    are scanned in row blocks, so a backed file stays on disk and a sparse matrix is
    never densified (only its stored values are looked at).
    """
    if adata.X is None:
        raise InputError("no expression matrix (X is empty)", source)
    n, d = adata.shape
    if n == 0 or d == 0:
        raise InputError(f"empty expression matrix: {n} cells x {d} genes", source)
    if d < 2 or n < 2:
        what = f"{d} gene: no possible edge" if d < 2 else f"{n} cell: no variance to learn from"
        raise InputError(f"{what} (a network needs at least 2 genes and 2 cells)", source)
    validate_gene_names(adata.var_names, source)
    rows = max(1, int(_SCAN_BLOCK_VALUES // max(stored_values_per_row(adata.X), 1.0)))
    genes, cells = adata.var_names, adata.obs_names
    for start, _, block in iter_row_blocks(adata.X, rows):
        check_finite_block(block, start, genes, source, cells)


def bad_character(name: str) -> str | None:
    """Return the first character of ``name`` that breaks TSV or XML (GraphML) output, or None.

    Those are control characters (tab, newline, NUL, ...), lone surrogates and the
    XML non-characters U+FFFE / U+FFFF.
    """
    for char in name:
        if unicodedata.category(char) in ("Cc", "Cs") or char in "\ufffe\uffff":
            return char
    return None


def check_name(name: str, source: str | os.PathLike | None, what: str = "gene name", line: int | None = None) -> None:
    """Raise InputError when ``name`` holds a character that :func:`bad_character` finds."""
    char = bad_character(name)
    if char is not None:
        where = f"line {line}: " if line is not None else ""
        raise InputError(
            f"{where}{what} {name!r} holds the control character {char!r}, which tables and GraphML "
            "cannot hold; rename it",
            source,
        )


def validate_gene_names(names: Sequence[str] | pd.Index, source: str | os.PathLike | None) -> None:
    """Raise InputError naming ``source`` for duplicate gene names or names with control characters."""
    import pandas as pd

    names = pd.Index(names).astype(str)
    if (names.str.strip() == "").any():
        raise InputError(f"an empty gene name (gene {int(np.flatnonzero(names.str.strip() == '')[0]) + 1})", source)
    dup = names[names.duplicated()].unique()
    if len(dup):
        raise InputError(
            f"{len(dup)} duplicate gene name(s) (first few: {first_few(dup)}); make them "
            "unique, e.g. with adata.var_names_make_unique()",
            source,
        )
    for name in names:
        check_name(name, source)


def read_text(path: str | os.PathLike, what: str = "text file") -> str:
    """Read the text of a user's file, decoded as UTF-8 (a byte-order mark is dropped).

    Raises InputError naming the file: not found, a directory, unreadable, or not
    UTF-8 (with the line of the first undecodable byte).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found (the {what})", path)
    if path.is_dir():
        raise InputError(f"is a directory, expected a {what}", path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the {what} ({one_line(exc)})", path) from exc
    for magic, kind in ((b"\x1f\x8b", "gzip-compressed; decompress it"), (b"\x89HDF", "an HDF5 file (.h5ad?)")):
        if raw.startswith(magic):
            raise InputError(f"is {kind}, but the {what} must be plain text", path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the {what} as UTF-8", path
        ) from None


def read_lines(path: str | os.PathLike, what: str = "text file", *, strip: bool = True) -> list[tuple[int, str]]:
    """``(line number, content)`` of each line of a text input that has content.

    Line numbers start at 1 and count every line of the file, as an editor shows them.
    ``#`` starts a comment; lines with nothing else but whitespace are skipped. ``strip``:
    remove surrounding whitespace (False keeps it, so that a table's empty first or last
    field is not lost).
    """
    lines = []
    for number, line in enumerate(read_text(path, what).split("\n"), start=1):
        content = line.split("#", 1)[0]
        if content.strip():
            lines.append((number, content.strip() if strip else content))
    return lines


def read_names(path: str | os.PathLike, what: str = "gene list") -> list[str]:
    """Names, one per line (``#`` comments, blank lines skipped), each checked with :func:`check_name`.

    Duplicates are dropped (first kept). An empty list is an InputError naming the file.
    """
    names = []
    for number, name in read_lines(path, what):
        check_name(name, path, "name", number)
        names.append(name)
    if not names:
        raise InputError(f"{what} names no gene", path)
    return list(dict.fromkeys(names))


def read_gene_list(path: str | os.PathLike) -> list[str]:
    """Gene names, one per line; '#' starts a comment, blank lines are skipped, whitespace stripped."""
    return read_names(path, "gene list")


def read_network(path: str | os.PathLike, key: str = "gene_dag"):
    """Read a learned network as a ``networkx.DiGraph``: gene names on nodes, weights on edges.

    Parameters
    ----------
    path
        A ``network.h5ad`` (``varp[key]``, row = regulator, column = target; every gene
        becomes a node, with ``out_degree``, ``in_degree`` and ``has_targets``) or an
        ``edges.tsv`` (``source``, ``target``, ``weight`` and optional further numeric
        columns such as ``stability``; only genes with edges become nodes; of a table
        with an ``in_network`` column, as gene-dag writes it, only the network's edges,
        not the ranked candidates below the threshold).
    key
        ``varp`` key of an ``.h5ad`` network.

    Returns
    -------
    A DiGraph whose edges carry ``weight``, ``abs_weight`` and ``sign`` (``"+"``/``"-"``),
    and ``stability`` where the network has it (``varp[key + "_stability"]`` or a
    ``stability`` column).
    """
    import pandas as pd

    from gene_dag.export import graph, network_matrix

    path = Path(path)
    if not path.is_file():
        raise InputError("file not found" if not path.exists() else "not a file", path)
    if _format_of(path) == ".h5ad":
        adata = read_expression(path, backed=True, validate=False)
        try:
            W = network_matrix(adata, key, str(path))
            G = graph(W, adata.var_names)
            skey = f"{key}_stability"
            if skey in adata.varp:
                S = sp.csr_matrix(adata.varp[skey])
                for u, v, attrs in G.edges(data=True):
                    attrs["stability"] = float(S[adata.var_names.get_loc(u), adata.var_names.get_loc(v)])
        finally:
            adata.file.close()
        return G
    from io import StringIO

    text = read_text(path, "edge table")  # UTF-8 with a BOM dropped, like every text input
    try:
        table = pd.read_csv(StringIO(text), sep="\t", dtype={"source": str, "target": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read as a tab-separated edge table ({one_line(exc)})", path) from exc
    missing = [c for c in ("source", "target", "weight") if c not in table.columns]
    if missing:
        raise InputError(
            f"edge table lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, table.columns))})", path
        )
    if "in_network" in table.columns:
        flags = table.pop("in_network").astype(str).str.strip().str.lower()
        if not flags.isin(["true", "false"]).all():
            raise InputError("column 'in_network' holds values other than True and False", path)
        table = table[flags.to_numpy() == "true"]
    extra = [c for c in table.columns if c not in ("source", "target")]
    for col in extra:
        values = pd.to_numeric(table[col], errors="coerce")
        if values.isna().any() or not np.isfinite(values).all():
            raise InputError(f"column {col!r} holds non-numeric or non-finite values", path)
        table[col] = values.astype(float)
    import networkx as nx

    G = nx.DiGraph()
    for row in table.to_dict("records"):
        source, target, w = row.pop("source"), row.pop("target"), row["weight"]
        G.add_edge(source, target, **row, abs_weight=abs(w), sign="+" if w > 0 else "-")
    return G


# ---------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success.

    The temporary name is hidden (leading dot), unique, and ends with the suffix of
    ``path`` so writers that check the extension work. It is not created here (the
    writer creates it, with the usual permissions). On any exception it is removed
    and ``path`` is left as it was. Parent directories are created. An OSError (no such
    folder, no permission, disk full) becomes an InputError naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create its folder ({one_line(exc)})", path) from exc
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{path}: the writer produced no file")
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise InputError(f"cannot write it ({one_line(exc)})", path) from exc
        raise


#: File that marks a directory as written by gene-dag: only such a directory is ever replaced.
OUTDIR_MARKER = ".gene-dag-outdir"


def _inside(path: Path, directory: Path) -> bool:
    """Tell whether ``path`` is ``directory`` or lies below it (both resolved)."""
    return path == directory or directory in path.parents


def _input_paths(inputs: Sequence[str | os.PathLike | None]) -> list[tuple[str, Path]]:
    """``(as given, resolved)`` of each input file (None and bundled datasets left out)."""
    return [(str(s), Path(s).resolve()) for s in inputs if s is not None and not str(s).startswith("scanpy:")]


def check_output_path(path: str | os.PathLike, inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Raise InputError unless a file can be written at ``path`` without harming anything.

    Refused: an existing directory; a path that is (or links to) one of ``inputs``
    (writing it would replace the input); a path whose nearest existing ancestor is
    not a directory or not writable. Nothing is created. Returns ``path`` as a Path.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError("is a directory, expected a file to write", path)
    for given, resolved in _input_paths(inputs):
        if resolved == path.resolve():
            raise InputError(f"is also the input {given}; writing it would replace the input", path)
    _check_writable_parent(path)
    return path


def check_outputs(outputs: Sequence[str | os.PathLike | None], inputs: Sequence[str | os.PathLike | None] = ()) -> None:
    """:func:`check_output_path` for every output (None skipped); two outputs naming one file are refused too."""
    seen: set[Path] = set()
    for out in outputs:
        if out is None:
            continue
        check_output_path(out, inputs)
        key = Path(out).resolve()
        if key in seen:
            raise InputError("is named for two different outputs", out)
        seen.add(key)


def _check_writable_parent(path: Path) -> None:
    ancestor = Path(os.path.abspath(path)).parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot be created: {ancestor} is not a directory", path)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot be written: {ancestor} is not writable", path)


def check_output_dir(path: str | os.PathLike, inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Raise InputError unless ``path`` may be (re)placed by an output directory of gene-dag.

    Allowed: a path that does not exist, an empty directory, or a directory that holds
    :data:`OUTDIR_MARKER` (one that gene-dag wrote). Refused, with nothing touched: a
    file or symbolic link, any other non-empty directory, a directory holding one of
    ``inputs``, and the current directory or one above it. Returns the absolute path.
    """
    given = path
    path = Path(os.path.abspath(path))
    if path.is_symlink():
        raise InputError("is a symbolic link; give the directory it points to", given)
    if path.exists() and not path.is_dir():
        raise InputError("exists and is not a directory", given)
    if _inside(Path.cwd().resolve(), path.resolve()):
        raise InputError("is the current directory or one above it; give a new directory for the output", given)
    for source, resolved in _input_paths(inputs):
        if _inside(resolved, path.resolve()):
            raise InputError(f"holds the input {source}; give a new directory for the output", given)
    if path.is_dir() and not (path / OUTDIR_MARKER).is_file() and any(path.iterdir()):
        raise InputError(
            f"exists, is not empty and was not written by gene-dag (no {OUTDIR_MARKER} file in it); "
            "nothing was removed: give a new directory, or empty this one yourself",
            given,
        )
    _check_writable_parent(path)
    return path


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike, inputs: Sequence[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Yield a fresh hidden directory next to ``path``; it replaces ``path`` only on success.

    ``path`` is checked first with :func:`check_output_dir` (so a directory that gene-dag
    did not write is never removed), and again just before the swap. The new directory
    holds :data:`OUTDIR_MARKER`. On any exception the temporary directory is removed and
    ``path`` is left as it was.
    """
    path = check_output_dir(path, inputs)
    created = [p for p in path.parents if not p.exists()]  # removed again on failure
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise InputError(f"cannot create the output directory ({one_line(exc)})", path) from exc
    try:
        (tmp / OUTDIR_MARKER).write_text("written by gene-dag: rerunning replaces this whole directory\n")
        yield tmp
        check_output_dir(path, inputs)
        old = None
        if path.is_dir() and any(path.iterdir()):
            old = path.with_name(f".{path.name}.{secrets.token_hex(4)}.old")
            os.replace(path, old)  # has the marker: checked above
        elif path.is_dir():
            path.rmdir()
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in created:
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


def write_h5ad(adata: anndata.AnnData, path: str | os.PathLike) -> None:
    """Write ``adata`` to ``.h5ad`` atomically."""
    with atomic_write(path) as tmp:
        adata.write_h5ad(tmp)


def _json_default(obj: Any) -> Any:
    """JSON for numpy scalars and arrays, paths and sets."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write JSON (sorted keys, indent 2, numpy scalars and arrays converted) atomically."""
    write_text(json.dumps(obj, sort_keys=True, indent=2, default=_json_default) + "\n", path)


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write text (UTF-8) atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_table(df: pd.DataFrame, path: str | os.PathLike, *, index: bool = False) -> None:
    """Write a DataFrame as TSV atomically (a ``.gz`` suffix gzips it)."""
    with atomic_write(path) as tmp:
        df.to_csv(tmp, sep="\t", index=index)
