"""gene_dag.pl: every plot writes a non-empty PNG that depends on the network it draws."""

from __future__ import annotations

import json

import anndata
import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

matplotlib.use("Agg")

from gene_dag import pl  # noqa: E402

GENES = ["SPI1", "IRF8", "CEBPA", "LYZ", "CD14", "FCGR3A", "S100A8", "CST3", "HLA-DRA", "MS4A1"]


def net(seed: int, stability: bool = False) -> anndata.AnnData:
    """A DAG over GENES (SPI1, IRF8 regulate), its SEM data, and a solver record."""
    rng = np.random.default_rng(seed)
    d = len(GENES)
    W = np.zeros((d, d))
    for j in range(2, d):
        for r in rng.choice(2 + min(j - 2, 1), size=rng.integers(1, 3), replace=False):
            W[r, j] = rng.choice([-1, 1]) * rng.uniform(0.2, 1.0)
    X = rng.normal(size=(120, d)) @ np.linalg.inv(np.eye(d) - W) + 4
    adata = anndata.AnnData(X=X.astype(np.float32), var=pd.DataFrame(index=GENES))
    adata.obs["tissue"] = pd.Categorical(np.where(np.arange(120) % 2 == 0, "liver", "lung"))
    adata.varp["gene_dag"] = sp.csr_matrix(W.astype(np.float32))
    if stability:
        S = sp.csr_matrix(W != 0, dtype=np.float32)
        S.data = rng.uniform(0, 1, S.nnz).astype(np.float32)
        adata.varp["gene_dag_stability"] = S
    rounds = [
        {"round": 0, "components": 1, "largest": 2, "active_edges": 12 + seed, "added": 3, "max_h": 1e-3 * (seed + 1)},
        {"round": 1, "components": 1, "largest": 2, "active_edges": 15 + seed, "added": 0, "max_h": 1e-9},
    ]
    adata.uns["gene_dag"] = {
        "run": {
            "converged": bool(seed % 2 == 0),
            "score": 10.0 + seed,
            "final_h": 1e-9,
            "lasso_iterations": 10,
            "core_rounds": 2,
            "n_core": 2,
            "n_edges": int((W != 0).sum()),
            "total_wall_time_s": 1.5,
            "rounds_json": json.dumps(rounds),
        }
    }
    return adata


PLOTS = {
    "network": lambda a, **kw: pl.network(a, **kw),
    "network_genes": lambda a, **kw: pl.network(a, genes=["IRF8"], depth=1, **kw),
    "network_stability": lambda a, **kw: pl.network(a, n_edges=5, **kw),
    "degree": lambda a, **kw: pl.degree(a, **kw),
    "effects": lambda a, **kw: pl.effects(a, "SPI1", **kw),
    "knockout": lambda a, **kw: pl.knockout(a, ["SPI1"], groupby="tissue", **kw),
    "knockdown": lambda a, **kw: pl.knockout(a, ["IRF8"], fraction=0.5, **kw),
    "convergence": lambda a, **kw: pl.convergence(a, **kw),
}


@pytest.mark.parametrize("name", list(PLOTS))
def test_plot_writes_a_png_that_depends_on_the_network(tmp_path, name):
    from matplotlib.axes import Axes
    from matplotlib.image import imread

    images = []
    for seed in (0, 1):
        path = tmp_path / f"{name}_{seed}.png"
        ax = PLOTS[name](net(seed, stability=name == "network_stability"), save=path)
        assert isinstance(ax, Axes)
        assert path.stat().st_size > 5000
        images.append(imread(path))
    a, b = images
    assert a.std() > 0.01  # not blank
    assert a.shape != b.shape or np.abs(a - b).max() > 0


def test_network_draws_the_chosen_edges_with_sign_colours():
    adata = net(0)
    ax = pl.network(adata, n_edges=3, show=False)
    labels = sorted(t.get_text() for t in ax.texts if t.get_bbox_patch() is not None)
    W = sp.coo_matrix(adata.varp["gene_dag"])
    top = np.argsort(-np.abs(W.data), kind="stable")[:3]
    expected = sorted({GENES[W.row[i]] for i in top} | {GENES[W.col[i]] for i in top})
    assert labels == expected
    from matplotlib.text import Annotation

    arrows = [t.arrow_patch for t in ax.texts if isinstance(t, Annotation)]
    assert len(arrows) == 3
    colours = sorted(matplotlib.colors.to_hex(a.get_edgecolor()) for a in arrows)
    assert colours == sorted(pl.POSITIVE if W.data[i] > 0 else pl.NEGATIVE for i in top)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "activation (weight > 0)" in legend and "repression (weight < 0)" in legend


def test_fifty_edge_network_labels_do_not_overlap():
    rng = np.random.default_rng(0)
    d = 60
    genes = [f"GENE{i:02d}" for i in range(d)]
    W = np.zeros((d, d))
    pairs = [(r, c) for r in range(8) for c in range(8, d)]
    for k in rng.choice(len(pairs), size=50, replace=False):
        W[pairs[k]] = rng.choice([-1, 1]) * rng.uniform(0.2, 1)
    adata = anndata.AnnData(X=np.zeros((3, d), np.float32), var=pd.DataFrame(index=genes))
    adata.varp["gene_dag"] = sp.csr_matrix(W)
    ax = pl.network(adata, n_edges=50, show=False)
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts if t.get_bbox_patch() is not None]
    assert len(boxes) == len({*np.nonzero(W)[0], *np.nonzero(W)[1]})
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)


def test_effects_of_a_gene_without_targets_says_so(caplog):
    adata = net(0)
    ax = pl.effects(adata, "MS4A1", show=False)
    assert any("no targets" in t.get_text() for t in ax.texts)
    assert "MS4A1 has no targets" in caplog.text


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda a: pl.network(a, n_edges=0), "n_edges must be an integer >= 1"),
        (lambda a: pl.network(a, genes=["NOPE"]), "not genes of the network: NOPE"),
        (lambda a: pl.effects(a, "SPI1", n_top=-1), "n_top must be"),
    ],
)
def test_bad_arguments_are_named(call, message):
    from gene_dag.errors import GeneDagError

    with pytest.raises(GeneDagError, match=message):
        call(net(0))


def test_convergence_without_a_solver_record_says_so(caplog):
    ax = pl.convergence(net(0), key="other", show=False)
    assert any("no solver record in uns['other']" in t.get_text() for t in ax.texts)
    assert "no solver record" in caplog.text


def test_convergence_draws_the_central_path_of_a_real_solve(tmp_path):
    """A real solve stores one record per central-path stage; the plot draws h along them."""
    from gene_dag import tl
    from gene_dag.simulate import simulate_adata

    adata = simulate_adata(d=15, n=500, graph_type="er", edges_per_node=1.0, seed=0)
    tl.learn_dag(adata, device="cpu")
    stages = json.loads(adata.uns["gene_dag"]["run"]["stages_json"])
    assert [st["stage"] for st in stages] == [0, 1, 2, 3, 4]
    assert stages[-1]["max_h"] < stages[0]["max_h"]  # the path drives h towards 0
    ax = pl.convergence(adata, save=tmp_path / "path.png")
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), [max(st["max_h"], 1e-16) for st in stages])
    assert (tmp_path / "path.png").stat().st_size > 5000


def test_convergence_of_a_core_solved_in_the_least_residual_order_says_so(tmp_path):
    from gene_dag import tl
    from gene_dag.simulate import simulate_adata

    adata = simulate_adata(d=30, n=1000, graph_type="er", edges_per_node=2.0, seed=1)
    tl.learn_dag(adata, device="cpu", standardize=False)
    assert adata.uns["gene_dag"]["run"]["core_order"] == "least_residual"
    ax = pl.convergence(adata, save=tmp_path / "order.png")
    assert any("least-residual order" in t.get_text() for t in ax.texts)
