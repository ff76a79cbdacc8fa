#!/usr/bin/env python
"""Realistic single-cell benchmark: SERGIO counts from E. coli subnetworks, preprocessed by
gene-dag, and gene-dag ranked against |Pearson|, GRNBoost2 and DAGMA in one run.

Data, per (G, seed):

* **GRN**: a connected subnetwork of G genes of the E. coli network that SERGIO ships
  (``SERGIO/GRN/ref/EcoliNet.v1.txt``, 4,099 genes, 95,520 edges, acyclic), grown from a
  random gene by adding random neighbours (either direction) of the genes chosen so far.
  Its induced edges are kept, at most ``--max-parents`` per target (those with the
  highest EcoliNet score): the full network has a median in-degree of 14, far denser
  than a regulatory network. (``SERGIO.GRN.grn_from_Ecoli`` samples G genes uniformly
  instead; at G = 100 that leaves about half of them without any edge.) Hill parameters
  come from SERGIO's ``parameterize_grn`` (k in [1, 5] for 75 % of edges, [-5, -1] for
  the rest, n = 2, decay 0.8); genes without edges are simulated as master regulators.
* **cells**: SERGIO v2's steady-state SDE (``sergio.simulate``, noise_s = 1,
  safety_iter = 150, scale_iter = 10) for ``--cell-types`` cell types of
  ``--cells-per-type`` cells; a cell type is a random profile of the master regulators'
  production rates (``mrProfile.build_rnd``: low [1, 2.5] or high [3.5, 5]).
* **technical noise** (SERGIO's splat model): outlier genes (p 0.01, lognormal 0.8, 1),
  library size (lognormal, log-mean 6 + log(G / 100), sd 0.4), dropout (logistic in
  log expression, shape 8, midpoint at the 80th percentile), then Poisson counts: about
  80 % zeros.
* **preprocessing**: ``gene_dag.preprocess.preprocess(values="counts")`` (normalize_total
  + log1p, constant genes dropped), cell types pooled (one network over all cells).
  DAGMA and the "scaled" gene-dag row get the same data standardised per gene by the
  same function (``scale_values=True``).
* **TF list**: the genes with out-edges in the true GRN (SERGIO's master regulators and
  intermediate regulators that regulate something).

The counts (``counts.h5ad``, with ``varp["true_dag"]``, ``obs["cell_type"]`` and
``var["is_tf"]``), the true edges (``true_edges.tsv``) and the TF list (``tfs.txt``) are
written under ``<out-dir>/data/G<G>_seed<seed>/`` and reused when present.

Methods, each giving a score >= 0 for every ordered gene pair (0 = not predicted):

* ``gene-dag ...``: ``gene_dag.fit(X, regulators=TFs or None, return_result=True, **options)``
  on the log-normalised data (or the standardised data for the ``scaled`` row). The
  score comes from :func:`gene_dag_scores` (|weight| of the thresholded DAG today).
* ``gene-dag continuous``: the solver's continuous weights before thresholding, read
  from ``gene_dag.solver.driver.solve`` on the statistics ``fit`` computes, to tell the
  ranking apart from the threshold.
* ``pearson``: |Pearson correlation| of the log-normalised genes (both directions of a
  pair get the same score).
* ``grnboost2``: ``arboreto.algo.grnboost2`` (seed = the benchmark seed) on the
  log-normalised data with a local dask cluster of ``--dask-workers`` single-threaded
  workers, ``tf_names`` = the TF list or ``"all"``; score = importance.
* ``dagma``: ``DagmaLinear(loss_type="l2").fit(X_std, lambda1=0.02, w_threshold=0)``
  (DAGMA's example λ; every other argument the package default), score = |W|. It takes
  no TF list: with one, its scores are restricted to the TF rows.

Each peer runs in a child process killed after ``--time-limit`` seconds (DAGMA) or
``--grnboost-time-limit`` (GRNBoost2); gene-dag and Pearson run in this process.

Metrics (``gene_dag.metrics.ranking_accuracy``), directed and on the skeleton, with the
TF list (candidates: TF -> other gene) and without (all ordered pairs): AUPRC, AUPRC over
random (the density of true edges among the candidates) and BEELINE's early precision
ratio (precision among the top k, k = true edges, over the random precision).

Output: ``<out-dir>/results.json`` (rewritten after every run; rerunning resumes, skipping
runs already done; ``--fresh`` starts over) and ``<out-dir>/table_G<G>.md`` per G (mean ±
sd over seeds).

Example (small, a few minutes)::

    .venv/bin/python benchmarks/realistic_sc.py --genes 30 --seeds 0 --cells-per-type 100 \\
        --out-dir benchmarks/out/realistic_sc_smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare_published as cp  # noqa: E402  (thread helpers shared by the benchmarks)

PEERS = ("grnboost2", "dagma")
DAGMA_LAMBDA1 = 0.02  # DAGMA README / example, as in compare_published.py
# gene-dag rows: name -> (fit options, input). "log": log-normalised, "scaled": standardised.
GENE_DAG_VARIANTS = {
    "gene-dag defaults": ({}, "log"),
    "gene-dag cell types centred": ({"groups": "cell_type"}, "log"),
    "gene-dag stability B=20": ({"stability_resamples": 20}, "log"),
    "gene-dag standardize=False": ({"standardize": False}, "log"),
    "gene-dag lambda1=0.01": ({"lambda1": 0.01}, "log"),
    "gene-dag lambda1=0.002": ({"lambda1": 0.002}, "log"),
    "gene-dag lambda1=0.002 w_threshold=0.05": ({"lambda1": 0.002, "w_threshold": 0.05}, "log"),
    "gene-dag w_threshold=0.1": ({"w_threshold": 0.1}, "log"),
    "gene-dag w_threshold=0.05": ({"w_threshold": 0.05}, "log"),
    "gene-dag scaled": ({}, "scaled"),
    "gene-dag continuous": ({}, "log"),
    "gene-dag no order search": ({"order_search": "never"}, "log"),
    "gene-dag bic-order": ({"order_search": "always"}, "log"),
    "gene-dag bic-order gamma=0.5": (
        {"order_search": "always", "tuning": {"order_search_gamma": 0.5}},
        "log",
    ),
    "gene-dag bic-order gamma=1": (
        {"order_search": "always", "tuning": {"order_search_gamma": 1.0}},
        "log",
    ),
}
METHODS = (*GENE_DAG_VARIANTS, "pearson", "grnboost2", "dagma")
NOISE = {
    "outlier_prob": 0.01,
    "outlier_mean": 0.8,
    "outlier_scale": 1.0,
    "lib_scale": 0.4,
    "dropout_shape": 8.0,
    "dropout_percentile": 80.0,
}


# --------------------------------------------------------------------------- simulation


def ecoli_network():
    """SERGIO's E. coli network as a networkx DiGraph with an edge attribute ``score``."""
    import importlib.resources

    import networkx as nx
    import pandas as pd

    path = importlib.resources.files("SERGIO.GRN") / "ref" / "EcoliNet.v1.txt"
    table = pd.read_csv(path, sep="\t", names=["reg", "tar", "score"], header=None)
    table = table.drop_duplicates(["reg", "tar"])
    g = nx.DiGraph()
    g.add_weighted_edges_from(table.itertuples(index=False), weight="score")
    if not nx.is_directed_acyclic_graph(g):
        raise RuntimeError(f"{path} has directed cycles; SERGIO needs an acyclic GRN")
    return g


def sample_grn(network, n_genes: int, max_parents: int, rng) -> tuple[list[str], list[tuple[str, str]]]:
    """A connected set of ``n_genes`` genes (grown by random neighbours) and its induced
    edges, at most ``max_parents`` per target (highest score first)."""
    und = network.to_undirected(as_view=True)
    nodes = sorted(network.nodes)
    start = nodes[rng.integers(len(nodes))]
    chosen, frontier = [start], set(und[start])
    while len(chosen) < n_genes:
        options = sorted(frontier.difference(chosen))
        if not options:
            raise RuntimeError(f"the component of {start} has fewer than {n_genes} genes")
        pick = options[rng.integers(len(options))]
        chosen.append(pick)
        frontier.update(und[pick])
    sub = network.subgraph(chosen)
    edges = []
    for target in sorted(chosen):
        parents = sorted(sub.predecessors(target), key=lambda r: (-sub[r][target]["score"], r))
        edges += [(r, target) for r in parents[:max_parents]]
    return sorted(chosen), edges


def simulate(n_genes: int, seed: int, n_types: int, cells_per_type: int, max_parents: int, network):
    """SERGIO counts (cells x genes AnnData) from a sampled E. coli GRN; see the module doc."""
    import anndata
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    from SERGIO import sergio
    from SERGIO.GRN import GRN, Gene, SingleInteraction, grnParam, parameterize_grn
    from SERGIO.MR import mrProfile
    from SERGIO.Noise import scNoise

    graph_seed, sim_seed = np.random.SeedSequence(seed).generate_state(2)
    genes, edges = sample_grn(network, n_genes, max_parents, np.random.default_rng(graph_seed))
    np.random.seed(int(sim_seed))  # SERGIO draws from numpy's global generator
    net = pd.DataFrame([[i, r, 0, t] for i, (r, t) in enumerate(edges)], columns=["index", "reg", "coop", "tar"])
    net = parameterize_grn(net, grnParam(k_act=[1, 5], k_rep=[-5, -1], n=2, decay=0.8))
    grn = GRN()
    for row in net.itertuples(index=False):
        grn.add_interaction(
            SingleInteraction(
                reg=[Gene(name=row.reg, decay=row.reg_decay)],
                tar=Gene(name=row.tar, decay=row.tar_decay),
                k=row.k,
                h=row.h,
                n=row.n,
            )
        )
    connected = {g for e in edges for g in e}
    for g in genes:
        if g not in connected:
            grn._add_gene(Gene(name=g, decay=0.8))  # no public way to add an edgeless gene
    grn.setMRs()
    profile = mrProfile(MR_names=grn.get_mrs(), n_types=n_types)
    profile.build_rnd(range_dict={"L": [1, 2.5], "H": [3.5, 5]})
    grn.init(profile, update_half_resp=True)
    sim = sergio(grn)
    t0 = time.perf_counter()
    sim.simulate(nCells=cells_per_type, noise_s=1, safety_iter=150, scale_iter=10)
    sim_time = time.perf_counter() - t0
    clean = sim.getSimExpr().loc[genes]  # genes x cells, cells grouped by type
    model = scNoise().sim_
    expr = model.outlier_effect(
        clean.to_numpy(dtype=np.float64), NOISE["outlier_prob"], NOISE["outlier_mean"], NOISE["outlier_scale"]
    )
    expr = model.lib_size_effect(expr, 6.0 + np.log(n_genes / 100), NOISE["lib_scale"])
    expr = expr * model.dropout_indicator(expr, NOISE["dropout_shape"], NOISE["dropout_percentile"])
    counts = model.convert_to_UMIcounts(expr).T.astype(np.float32)  # cells x genes

    index = {g: i for i, g in enumerate(genes)}
    rows = [index[r] for r, _ in edges]
    cols = [index[t] for _, t in edges]
    truth = sp.csr_matrix((np.ones(len(edges), np.float32), (rows, cols)), shape=(n_genes, n_genes))
    cell_type = np.repeat([f"type{k}" for k in range(n_types)], cells_per_type)
    adata = anndata.AnnData(
        X=sp.csr_matrix(counts),
        obs=pd.DataFrame({"cell_type": pd.Categorical(cell_type)}, index=list(clean.columns)),
        var=pd.DataFrame({"is_tf": np.isin(genes, [r for r, _ in edges])}, index=genes),
    )
    adata.varp["true_dag"] = truth
    adata.uns["simulation"] = {
        "simulator": "SERGIO v2 (sergio-scsim) steady state",
        "network": "EcoliNet.v1 subnetwork",
        "seed": int(seed),
        "n_types": int(n_types),
        "cells_per_type": int(cells_per_type),
        "max_parents": int(max_parents),
        "n_edges": len(edges),
        "sergio_time_s": sim_time,
        "zero_fraction": float((counts == 0).mean()),
        **NOISE,
    }
    return adata


def load_or_simulate(out_dir: str, n_genes: int, seed: int, args, network_cache: dict):
    import anndata
    import pandas as pd

    folder = os.path.join(out_dir, "data", f"G{n_genes}_seed{seed}")
    path = os.path.join(folder, "counts.h5ad")
    if os.path.exists(path):
        return anndata.read_h5ad(path), path
    if "net" not in network_cache:
        network_cache["net"] = ecoli_network()
    print(f"simulating G={n_genes} seed={seed} ...", flush=True)
    adata = simulate(n_genes, seed, args.cell_types, args.cells_per_type, args.max_parents, network_cache["net"])
    os.makedirs(folder, exist_ok=True)
    rows, cols = adata.varp["true_dag"].nonzero()
    names = adata.var_names
    pd.DataFrame({"source": names[rows], "target": names[cols]}).to_csv(
        os.path.join(folder, "true_edges.tsv"), sep="\t", index=False
    )
    with open(os.path.join(folder, "tfs.txt"), "w") as fh:
        fh.write("".join(f"{g}\n" for g in names[adata.var["is_tf"].to_numpy()]))
    tmp = path + ".tmp"
    adata.write_h5ad(tmp)
    os.replace(tmp, path)
    sim = adata.uns["simulation"]
    print(
        f"  {sim['n_edges']} edges, {int(adata.var['is_tf'].sum())} TFs, "
        f"{sim['zero_fraction']:.1%} zeros, SERGIO {sim['sergio_time_s']:.1f} s",
        flush=True,
    )
    return adata, path


# --------------------------------------------------------------------------- methods


# Where gene-dag's ranking score for every candidate edge is looked for, first hit wins:
# attributes of the FitResult, then varp of an AnnData (as gene_dag.tl.learn_dag writes
# it). Today neither holds one, and the |weight| of the thresholded DAG is used; add the
# name of a ranked-score field here once the solver stores one.
SCORE_FIELDS = ("edge_scores", "scores")


def gene_dag_scores(result) -> tuple:
    """(d x d nonnegative score array, where it came from) from a ``fit`` result or an AnnData."""
    import numpy as np
    import scipy.sparse as sp

    def dense(value):
        return np.abs(value.toarray() if sp.issparse(value) else np.asarray(value, dtype=np.float64))

    for name in SCORE_FIELDS:
        if getattr(result, name, None) is not None:
            return dense(getattr(result, name)), name
    varp = getattr(result, "varp", None)
    if varp is not None:
        for name in SCORE_FIELDS:
            if name in varp:
                return dense(varp[name]), f"varp[{name}]"
        return dense(varp["gene_dag"]), "thresholded |w| (varp[gene_dag])"
    return dense(result.adjacency), "thresholded |w|"


def run_gene_dag(name: str, X, genes, tfs, cell_type=None):
    """One gene-dag row: (scores, info)."""
    import numpy as np

    import gene_dag

    options, _ = GENE_DAG_VARIANTS[name]
    if options.get("groups") == "cell_type":  # pooled over the cell types, centred on each type's mean
        options = {**options, "groups": cell_type}
    regulators = None if tfs is None else list(tfs)
    if name == "gene-dag continuous":
        return _gene_dag_continuous(X, genes, regulators)
    result = gene_dag.fit(X, genes=list(genes), regulators=regulators, return_result=True, **options)
    S, source = gene_dag_scores(result)
    run = result.info["run"]
    return S, {
        "_pred": result.adjacency,
        "score_source": source,
        "n_edges": int(result.adjacency.nnz),
        "converged": bool(run["converged"]),
        "options": GENE_DAG_VARIANTS[name][0],
        "lambda1_selected": run.get("lambda1_selected"),
        "n_scored": int(np.count_nonzero(S)),
    }


def _gene_dag_continuous(X, genes, regulators):
    """The solver's weights before thresholding (fit's own steps, keeping W_continuous)."""
    import numpy as np

    from gene_dag.prior import build_mask
    from gene_dag.solver.driver import solve
    from gene_dag.solver.settings import settings_from
    from gene_dag.stats import compute_stats

    settings = settings_from()
    mask = build_mask(np.asarray(genes, dtype=str), regulators, None, source="benchmark")
    stats = compute_stats(X, regulators=mask.regulators, memory_gb=settings.memory_gb, device="cpu", progress=False)
    variances = np.where(stats.zero_variance, 0.0, stats.std.astype(np.float64) ** 2)
    result = solve(np.asarray(stats.cov, dtype=np.float64), variances, mask, settings)
    S = np.abs(result.W_continuous.toarray())
    np.fill_diagonal(S, 0.0)
    return S, {
        "_pred": result.W,
        "score_source": "continuous |w| before the threshold",
        "n_edges": int(result.W.nnz),
        "converged": bool(result.info["converged"]),
        "n_scored": int(np.count_nonzero(S)),
    }


def run_pearson(X):
    import numpy as np

    S = np.abs(np.corrcoef(np.asarray(X, dtype=np.float64), rowvar=False))
    S = np.nan_to_num(S, nan=0.0)
    np.fill_diagonal(S, 0.0)
    return S, {"n_scored": int(np.count_nonzero(S))}


def run_peer(method: str, X, genes, tfs, seed: int, args):
    """GRNBoost2 or DAGMA in a child process (own process group), killed at the time limit."""
    import numpy as np

    limit = args.time_limit if method == "dagma" else args.grnboost_time_limit
    with tempfile.TemporaryDirectory(prefix=f"rsc_{method}_") as tmp:
        np.save(os.path.join(tmp, "X.npy"), np.asarray(X, dtype=np.float64))
        with open(os.path.join(tmp, "job.json"), "w") as fh:
            json.dump(
                {
                    "genes": list(map(str, genes)),
                    "tfs": None if tfs is None else list(map(str, tfs)),
                    "seed": seed,
                    "workers": args.dask_workers,
                    "threads": args.threads,
                },
                fh,
            )
        cmd = [sys.executable, os.path.abspath(__file__), "--_child", method, tmp]
        proc = subprocess.Popen(cmd, start_new_session=True)
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the child's group: it and its dask workers
            proc.wait()
            return None, {"status": "timeout", "time_limit_s": limit}
        if proc.returncode != 0:
            return None, {"status": "error", "returncode": proc.returncode}
        S = np.load(os.path.join(tmp, "scores.npy"), allow_pickle=False)
        with open(os.path.join(tmp, "info.json")) as fh:
            info = json.load(fh)
    return S, {**info, "time_limit_s": limit, "n_scored": int(np.count_nonzero(S))}


def child_main(method: str, folder: str) -> None:
    """Run one peer on ``folder/X.npy``; write ``scores.npy`` and ``info.json`` there."""
    with open(os.path.join(folder, "job.json")) as fh:
        job = json.load(fh)
    cp.set_thread_env(job["threads"])
    import numpy as np

    cp.pin_threads(job["threads"], use_torch=False)
    X = np.load(os.path.join(folder, "X.npy"), allow_pickle=False)
    genes = job["genes"]
    d = len(genes)
    t0 = time.perf_counter()
    if method == "dagma":
        from dagma.linear import DagmaLinear

        W = DagmaLinear(loss_type="l2").fit(X, lambda1=DAGMA_LAMBDA1, w_threshold=0.0)
        S = np.abs(W)
        info = {"n_edges": int((S > 0.3).sum()), "score_source": "|W|; edges: |W| > 0.3 (its default threshold)"}
    else:
        import pandas as pd
        from arboreto.algo import grnboost2
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=job["workers"], threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        try:
            t0 = time.perf_counter()  # the cluster's start-up is not the method's time
            net = grnboost2(
                expression_data=pd.DataFrame(X, columns=genes),
                tf_names=job["tfs"] or "all",
                client_or_address=client,
                seed=job["seed"],
            )
        finally:
            client.close()
            cluster.close()
        index = {g: i for i, g in enumerate(genes)}
        S = np.zeros((d, d))
        S[net["TF"].map(index).to_numpy(), net["target"].map(index).to_numpy()] = net["importance"].to_numpy()
        info = {"n_links": int(len(net))}
    elapsed = time.perf_counter() - t0
    np.fill_diagonal(S, 0.0)
    np.save(os.path.join(folder, "scores.npy"), S)
    with open(os.path.join(folder, "info.json"), "w") as fh:
        json.dump(
            {
                **info,
                "status": "ok",
                "fit_time_s": elapsed,
                "threads": cp.thread_summary(cp.thread_report(use_torch=False)),
            },
            fh,
        )


# --------------------------------------------------------------------------- scoring + tables


def score_all(S, truth, tf_index) -> dict:
    from gene_dag.metrics import ranking_accuracy

    out = {}
    for directed in (True, False):
        m = ranking_accuracy(S, truth, regulators=tf_index, directed=directed)
        tag = "dir" if directed else "skel"
        out.update(
            {f"{k}_{tag}": m[k] for k in ("auprc", "auprc_random", "auprc_ratio", "epr", "n_positive", "n_scored")}
        )
    return out


COLUMNS = (
    ("auprc_dir", "AUPRC"),
    ("auprc_ratio_dir", "AUPRC/rand"),
    ("epr_dir", "EPR"),
    ("auprc_skel", "AUPRC skel"),
    ("auprc_ratio_skel", "AUPRC/rand skel"),
    ("epr_skel", "EPR skel"),
    ("n_scored_dir", "candidates scored > 0"),
    ("n_edges", "edges: correct/reversed/extra"),
    ("time_s", "time s"),
)
SCOPE_TITLES = {
    "pooled": "all cell types pooled (one network over all cells)",
    "per-type": "one network per cell type (metrics averaged over the types)",
}


def _mean_sd(values) -> str:
    import numpy as np

    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return "–"
    fmt = (lambda x: f"{x:.0f}") if abs(v.mean()) >= 1000 else (lambda x: f"{x:.3g}")
    if v.size == 1:
        return fmt(v[0])
    sd = v.std(ddof=1)
    sd = 0.0 if sd <= 1e-12 * max(abs(v.mean()), 1e-300) else sd  # equal values up to rounding
    return f"{fmt(v.mean())} ± {fmt(sd) if abs(v.mean()) >= 1000 else format(sd, '.2g')}"


def _edges_cell(ok: list) -> str:
    import numpy as np

    if not ok or "n_edges" not in ok[0]["info"]:
        return "–"
    cell = _mean_sd([r["info"]["n_edges"] for r in ok])
    if all("n_correct" in r["info"] for r in ok):
        parts = [np.mean([r["info"][k] for r in ok]) for k in ("n_correct", "n_reversed", "n_extra")]
        cell += ": " + "/".join(f"{p:.0f}" if p >= 1000 else f"{p:.3g}" for p in parts)
    return cell


def markdown_table(runs: list, n_genes: int, scope: str) -> str:
    runs = [r for r in runs if r["G"] == n_genes and r.get("scope", "pooled") == scope]
    if not runs:
        return ""
    seeds = sorted({r["seed"] for r in runs})
    data = {}
    for r in runs:
        data.setdefault(r["seed"], r.get("data", {}))
    lines = [f"### G = {n_genes} genes, {SCOPE_TITLES[scope]}; {len(seeds)} seed(s): {', '.join(map(str, seeds))}", ""]
    facts = [(s, d) for s, d in sorted(data.items()) if d]
    if facts:
        lines.append(
            "Data (after preprocessing"
            + (", mean over cell types" if scope != "pooled" else "")
            + "): "
            + "; ".join(
                f"seed {s}: {d['n_genes']:.0f} genes, {d['n_true']:.0f} true edges, {d['n_tfs']:.0f} TFs, "
                f"{d['n_cells']:.0f} cells, {d['zero_fraction']:.1%} zeros"
                + (
                    ""
                    if "variance_min_median_max" not in d
                    else ", gene variances {:.3g} / {:.3g} / {:.3g} (min / median / max)".format(
                        *d["variance_min_median_max"]
                    )
                )
                for s, d in facts
            )
            + "."
        )
        lines.append("")
    for tf in (True, False):
        sub = [r for r in runs if r["tf"] == tf and r.get("metrics")]
        lines += [
            f"**{'With the TF list' if tf else 'Without a TF list'}** (mean ± sd over seeds; random AUPRC "
            f"{_mean_sd([r['metrics']['auprc_random_dir'] for r in sub])} directed, "
            f"{_mean_sd([r['metrics']['auprc_random_skel'] for r in sub])} skeleton)",
            "",
        ]
        lines.append("| method | " + " | ".join(c[1] for c in COLUMNS) + " | runs | notes |")
        lines.append("| --- |" + " ---: |" * len(COLUMNS) + " ---: | --- |")
        for method in METHODS:
            rows = [r for r in runs if r["method"] == method and r["tf"] == tf]
            if not rows:
                continue
            ok = [r for r in rows if r["status"] == "ok"]
            cells = []
            for key, _ in COLUMNS:
                if key == "time_s":
                    cells.append(_mean_sd([r["time_s"] for r in ok]))
                elif key == "n_edges":
                    cells.append(_edges_cell(ok))
                else:
                    cells.append(_mean_sd([r["metrics"].get(key) for r in ok]))
            notes = sorted({r["info"].get("score_source", "") for r in ok} - {""})
            bad = [r["status"] for r in rows if r["status"] != "ok"]
            if bad:
                limit = max(r["info"].get("time_limit_s", 0) for r in rows)
                notes.append(f"{len(bad)} {'/'.join(sorted(set(bad)))} (limit {limit:.0f} s)")
            unconverged = sum(1 for r in ok if r["info"].get("converged") is False)
            if unconverged:
                notes.append(f"{unconverged} not converged")
            if method == "dagma" and tf:
                notes.append("no TF input: scores restricted to TF rows")
            notes = "; ".join(notes).replace("|", "\\|")  # a bare | would end the cell
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {len(ok)} | {notes} |")
        lines.append("")
    return "\n".join(lines)


def write_markdown(store: dict, out_dir: str) -> list[str]:
    paths = []
    for n_genes in sorted({r["G"] for r in store["runs"]}):
        header = [
            f"Realistic single-cell benchmark (SERGIO), written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            "",
            "Command(s): " + "; ".join(f"`{c}`" for c in store.get("commands", [store.get("command", "")])),
            "",
            f"Threads: {store['threads']}",
            "",
            f"1-minute load average before each method: {_load_range(store, n_genes)}",
            "",
            f"gene-dag from {store['gene_dag_source']}",
            "",
        ]
        path = os.path.join(out_dir, f"table_G{n_genes}.md")
        with open(path, "w") as fh:
            fh.write(
                "\n".join(header)
                + "\n".join(markdown_table(store["runs"], n_genes, scope) for scope in SCOPE_TITLES)
                + "\n"
            )
        paths.append(path)
    return paths


def _load_range(store: dict, n_genes: int) -> str:
    loads = [r["loadavg_before"] for r in store["runs"] if r["G"] == n_genes and "loadavg_before" in r]
    return f"{min(loads):.2f}–{max(loads):.2f}" if loads else "–"


def _key(r: dict) -> tuple:
    return (r["G"], r["seed"], r["method"], r["tf"], r.get("scope", "pooled"))


def _datasets(counts, scope: str) -> list:
    """[(group name, data)] for one scope: the pooled cells, or each cell type alone."""
    import numpy as np

    from gene_dag.preprocess import preprocess

    groupby = None if scope == "pooled" else "cell_type"
    logs, _ = preprocess(counts, values="counts", groupby=groupby)
    stds, _ = preprocess(counts, values="counts", groupby=groupby, scale_values=True)
    out = []
    for lg, sg in zip(logs, stds, strict=True):
        ad = lg.adata
        X = ad.X.toarray() if hasattr(ad.X, "toarray") else np.asarray(ad.X, dtype=np.float64)
        variances = X.var(axis=0)
        tf_mask = ad.var["is_tf"].to_numpy(dtype=bool)
        truth = ad.varp["true_dag"]
        facts = {
            "n_genes": int(ad.n_vars),
            "n_cells": int(ad.n_obs),
            "n_true": int(truth.nnz),
            "n_tfs": int(tf_mask.sum()),
            "zero_fraction": counts.uns["simulation"]["zero_fraction"],
            "n_dropped_genes": int(counts.n_vars - ad.n_vars),
            "variance_min_median_max": [
                float(np.min(variances)),
                float(np.median(variances)),
                float(np.max(variances)),
            ],
        }
        out.append(
            (
                lg.name,
                {
                    "X": X,
                    "X_std": np.asarray(sg.adata.X),
                    "genes": np.asarray(ad.var_names, dtype=str),
                    "tf_mask": tf_mask,
                    "tf_index": np.flatnonzero(tf_mask),
                    "cell_type": ad.obs["cell_type"].to_numpy(),
                    "truth": truth,
                    "facts": facts,
                },
            )
        )
    return out


def run_method(method: str, tf: bool, d: dict, seed: int, args, peer_cache: dict, key: tuple):
    """(scores, info) of one method on one data set; info["_pred"] holds the thresholded edges."""
    genes = d["genes"]
    tfs = genes[d["tf_mask"]] if tf else None
    if method in GENE_DAG_VARIANTS:
        return run_gene_dag(
            method, d["X_std"] if GENE_DAG_VARIANTS[method][1] == "scaled" else d["X"], genes, tfs, d["cell_type"]
        )
    if method == "pearson":
        return run_pearson(d["X"])
    if method == "dagma":  # DAGMA takes no TF list: one fit serves both rows
        if key not in peer_cache:
            peer_cache[key] = run_peer("dagma", d["X_std"], genes, None, seed, args)
        S, info = peer_cache[key]
        info = dict(info)
        if S is not None:
            info["_pred"] = S * (S > 0.3)
        return S, info
    return run_peer(method, d["X"], genes, tfs, seed, args)


def _combine(parts: list, n_genes: int, seed: int, method: str, tf: bool, scope: str, load: float, facts: list) -> dict:
    """One record from the runs on each data set of a scope: metrics and counts averaged."""
    import numpy as np

    infos = [i for i, _ in parts]
    statuses = [i.pop("status", "ok") for i in infos]
    status = "ok" if all(s == "ok" for s in statuses) else next(s for s in statuses if s != "ok")
    info = dict(infos[0])
    for k in ("n_edges", "n_correct", "n_reversed", "n_extra", "n_scored"):
        if all(k in i for i in infos):
            info[k] = float(np.mean([i[k] for i in infos]))
    if any("converged" in i for i in infos):
        info["converged"] = all(i.get("converged", True) for i in infos)
    record = {
        "G": n_genes,
        "seed": seed,
        "method": method,
        "tf": tf,
        "scope": scope,
        "status": status,
        "time_s": float(sum(i["fit_time_s"] for i in infos if "fit_time_s" in i)),
        "loadavg_before": load,
        "info": info,
        "data": facts[0] if len(facts) == 1 else _mean_facts(facts),
        "n_datasets": len(parts),
    }
    if status == "ok":
        record["metrics"] = {k: float(np.mean([m[k] for _, m in parts])) for k in parts[0][1]}
    return record


def _mean_facts(facts: list) -> dict:
    import numpy as np

    out = {k: float(np.mean([f[k] for f in facts])) for k in facts[0] if k != "variance_min_median_max"}
    out["variance_min_median_max"] = [
        float(np.min([f["variance_min_median_max"][0] for f in facts])),
        float(np.median([f["variance_min_median_max"][1] for f in facts])),
        float(np.max([f["variance_min_median_max"][2] for f in facts])),
    ]
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--genes", type=int, nargs="+", default=[100], help="G values (default 100)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=METHODS,
        metavar="METHOD",
        help=f"default: all of {', '.join(METHODS)}",
    )
    p.add_argument("--cell-types", type=int, default=4)
    p.add_argument("--cells-per-type", type=int, default=500)
    p.add_argument("--max-parents", type=int, default=2, help="regulators kept per target (default 2)")
    p.add_argument("--threads", type=int, default=1, help="BLAS/torch threads of every method (default 1)")
    p.add_argument("--dask-workers", type=int, default=2, help="GRNBoost2's single-threaded dask workers")
    p.add_argument("--time-limit", type=float, default=1200.0, help="DAGMA's cap in seconds (default 1200)")
    p.add_argument("--grnboost-time-limit", type=float, default=3600.0)
    p.add_argument("--out-dir", default=os.path.join(HERE, "out", "realistic_sc"))
    p.add_argument(
        "--scopes",
        nargs="+",
        default=["pooled"],
        choices=["pooled", "per-type"],
        help="pooled: one network over all cells (default); per-type: one per cell type, "
        "metrics averaged over the types",
    )
    p.add_argument("--fresh", action="store_true", help="forget earlier results in --out-dir")
    p.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        child_main(*args._child)
        return 0

    cp.set_thread_env(args.threads)
    import gene_dag
    from gene_dag.metrics import count_accuracy

    threads = cp.thread_summary(cp.pin_threads(args.threads, use_torch=True))
    os.makedirs(args.out_dir, exist_ok=True)
    store_path = os.path.join(args.out_dir, "results.json")
    store = {"runs": []}
    if os.path.exists(store_path) and not args.fresh:
        with open(store_path) as fh:
            store = json.load(fh)
    command = shlex.join(["benchmarks/realistic_sc.py", *(argv if argv is not None else sys.argv[1:])])
    store["threads"] = (
        f"{threads}; GRNBoost2: {args.dask_workers} dask worker process(es) x 1 thread; "
        f"DAGMA in a child with the same BLAS limit"
    )
    store["gene_dag_source"] = os.path.dirname(gene_dag.__file__)
    done = {_key(r) for r in store["runs"] if r["status"] in ("ok", "timeout")}
    cache: dict = {}

    for n_genes in args.genes:
        for seed in args.seeds:
            todo = [
                (m, tf, scope)
                for scope in args.scopes
                for m in args.methods
                for tf in (True, False)
                if (n_genes, seed, m, tf, scope) not in done
            ]
            if not todo:
                continue
            if command not in store.setdefault("commands", []):
                store["commands"].append(command)
            counts, _ = load_or_simulate(args.out_dir, n_genes, seed, args, cache)
            datasets = {scope: _datasets(counts, scope) for scope in args.scopes}
            peer_cache: dict = {}
            for method, tf, scope in todo:
                load = os.getloadavg()[0]
                parts = []
                for name, d in datasets[scope]:
                    t0 = time.perf_counter()
                    S, info = run_method(method, tf, d, seed, args, peer_cache, key=(scope, name))
                    info.setdefault("fit_time_s", time.perf_counter() - t0)
                    pred = info.pop("_pred", None)
                    if pred is not None:
                        acc = count_accuracy(d["truth"], pred)
                        info.update({k: acc[k] for k in ("n_correct", "n_reversed", "n_extra")})
                    metrics = None if S is None else score_all(S, d["truth"], d["tf_index"] if tf else None)
                    parts.append((info, metrics))
                record = _combine(
                    parts, n_genes, seed, method, tf, scope, load, [d["facts"] for _, d in datasets[scope]]
                )
                store["runs"] = [r for r in store["runs"] if _key(r) != _key(record)]
                store["runs"].append(record)
                m, info = record.get("metrics") or {}, record["info"]
                print(
                    f"G={n_genes} seed={seed} {scope:8s} {method:40s} tf={tf!s:5s} {record['status']:7s} "
                    f"AUPRC {m.get('auprc_dir', float('nan')):.3f} (x{m.get('auprc_ratio_dir', float('nan')):.2f}) "
                    f"EPR {m.get('epr_dir', float('nan')):.2f} skel {m.get('auprc_skel', float('nan')):.3f} "
                    f"edges {info.get('n_edges', '-')} {record['time_s']:.1f} s",
                    flush=True,
                )
                tmp = store_path + ".tmp"
                with open(tmp, "w") as fh:
                    json.dump(store, fh, indent=1)
                os.replace(tmp, store_path)
            write_markdown(store, args.out_dir)  # after every (G, seed): a stopped run still has its tables
    for path in write_markdown(store, args.out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
