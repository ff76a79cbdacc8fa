"""The Snakemake workflow, run for real with the `snakemake` command on tiny data in a temporary directory.

One small simulated counts dataset (300 cells x 30 genes, a known graph): tissues liver and
lung (140 cells each) get networks, "tiny gland" (20 cells) is below min_group_size and is
skipped. The tests share one run (module fixture) and then rerun it: nothing changed does
nothing; a changed solver parameter reruns solve and what follows it, nothing before it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anndata
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GROUPS = {"liver": "liver", "lung": "lung"}  # group name -> slug (the kept ones)
REGULATORS = ["G00", "G01", "G02", "G03", "G04", "G05"]
LUNG_REGULATORS = ["G00", "G01", "G02", "G03"]
FORBIDDEN = [("G00", "G06"), ("G01", "G07")]  # both are true edges: only the prior keeps them out
GROUP_FILES = [
    "selected.h5ad", "prior/regulators.txt", "prior/prior_edges.tsv", "prior/prior_report.json",
    "solved.h5ad", "network.h5ad", "edges.tsv", "network.graphml", "summary.json", "metrics.json",
    "figures/network.png", "figures/degree.png", "figures/convergence.png", "figures/regulators.tsv",
    "figures/facts.tsv", "effects/effects.tsv", "effects/effects.png", "effects/knockout.tsv",
    "effects/knockout.png",
]  # fmt: skip
GROUP_LOGS = ["select", "prior", "solve", "export", "evaluate", "figures", "effects", "knockout"]
EFFECTS = {"genes": ["G00", "G01", "NOT_A_GENE"], "knockout": ["G00"]}  # absent genes are skipped

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """`snakemake -s <repo>/Snakefile --directory WORKDIR --cores 2 ARGS`, with the venv's bin on PATH."""
    exe = BIN / "snakemake"
    exe = str(exe) if exe.exists() else shutil.which("snakemake")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [exe, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2", *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def output_of(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def jobs_run(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """The first 'Job stats' table of a Snakemake run: rule -> number of jobs."""
    text = proc.stdout + proc.stderr
    match = re.search(r"Job stats:\n.*?\n-+ +-+\n(.*?)\ntotal", text, re.S)
    if match is None:
        return {}
    return {line.split()[0]: int(line.split()[1]) for line in match.group(1).splitlines() if line.strip()}


def make_data(path: Path, seed: int = 0) -> None:
    """Counts from a linear SEM on a known DAG (regulators G00-G05 -> targets), with obs['tissue']."""
    rng = np.random.default_rng(seed)
    d, sizes = 30, {"liver": 140, "lung": 140, "tiny gland": 20}
    n = sum(sizes.values())
    W = np.zeros((d, d))
    W[0, 1], W[1, 2] = 0.8, -0.7
    W[0, 6], W[1, 7] = 0.9, 0.9  # the edges the prior forbids
    for j in range(8, d):
        for r in rng.choice(6, size=rng.integers(1, 3), replace=False):
            W[r, j] = rng.choice([-1, 1]) * rng.uniform(0.5, 1.0)
    Z = rng.normal(size=(n, d))
    X = Z.copy()
    for j in range(d):  # columns are in topological order
        X[:, j] = Z[:, j] + X @ W[:, j]
    X /= X.std(axis=0)
    counts = rng.poisson(np.exp(1.0 + 0.5 * X)).astype(np.float32)
    obs = pd.DataFrame(
        {"tissue": pd.Categorical(np.repeat(list(sizes), list(sizes.values())))},
        index=[f"cell{i}" for i in range(n)],
    )
    adata = anndata.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=[f"G{j:02d}" for j in range(d)]))
    adata.varp["true_dag"] = sp.csr_matrix(W)
    adata.write_h5ad(path)


def write_config(workdir: Path, **solver) -> None:
    config = {
        "seed": 1,
        "solver": {"lambda1": 0.05, "w_threshold": 0.1, "max_time": 60, "device": "cpu", **solver},
        "resources": {"solve": {"threads": 1, "mem_mb": 1000, "runtime": 10}},
        "datasets": [
            {
                "name": "toy",
                "input": "data.h5ad",
                "values": "counts",
                "groupby": "tissue",
                "min_group_size": 50,
                "qc": {"min_cells": 3},
                "genes": {"method": "hvg", "n_top": 20, "flavor": "seurat"},
                "priors": {
                    "regulators": "priors/regulators.txt",
                    "edges": "priors/edges.tsv",
                    "groups": {"lung": {"regulators": "priors/lung_regulators.txt"}},
                },
                "effects": EFFECTS,
            }
        ],
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def prepare(workdir: Path) -> None:
    make_data(workdir / "data.h5ad")
    priors = workdir / "priors"
    priors.mkdir()
    (priors / "regulators.txt").write_text("\n".join(REGULATORS + ["NOT_A_GENE"]) + "\n")
    (priors / "lung_regulators.txt").write_text("\n".join(LUNG_REGULATORS) + "\n")
    (priors / "edges.tsv").write_text(
        "source\ttarget\ttype\n" + "".join(f"{s}\t{t}\tforbidden\n" for s, t in FORBIDDEN)
    )
    write_config(workdir)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    prepare(workdir)
    proc = snakemake(workdir, "--configfile", "config.yaml")
    assert proc.returncode == 0, output_of(proc)
    return workdir, proc


def group_dir(workdir: Path, slug: str) -> Path:
    return workdir / "results" / "toy" / "groups" / slug


def edge_set(adata) -> set[tuple[str, str]]:
    coo = sp.coo_matrix(adata.varp["gene_dag"])
    return {
        (adata.var_names[r], adata.var_names[c]) for r, c, w in zip(coo.row, coo.col, coo.data, strict=True) if w != 0
    }


# ----------------------------------------------------------------------------- one run


def test_every_expected_file_exists(run):
    workdir, _ = run
    expected = [workdir / "results" / name for name in ("summary.tsv", "toy/summary.tsv", "toy/groups.tsv")]
    expected += [workdir / "logs" / "toy" / "preprocess.log", workdir / "results/toy/benchmarks/preprocess.tsv"]
    for slug in GROUPS.values():
        expected += [group_dir(workdir, slug) / f for f in GROUP_FILES]
        expected += [workdir / "logs" / "toy" / slug / f"{step}.log" for step in GROUP_LOGS]
        expected += [workdir / "results/toy/benchmarks" / step / f"{slug}.tsv" for step in ("solve", "export")]
    missing = [str(p.relative_to(workdir)) for p in expected if not p.is_file()]
    assert not missing
    bench = pd.read_csv(workdir / "results/toy/benchmarks/solve/liver.tsv", sep="\t")
    assert {"s", "max_rss"} <= set(bench.columns)


def test_network_h5ad_is_a_dag_over_the_selected_genes(run):
    workdir, _ = run
    for slug in GROUPS.values():
        net = anndata.read_h5ad(group_dir(workdir, slug) / "network.h5ad")
        selected = anndata.read_h5ad(group_dir(workdir, slug) / "selected.h5ad")
        W = net.varp["gene_dag"]
        assert sp.issparse(W) and W.shape == (net.n_vars, net.n_vars)
        assert list(net.var_names) == list(selected.var_names)
        assert set(REGULATORS if slug == "liver" else LUNG_REGULATORS) <= set(net.var_names)  # forced in
        assert nx.is_directed_acyclic_graph(nx.from_scipy_sparse_array(sp.csr_matrix(W), create_using=nx.DiGraph))
        assert isinstance(net.uns["gene_dag"], dict)
        assert len(edge_set(net)) > 0

        table = pd.read_csv(group_dir(workdir, slug) / "edges.tsv", sep="\t")
        assert list(table.columns) == ["source", "target", "weight", "weight_std", "score", "in_network"]
        edges = table[table["in_network"]]
        assert (~table["in_network"]).sum() > 0  # ranked candidates below the threshold follow the network
        assert list(table["in_network"]) == sorted(table["in_network"], reverse=True)
        assert set(zip(edges["source"], edges["target"], strict=True)) == edge_set(net)
        assert (np.diff(edges["score"].to_numpy()) <= 1e-6).all()  # ranked by score
        coo = sp.coo_matrix(W)
        lookup = {(net.var_names[r], net.var_names[c]): w for r, c, w in zip(coo.row, coo.col, coo.data, strict=True)}
        for s, t, w in edges[["source", "target", "weight"]].itertuples(index=False):
            assert w == pytest.approx(lookup[(s, t)], rel=1e-5)

        graph = nx.read_graphml(group_dir(workdir, slug) / "network.graphml")
        assert set(graph.edges) == edge_set(net)
        summary = json.loads((group_dir(workdir, slug) / "summary.json").read_text())
        assert summary["n_edges"] == len(edges) and summary["group"] == slug and summary["dataset"] == "toy"
        metrics = json.loads((group_dir(workdir, slug) / "metrics.json").read_text())
        assert {"shd", "tpr", "fdr"} <= set(metrics)


def test_priors_are_honoured(run):
    workdir, _ = run
    for slug, regulators in (("liver", REGULATORS), ("lung", LUNG_REGULATORS)):
        net = anndata.read_h5ad(group_dir(workdir, slug) / "network.h5ad")
        edges = edge_set(net)
        sources = {s for s, _ in edges}
        assert sources <= set(regulators), f"{slug}: edges out of non-regulators {sources - set(regulators)}"
        assert not edges & set(FORBIDDEN)
        if slug == "liver":  # not vacuous: a forbidden pair is in the network's genes, and edges exist
            assert any(s in net.var_names and t in net.var_names for s, t in FORBIDDEN)
            assert len(edges) >= 3
        report = json.loads((group_dir(workdir, slug) / "prior/prior_report.json").read_text())
        assert report["n_regulators"] == len(regulators)
        assert report["n_forbidden"] == sum(t in set(net.var_names) for _, t in FORBIDDEN)
        if slug == "liver":
            assert report["missing_regulators"] == ["NOT_A_GENE"]
        written = (group_dir(workdir, slug) / "prior/regulators.txt").read_text().split()
        assert sorted(written) == sorted(regulators)


def test_small_group_is_skipped_with_a_logged_reason(run):
    workdir, _ = run
    manifest = pd.read_csv(workdir / "results/toy/groups.tsv", sep="\t", keep_default_na=False)
    row = manifest.set_index("group").loc["tiny gland"]
    assert row["status"] == "skipped" and row["reason"] == "20 cells < min_group_size 50"
    assert sorted(manifest.loc[manifest["status"] == "kept", "slug"]) == sorted(GROUPS.values())
    log = (workdir / "logs/toy/preprocess.log").read_text()
    assert "group 'tiny gland' skipped: 20 cells < min_group_size 50" in log
    assert not (workdir / "results/toy/groups/tiny_gland").exists()


def test_run_prints_the_summary_with_accuracy(run):
    workdir, proc = run
    table = pd.read_csv(workdir / "results/summary.tsv", sep="\t")
    assert sorted(table["group"]) == sorted(GROUPS) and table["tpr"].notna().all()
    assert "gene-dag: 2 network(s)" in proc.stderr + proc.stdout


def test_tl_learn_dag_gives_the_workflow_edges(run):
    from gene_dag import tl

    workdir, _ = run
    base = group_dir(workdir, "liver")
    adata = anndata.read_h5ad(base / "selected.h5ad")
    tl.learn_dag(adata, regulators=str(base / "prior/regulators.txt"), prior=str(base / "prior/prior_edges.tsv"),
                 lambda1=0.05, w_threshold=0.1, acyclicity="auto", device="cpu", max_time=60, seed=1)  # fmt: skip
    net = anndata.read_h5ad(base / "network.h5ad")
    assert edge_set(adata) == edge_set(net) and len(edge_set(net)) >= 3
    np.testing.assert_allclose(adata.varp["gene_dag"].toarray(), net.varp["gene_dag"].toarray(), atol=1e-5)
    assert set(adata.uns["gene_dag"]["run"]) <= set(net.uns["gene_dag"]["run"])


def test_effects_and_knockout_rules_match_tl(run):
    from gene_dag import tl

    workdir, _ = run
    for slug in GROUPS.values():
        base = group_dir(workdir, slug)
        net = anndata.read_h5ad(base / "network.h5ad")
        table = pd.read_csv(base / "effects/effects.tsv", sep="\t")
        assert set(table["intervened"]) <= {"G00", "G01"} and len(table) > 0
        tl.effects(net, ["G00", "G01"])
        for row in table.itertuples():
            assert row.total_effect == pytest.approx(net.varm["effects"].loc[row.gene, row.intervened], rel=1e-6)
        ko = pd.read_csv(base / "effects/knockout.tsv", sep="\t").set_index("gene")
        assert ko.loc["G00", "predicted"] == pytest.approx(0.0, abs=1e-6)
        tl.knockout(net, ["G00"])
        shift = net.uns["knockout"]["shift"]["all"]
        np.testing.assert_allclose(ko["shift"].to_numpy(), shift.loc[ko.index].to_numpy(), rtol=1e-5, atol=1e-7)
        assert "NOT_A_GENE" in (workdir / "logs/toy" / slug / "effects.log").read_text()


def test_report_has_one_section_per_group(run):
    workdir, _ = run
    proc = snakemake(workdir, "--configfile", "config.yaml", "--report", "report.html")
    assert proc.returncode == 0, output_of(proc)
    html = (workdir / "report.html").read_text()
    start = html.index("var categories = ") + len("var categories = ")
    categories = json.JSONDecoder().raw_decode(html[start:])[0]
    assert list(categories) == ["toy"]
    assert sorted(categories["toy"]) == sorted(GROUPS.values())
    for slug, files in categories["toy"].items():
        names = {"/".join(Path(f).parts[-2:]) for f in files}
        assert names == {f for f in GROUP_FILES if f.startswith(("figures/", "effects/"))}, slug
    facts = pd.read_csv(group_dir(workdir, "liver") / "figures/facts.tsv", sep="\t").set_index("what")["value"]
    metrics = json.loads((group_dir(workdir, "liver") / "metrics.json").read_text())
    assert float(facts["true positive rate (TPR)"]) == pytest.approx(metrics["tpr"])
    assert "Causal gene regulatory networks learned by gene-dag" in html  # the workflow description


# ----------------------------------------------------------------------------- reruns (order matters)


def test_second_run_with_nothing_changed_does_nothing(run):
    workdir, _ = run
    before = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    proc = snakemake(workdir, "--configfile", "config.yaml")
    assert proc.returncode == 0, output_of(proc)
    assert "Nothing to be done" in proc.stdout + proc.stderr, output_of(proc)
    after = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    assert after == before


def test_changed_solver_parameter_reruns_solve_and_what_follows(run):
    workdir, _ = run
    files = [p for p in (workdir / "results").rglob("*") if p.is_file() and "benchmarks" not in p.parts]
    before = {p: p.stat().st_mtime_ns for p in files}
    write_config(workdir, lambda1=0.1)
    proc = snakemake(workdir, "--configfile", "config.yaml")
    assert proc.returncode == 0, output_of(proc)
    assert jobs_run(proc) == {
        "solve": 2, "export": 2, "evaluate": 2, "figures": 2, "effects": 2, "knockout": 2,
        "dataset_summary": 1, "report_index": 1, "summary": 1, "default": 1,
    }, output_of(proc)  # fmt: skip
    changed = {p.relative_to(workdir).as_posix() for p in files if p.stat().st_mtime_ns != before[p]}
    downstream = {"solved.h5ad", "network.h5ad", "edges.tsv", "network.graphml", "summary.json", "metrics.json"}
    downstream |= {f for f in GROUP_FILES if f.startswith(("figures/", "effects/"))}
    expected = {f"results/toy/groups/{slug}/{name}" for slug in GROUPS.values() for name in downstream}
    expected |= {"results/toy/summary.tsv", "results/summary.tsv", "results/toy/figures.tsv"}
    assert changed == expected
    for slug in GROUPS.values():
        net = anndata.read_h5ad(group_dir(workdir, slug) / "network.h5ad")
        assert net.uns["gene_dag"]  # the rerun wrote a fresh record


# ----------------------------------------------------------------------------- configuration errors


@pytest.fixture
def bad_config_dir(tmp_path):
    prepare(tmp_path)
    return tmp_path


def edit_config(workdir: Path, edit) -> None:
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    edit(config)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["datasets"][0].update(min_group_size="ten"), r"'ten' is not of type 'integer'"),
        (lambda c: c["solver"].update(lambda1="strong"), r"'strong' is not of type 'number'"),
        (lambda c: c["datasets"][0].update(colour="red"), r"'colour' was unexpected"),
        (lambda c: c.update(sede=3), r"'sede' was unexpected"),
        (lambda c: c["datasets"][0].update(input="nowhere/data.h5ad"),
         r"config key datasets\[0\]\.input: file not found: nowhere/data\.h5ad"),
        (lambda c: c["datasets"][0]["priors"].update(regulators="priors/typo.txt"),
         r"config key datasets\[0\]\.priors\.regulators: file not found: priors/typo\.txt"),
        (lambda c: c["datasets"][0]["priors"]["groups"]["lung"].update(edges="priors/none.tsv"),
         r"config key datasets\[0\]\.priors\.groups\['lung'\]\.edges: file not found: priors/none\.tsv"),
    ],
    ids=["wrong-type", "wrong-type-solver", "unknown-key", "unknown-top-key", "missing-input",
         "missing-prior", "missing-group-prior"],
)  # fmt: skip
def test_bad_config_stops_before_any_job(bad_config_dir, edit, message):
    edit_config(bad_config_dir, edit)
    proc = snakemake(bad_config_dir, "--configfile", "config.yaml")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(message, text), output_of(proc)
    assert "Job stats" not in text and not (bad_config_dir / "results").exists()


def test_schema_errors_name_the_key(bad_config_dir):
    edit_config(bad_config_dir, lambda c: c["datasets"][0].update(min_group_size="ten"))
    proc = snakemake(bad_config_dir, "--configfile", "config.yaml")
    assert "min_group_size" in proc.stdout + proc.stderr, output_of(proc)


# ----------------------------------------------------------------------------- lint and the default config


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("default")
    shutil.copytree(REPO / "config", workdir / "config")
    return workdir


def test_lint_reports_nothing(default_dir):
    proc = snakemake(default_dir, "--lint")
    assert proc.returncode == 0, output_of(proc)
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr, output_of(proc)
    assert "Lints for" not in proc.stdout + proc.stderr


def test_dry_run_of_the_default_config(default_dir):
    proc = snakemake(default_dir, "--dry-run")
    assert proc.returncode == 0, output_of(proc)
    jobs = jobs_run(proc)
    assert jobs.get("preprocess") == 2 and jobs.get("simulate") == 1, output_of(proc)
    assert not (default_dir / "results").exists()
