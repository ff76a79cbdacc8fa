"""Plots in scanpy's style: the network, its degrees, intervention effects, knockouts, convergence.

Every function takes the AnnData first and keyword-only options, draws with matplotlib
and returns the Axes. ``save`` writes the figure to that path (the format follows the
suffix: ``.png``, ``.pdf``, ``.svg``) and closes it; ``show=True`` calls
``plt.show()``; by default the figure is shown only when neither ``save`` nor ``ax`` is
given and matplotlib runs interactively.

>>> gene_dag.pl.network(adata, n_edges=50, save="network.png")
>>> gene_dag.pl.network(adata, genes=["SPI1"], depth=2)
>>> gene_dag.pl.effects(adata, "SPI1")
>>> gene_dag.pl.knockout(adata, ["SPI1"], groupby="bulk_labels")
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

log = logging.getLogger(__name__)

__all__ = ["network", "degree", "effects", "knockout", "convergence"]

POSITIVE = "#c0392b"  # activation: red
NEGATIVE = "#2e6fb7"  # repression: blue
NEUTRAL = "#7f7f7f"


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=size)
    return ax


def _finish(ax: Axes, *, show: bool | None, save: str | Path | None, own_figure: bool) -> Axes:
    """Save and/or show the figure like scanpy does; return the Axes."""
    plt = _pyplot()
    fig = ax.figure
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=150, bbox_inches="tight")
    if show is None:
        import matplotlib

        show = save is None and own_figure and matplotlib.is_interactive()
    if show:
        plt.show()
    elif save is not None and own_figure:
        plt.close(fig)
    return ax


def _note(ax: Axes, text: str) -> None:
    """Write ``text`` in the middle of an axes without a plot (there is nothing to draw)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.axis("off")


def _check_count(name: str, value: int, low: int = 1) -> None:
    from gene_dag.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, not {value!r}")


def _network(adata: AnnData, key: str) -> sp.csr_matrix:
    from gene_dag.tl import network

    return network(adata, key)


def _edges(adata: AnnData, W: sp.csr_matrix, stability: sp.csr_matrix | None) -> pd.DataFrame:
    coo = W.tocoo()
    genes = np.asarray(adata.var_names, dtype=str)
    table = pd.DataFrame({"i": coo.row, "j": coo.col, "weight": coo.data})
    table["source"], table["target"] = genes[coo.row], genes[coo.col]
    if stability is not None:
        table["stability"] = np.asarray(stability[coo.row, coo.col]).ravel()
    table["abs"] = table["weight"].abs()
    return table.sort_values(["abs", "source", "target"], ascending=[False, True, True], ignore_index=True)


def _select_edges(adata: AnnData, table: pd.DataFrame, genes: Sequence[str] | None, depth: int, n_edges: int):
    """Select the top ``n_edges`` edges overall, or of the neighbourhood (``depth`` steps either way) of ``genes``."""
    if genes is None:
        return table.head(n_edges)
    import networkx as nx

    from gene_dag.tl import gene_indices

    gene_indices(adata, genes)
    G = nx.Graph()
    G.add_nodes_from(genes)
    G.add_edges_from(zip(table["source"], table["target"], strict=True))
    near = set()
    for g in genes:
        near |= set(nx.single_source_shortest_path_length(G, g, cutoff=depth))
    inside = table["source"].isin(near) & table["target"].isin(near)
    return table[inside].head(n_edges)


def _layers(nodes: list[str], edges: pd.DataFrame) -> dict[str, tuple[int, float]]:
    """(layer, position in layer) of every node: longest-path layers, barycentre ordering within them."""
    import networkx as nx

    G = nx.DiGraph()
    G.add_nodes_from(nodes)
    G.add_edges_from(zip(edges["source"], edges["target"], strict=True))
    layer = {}
    for n in nx.topological_sort(G):
        layer[n] = max((layer[p] + 1 for p in G.predecessors(n)), default=0)
    n_layers = max(layer.values(), default=0) + 1
    columns = [sorted(n for n in nodes if layer[n] == k) for k in range(n_layers)]
    pos = {n: float(i) for col in columns for i, n in enumerate(col)}
    for _ in range(4):  # a few barycentre sweeps reduce crossings
        for k in range(1, n_layers):
            bary = {n: np.mean([pos[p] for p in G.predecessors(n)]) for n in columns[k]}
            columns[k].sort(key=lambda n: (bary[n], n))
            pos.update({n: float(i) for i, n in enumerate(columns[k])})
        for k in range(n_layers - 2, -1, -1):
            bary = {n: np.mean([pos[s] for s in G.successors(n)] or [pos[n]]) for n in columns[k]}
            columns[k].sort(key=lambda n: (bary[n], n))
            pos.update({n: float(i) for i, n in enumerate(columns[k])})
    tallest = max(len(c) for c in columns)
    return {n: (layer[n], (tallest - len(col)) / 2 + i) for col in columns for i, n in enumerate(col)}


def _half_widths(ax: Axes, boxes: dict) -> dict[str, float]:
    """Half the width of each label box in data units (measured on a first draw)."""
    canvas = ax.figure.canvas
    renderer = canvas.get_renderer() if hasattr(canvas, "get_renderer") else ax.figure._get_renderer()
    to_data = ax.transData.inverted()
    half = {}
    for name, text in boxes.items():
        text.draw(renderer)  # sizes the box around the text
        ext = text.get_bbox_patch().get_window_extent(renderer)
        (x0, _), (x1, _) = to_data.transform([(ext.x0, ext.y0), (ext.x1, ext.y1)])
        half[name] = abs(x1 - x0) / 2
    return half


def _draw_gene_boxes(ax: Axes, place: dict[str, tuple[float, float]], genes: Sequence[str] | None) -> dict:
    """One label box per gene at its place; the genes asked for are highlighted."""
    boxes = {}
    for n, (x, y) in place.items():
        focus = genes is not None and n in genes
        boxes[n] = ax.text(
            x, y, n, ha="center", va="center", fontsize=8, zorder=3,
            fontweight="bold" if focus else "normal",
            bbox=dict(boxstyle="round,pad=0.25", fc="#fff3c4" if focus else "white",
                      ec="#333333", lw=1.2 if focus else 0.6),
        )  # fmt: skip
    return boxes


def _draw_arrows(
    ax: Axes, edges: pd.DataFrame, place: dict, half: dict[str, float], *, wmax: float, stable: bool
) -> None:
    """One arrow per edge: colour by sign, width by |weight|, opacity by stability when ``stable``."""
    for e in edges.itertuples(index=False):
        (x0, y0), (x1, y1) = place[e.source], place[e.target]
        alpha = 0.25 + 0.75 * float(np.clip(e.stability, 0, 1)) if stable else 0.85
        span = x1 - x0
        # causes are always in an earlier column: leave the right side of the cause's box,
        # arrive at the left side of the target's box (the arrowhead stays visible)
        ax.annotate(
            "", xy=(x1 - half[e.target], y1), xytext=(x0 + half[e.source], y0), zorder=2,
            arrowprops=dict(
                arrowstyle="-|>", mutation_scale=10, color=POSITIVE if e.weight > 0 else NEGATIVE,
                lw=0.6 + 2.6 * e.abs / wmax, alpha=alpha, shrinkA=0, shrinkB=1,
                connectionstyle=f"arc3,rad={0.12 * (span - 1) if span > 1 else 0.0}",
            ),
        )  # fmt: skip


def _network_legend(ax: Axes, *, wmax: float, stable: bool) -> None:
    """Legend of pl.network: sign colours, three widths, and the opacity when ``stable``."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=POSITIVE, lw=2, label="activation (weight > 0)"),
        Line2D([], [], color=NEGATIVE, lw=2, label="repression (weight < 0)"),
    ]
    for frac in (1.0, 0.5, 0.1):
        handles.append(Line2D([], [], color=NEUTRAL, lw=0.6 + 2.6 * frac, label=f"|weight| = {frac * wmax:.2g}"))
    if stable:
        handles.append(Line2D([], [], color=NEUTRAL, lw=2, alpha=0.3, label="fainter = less stable edge"))
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        frameon=False,
        title="edge (arrow: cause → target)",
        title_fontsize=8,
    )


def network(
    adata: AnnData,
    *,
    key: str = "gene_dag",
    genes: Sequence[str] | str | None = None,
    depth: int = 1,
    n_edges: int = 50,
    stability_key: str | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Axes:
    """Draw the strongest edges, or the neighbourhood of some genes, in layers.

    Causes are left of their targets (each gene one column right of its furthest
    regulator among the edges drawn). Red arrows activate (w > 0), blue ones repress
    (w < 0); the width grows with ``|w|``. When the network carries edge stabilities
    (``varp[stability_key]``, by default ``varp[key + "_stability"]`` if present), the
    opacity shows them.

    Parameters
    ----------
    adata
        AnnData with a network in ``varp[key]``.
    key
        ``varp`` key of the network.
    genes
        Draw only edges among genes within ``depth`` steps of these (either direction).
    depth
        Neighbourhood size around ``genes``.
    n_edges
        The number of strongest edges drawn (by ``|w|``).
    stability_key
        ``varp`` key of edge stabilities (values in [0, 1]).
    title
        Figure title (default: what is drawn).
    ax, show, save
        See the module docstring.

    Returns
    -------
    The Axes drawn on.
    """
    _check_count("n_edges", n_edges)
    _check_count("depth", depth, 0)
    W = _network(adata, key)
    stability_key = stability_key or (f"{key}_stability" if f"{key}_stability" in adata.varp else None)
    stability = sp.csr_matrix(adata.varp[stability_key]) if stability_key else None
    genes = [genes] if isinstance(genes, str) else genes
    table = _edges(adata, W, stability)
    edges = _select_edges(adata, table, genes, depth, n_edges)
    nodes = sorted(set(edges["source"]) | set(edges["target"]) | set(genes or []))
    place = _layers(nodes, edges)
    n_layers = max((layer for layer, _ in place.values()), default=0) + 1
    tallest = max((y for _, y in place.values()), default=0.0) + 1
    own = ax is None
    ax = _axes(ax, (max(6.0, 2.6 * n_layers + 2.5), max(4.0, 0.34 * tallest + 1.8)))
    ax.set_xlim(-0.6, n_layers - 0.4)
    ax.set_ylim(tallest - 0.4, -0.9)
    ax.axis("off")
    if edges.empty:
        ax.text(0.5, 0.5, "no edges to draw", ha="center", va="center", transform=ax.transAxes, fontsize=12)
        log.warning("pl.network: the network in varp[%r] has no edges%s", key, " near the genes given" if genes else "")
    boxes = _draw_gene_boxes(ax, place, genes)
    wmax = float(edges["abs"].max()) if len(edges) else 1.0
    _draw_arrows(ax, edges, place, _half_widths(ax, boxes), wmax=wmax, stable=stability is not None)
    for k in range(n_layers):
        label = "no regulator drawn" if k == 0 else f"{k} step{'s' if k > 1 else ''} downstream"
        ax.text(k, -0.75, label, ha="center", va="bottom", fontsize=8, color=NEUTRAL, style="italic")
    _network_legend(ax, wmax=wmax, stable=stability is not None)
    if title is None:
        what = f"around {', '.join(genes)}" if genes else "strongest edges"
        title = f"Gene regulatory network, {what}: {len(edges)} of {W.nnz} edges"
    ax.set_title(title, fontsize=10, loc="left")
    return _finish(ax, show=show, save=save, own_figure=own)


def degree(
    adata: AnnData,
    *,
    key: str = "gene_dag",
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Axes:
    """How many targets each gene regulates and how many regulators each gene has.

    Parameters
    ----------
    adata
        AnnData with a network in ``varp[key]``.
    key
        ``varp`` key of the network.
    title, ax, show, save
        See the module docstring.

    Returns
    -------
    The Axes drawn on.
    """
    W = _network(adata, key)
    out_deg = np.diff(W.indptr)
    in_deg = np.bincount(W.indices, minlength=W.shape[1])
    top = int(max(out_deg.max(initial=0), in_deg.max(initial=0)))
    x = np.arange(top + 1)
    own = ax is None
    ax = _axes(ax, (6.5, 4.0))
    width = 0.4
    ax.bar(
        x - width / 2,
        np.bincount(out_deg, minlength=top + 1),
        width,
        color="#8e44ad",
        label=f"out-degree: targets of a gene (mean {out_deg.mean():.2f})",
    )
    ax.bar(
        x + width / 2,
        np.bincount(in_deg, minlength=top + 1),
        width,
        color="#27ae60",
        label=f"in-degree: regulators of a gene (mean {in_deg.mean():.2f})",
    )
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("number of edges")
    ax.set_ylabel("number of genes")
    if top <= 20:
        ax.set_xticks(x)
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or f"Degree distribution: {W.shape[0]} genes, {W.nnz} edges", fontsize=10, loc="left")
    return _finish(ax, show=show, save=save, own_figure=own)


def _bars(ax: Axes, frame: pd.DataFrame, xlabel: str) -> None:
    """Horizontal bars, one row per gene (top first), one bar per column, coloured by sign for one column."""
    n_rows, n_cols = frame.shape
    y = np.arange(n_rows)
    if n_cols == 1:
        values = frame.iloc[:, 0].to_numpy()
        ax.barh(y, values, color=np.where(values > 0, POSITIVE, NEGATIVE), height=0.7)
    else:
        import matplotlib as mpl

        cmap = mpl.colormaps["tab10"]
        height = 0.8 / n_cols
        for c, col in enumerate(frame.columns):
            ax.barh(y - 0.4 + height * (c + 0.5), frame[col].to_numpy(), height, color=cmap(c % 10), label=str(col))
        ax.legend(fontsize=8, frameon=False, title="group", title_fontsize=8, loc="best")
    ax.set_yticks(y, frame.index, fontsize=8)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.axvline(0, color="#333333", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.spines[["top", "right"]].set_visible(False)


def effects(
    adata: AnnData,
    gene: str,
    *,
    key: str = "gene_dag",
    n_top: int = 20,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Axes:
    """Plot the genes that change most when ``gene`` is raised by one unit, do(gene + 1).

    Bars are total causal effects (every path, in expression units per unit of
    ``gene``; red up, blue down); a black dot marks the direct edge, where there is one.
    Uses ``adata.varm["effects"]`` when it holds ``gene`` (from :func:`gene_dag.tl.effects`
    on the same network), else computes the effects.

    Parameters
    ----------
    adata
        AnnData with a network in ``varp[key]``.
    gene
        The intervened gene.
    key
        ``varp`` key of the network.
    n_top
        The number of genes shown (largest ``|total effect|``).
    title, ax, show, save
        See the module docstring.

    Returns
    -------
    The Axes drawn on.
    """
    from gene_dag import effects as fx
    from gene_dag.tl import gene_indices

    _check_count("n_top", n_top)
    W = _network(adata, key)
    (i,) = gene_indices(adata, [gene])
    stored = adata.varm.get("effects") if "effects" in adata.varm else None
    if isinstance(stored, pd.DataFrame) and gene in stored.columns and adata.uns.get("effects", {}).get("key") == key:
        total = stored[gene].to_numpy(dtype=np.float64)
    else:
        total = fx.total_effects(W, [i])[0]
    direct = W[i].toarray().ravel()
    frame = pd.DataFrame({"total": total, "direct": direct}, index=adata.var_names.astype(str))
    frame = frame.drop(index=str(gene))
    frame = frame[frame["total"] != 0]
    frame = frame.reindex(frame["total"].abs().sort_values(ascending=False, kind="mergesort").index).head(n_top)
    own = ax is None
    ax = _axes(ax, (6.5, max(3.0, 0.28 * len(frame) + 1.6)))
    if frame.empty:
        _note(ax, f"{gene} has no targets in the network:\nraising it changes no other gene")
        log.warning("pl.effects: %s has no targets in the network", gene)
    else:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        _bars(ax, frame[["total"]], f"change per unit increase of {gene} (expression units)")
        has_edge = frame["direct"] != 0
        ax.scatter(frame["direct"][has_edge], np.flatnonzero(has_edge), color="black", s=14, zorder=3)
        ax.legend(
            handles=[Patch(color=POSITIVE, label="total effect, up"), Patch(color=NEGATIVE, label="total effect, down"),
                     Line2D([], [], color="black", marker="o", ls="", markersize=4, label="direct edge weight")],
            fontsize=8, frameon=False, loc="best",
        )  # fmt: skip
    n_affected = int((total != 0).sum() - 1)
    ax.set_title(
        title or f"Effect of raising {gene} by one unit: top {len(frame)} of {n_affected} affected genes",
        fontsize=10,
        loc="left",
    )
    return _finish(ax, show=show, save=save, own_figure=own)


def _knockout_bars(ax: Axes, shift: pd.DataFrame, what: str) -> None:
    """Bars of the change per gene and group, or a note that nothing changes."""
    if shift.empty:
        _note(ax, f"{what}:\nno other gene changes (no targets in the network)")
        return
    _bars(ax, shift, "predicted change in mean expression (expression units)")
    if shift.shape[1] == 1:
        from matplotlib.patches import Patch

        ax.legend(
            handles=[Patch(color=POSITIVE, label="goes up"), Patch(color=NEGATIVE, label="goes down")],
            fontsize=8,
            frameon=False,
            loc="best",
        )


def knockout(
    adata: AnnData,
    genes: Sequence[str] | str,
    *,
    value: float = 0.0,
    fraction: float | None = None,
    groupby: str | None = None,
    layer: str | None = None,
    key: str = "gene_dag",
    n_top: int = 20,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Axes:
    """Predicted change of mean expression when ``genes`` are set to ``value`` (a knockout by default).

    Runs :func:`gene_dag.tl.knockout` on a copy (same options) and shows the genes that
    move most, one bar per group. The intervened genes themselves are left out (their
    change is the intervention).

    Parameters
    ----------
    adata
        AnnData with a network in ``varp[key]`` and its expression.
    genes, value, fraction, groupby, layer, key
        As in :func:`gene_dag.tl.knockout`.
    n_top
        The number of genes shown (largest change in any group).
    title, ax, show, save
        See the module docstring.

    Returns
    -------
    The Axes drawn on.
    """
    from gene_dag import tl

    _check_count("n_top", n_top)
    genes = [genes] if isinstance(genes, str) else list(genes)
    result = tl.knockout(
        adata,
        genes,
        value=value,
        fraction=fraction,
        groupby=groupby,
        layer=layer,
        key=key,
        key_added="_pl_knockout",
        copy=True,
    ).uns["_pl_knockout"]
    shift = result["shift"].drop(index=genes)
    biggest = shift.abs().max(axis=1)
    shift = shift[biggest > 0].loc[lambda s: s.abs().max(axis=1).sort_values(ascending=False, kind="mergesort").index]
    shift = shift.head(n_top)
    own = ax is None
    ax = _axes(ax, (6.5, max(3.0, 0.28 * len(shift) * max(1, min(shift.shape[1], 3)) / 1.5 + 1.6)))
    what = f"set to {fraction:g} x observed" if fraction is not None else f"set to {value:g}"
    observed = result["observed"].loc[genes].mean(axis=1)
    what += " (observed mean " + ", ".join(f"{g} {observed[g]:.3g}" for g in genes) + ")"
    _knockout_bars(ax, shift, f"{', '.join(genes)} {what}")
    n_changed = max(result["n_changed"].values(), default=0)
    ax.set_title(
        title
        or f"In-silico perturbation: {', '.join(genes)} {what}\ntop {len(shift)} of the {n_changed} genes that change",
        fontsize=10,
        loc="left",
    )
    return _finish(ax, show=show, save=save, own_figure=own)


def _json_list(run: dict[str, Any], key: str) -> list[dict]:
    """Return the records a solver run stores as JSON under ``key`` (empty when absent or unreadable)."""
    try:
        items = json.loads(str(run.get(key, "[]")))
    except ValueError:
        return []
    return [r for r in items if isinstance(r, dict)] if isinstance(items, list) else []


def _rounds(run: dict[str, Any]) -> list[dict]:
    return _json_list(run, "rounds_json")


def _plot_stages(ax: Axes, stages: list[dict]) -> None:
    """Acyclicity h and work per central-path stage, in the order the solver ran them."""
    x = np.arange(1, len(stages) + 1)
    h = np.array([float(st.get("max_h", 0.0)) for st in stages])
    ax.plot(x, np.maximum(h, 1e-16), "o-", color="#c0392b", label="acyclicity h (0 = DAG)")
    ax.set_yscale("log")
    ax.set_ylabel("largest h over the components")
    ax.set_xlabel("central-path stage (penalty weight 1/mu grows, h is driven to 0)")
    ax.set_xticks(x, [f"{i}\nmu {float(st.get('mu', 0)):.0e}" for i, st in zip(x, stages, strict=True)], fontsize=7)
    twin = ax.twinx()
    twin.bar(x, [int(st.get("evals", 0)) for st in stages], color="#2e6fb7", alpha=0.25, label="evaluations")
    twin.set_ylabel("objective evaluations in the stage")
    handles = ax.get_lines() + list(twin.containers)
    ax.legend(handles, ["acyclicity h (0 = DAG)", "evaluations"], fontsize=8, frameon=False, loc="upper center")
    ax.spines[["top"]].set_visible(False)


def _plot_rounds(ax: Axes, rounds: list[dict]) -> None:
    """Acyclicity h and active edges per constrained round (records without central-path stages)."""
    x = np.array([int(r.get("round", i)) for i, r in enumerate(rounds)]) + 1
    h = np.array([float(r.get("max_h", 0.0)) for r in rounds])
    ax.plot(x, np.maximum(h, 1e-16), "o-", color="#c0392b", label="acyclicity h (0 = DAG)")
    ax.set_yscale("log")
    ax.set_ylabel("largest h over the cycle-core components")
    ax.set_xlabel("constrained round (edges that violate optimality join between rounds)")
    ax.set_xticks(x)
    twin = ax.twinx()
    twin.plot(x, [int(r.get("active_edges", 0)) for r in rounds], "s--", color="#2e6fb7", label="active edges")
    twin.set_ylabel("candidate edges in the constrained problem")
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, frameon=False, loc="upper center")
    ax.spines[["top"]].set_visible(False)


def _convergence_facts(run: dict[str, Any], *, n_rounds: int) -> str:
    """Write the final state of a solve as ``name: value`` lines (``-`` where the record lacks one)."""
    converged = bool(run.get("converged", False))
    facts = [
        ("converged", "yes" if converged else "NO (time limit or iteration cap)"),
        ("score", f"{float(run['score']):.6g}" if "score" in run else "-"),
        ("final h", f"{float(run.get('final_h', 0.0)):.2e}"),
        ("lasso iterations", str(run.get("lasso_iterations", "-"))),
        ("constrained rounds", str(run.get("core_rounds", n_rounds))),
        ("cycle-core genes", str(run.get("n_core", "-"))),
        ("wall time", f"{float(run.get('total_wall_time_s', run.get('wall_time_s', 0.0))):.1f} s"),
        ("edges", str(run.get("n_edges", "-"))),
    ]
    return "\n".join(f"{k}: {v}" for k, v in facts)


def convergence(
    adata: AnnData,
    *,
    key: str = "gene_dag",
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Axes:
    """How the solve went: acyclicity h and active edges per constrained round, and the final state.

    Reads ``uns[key]["run"]`` (without a record the plot says so): ``rounds_json`` (one entry per active-set round on the
    cycle core: ``max_h``, ``active_edges``, ``added``), ``converged``, ``score``,
    ``final_h``, iteration counts and wall time. A network whose allowed edges have no
    cycle core is solved as independent lassos without constrained rounds; the plot
    then says so.

    Parameters
    ----------
    adata
        AnnData with ``uns[key]`` as written by :func:`gene_dag.tl.learn_dag` or the workflow.
    key
        ``uns`` key of the solver record.
    title, ax, show, save
        See the module docstring.

    Returns
    -------
    The Axes drawn on.
    """
    record = adata.uns.get(key)
    own = ax is None
    ax = _axes(ax, (6.0, 4.0))
    if not isinstance(record, dict):
        log.warning("pl.convergence: no solver record in uns[%r]; nothing to show", key)
        _note(ax, f"no solver record in uns[{key!r}]:\nthis network was not learned by gene-dag here")
        ax.set_title(title or "Solver convergence (unknown)", fontsize=10, loc="left")
        return _finish(ax, show=show, save=save, own_figure=own)
    run = record.get("run", record)
    rounds = _rounds(run)
    converged = bool(run.get("converged", False))
    text = _convergence_facts(run, n_rounds=len(rounds))
    stages = _json_list(run, "stages_json")
    if stages:
        _plot_stages(ax, stages)
    elif rounds:
        _plot_rounds(ax, rounds)
    else:
        ax.axis("off")
        why = (
            "no central path: the cycle core was solved in the\nleast-residual order (equal noise variances)"
            if run.get("core_order") == "least_residual"
            else "no constrained rounds: the allowed edges have no cycle,\nso every gene was a separate lasso"
        )
        text = why + "\n\n" + text
    drawn = bool(stages or rounds)
    ax.text(
        1.22 if drawn else 0.5,
        0.5,
        text,
        transform=ax.transAxes,
        fontsize=9,
        va="center",
        ha="left" if drawn else "center",
        family="monospace",
        bbox=dict(boxstyle="round", fc="#f5f5f5" if converged else "#fdecea", ec="#999999"),
    )
    if not converged:
        log.warning("pl.convergence: the solve in uns[%r] did not converge", key)
    ax.set_title(
        title or f"Solver convergence ({'converged' if converged else 'NOT converged'})", fontsize=10, loc="left"
    )
    return _finish(ax, show=show, save=save, own_figure=own)
