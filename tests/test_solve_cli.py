"""``gene-dag solve``: output layout, --max-time, bad inputs, and resuming a killed run
from its checkpoint (the real console script in a subprocess, killed with SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata
import numpy as np
import pytest
import scipy.sparse as sp

from gene_dag.cli import main
from gene_dag.graph import is_dag
from gene_dag.metrics import count_accuracy
from gene_dag.simulate import simulate_adata

GENE_DAG = str(Path(sys.executable).with_name("gene-dag"))
CHECKPOINT = "solver_state.pt"


def edges(W: sp.spmatrix) -> set[tuple[int, int]]:
    coo = sp.coo_matrix(W)
    keep = coo.data != 0
    return set(zip(coo.row[keep].tolist(), coo.col[keep].tolist(), strict=True))


def write_data(path: Path, **kw) -> anndata.AnnData:
    ad = simulate_adata(**kw)
    ad.write_h5ad(path)
    return ad


def run_error(capsys, argv: list[str]) -> str:
    """Run the CLI in-process, expect exit status 2; return its stderr."""
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    return err


# ------------------------------------------------------------------------- output layout


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """tf graph, 30 genes (6 regulators), solved with the true regulator list."""
    tmp = tmp_path_factory.mktemp("solve")
    ad = write_data(tmp / "in.h5ad", d=30, n=2000, graph_type="tf", n_regulators=6, seed=1)
    regs = tmp / "regs.txt"
    regs.write_text("".join(f"{g}\n" for g in ad.var_names[ad.var["is_regulator"].to_numpy()]))
    out = tmp / "out.h5ad"
    status = main(
        [
            "solve",
            str(tmp / "in.h5ad"),
            "--out",
            str(out),
            "--regulators",
            str(regs),
            "--device",
            "cpu",
            "--no-standardize",
            "--seed",
            "3",
        ]
    )
    assert status == 0
    return ad, out, regs


def test_output_varp_is_a_csr_float32_dag_over_all_genes(solved):
    ad, out, _ = solved
    res = anndata.read_h5ad(out)
    assert list(res.var_names) == list(ad.var_names) and res.n_obs == ad.n_obs
    W = res.varp["gene_dag"]
    assert sp.issparse(W) and W.format == "csr"
    assert W.dtype == np.float32 and W.shape == (30, 30)
    assert is_dag(W) and not W.diagonal().any()
    # row = regulator (cause), column = target: rows are regulators, and the graph is the true one
    is_reg = res.var["is_regulator"].to_numpy()
    assert is_reg[np.unique(W.tocoo().row)].all()
    acc = count_accuracy(ad.varp["true_dag"], W)
    assert acc["shd"] <= 2 and acc["tpr"] >= 0.9 and acc["fdr"] <= 0.1, acc
    np.testing.assert_array_equal(np.asarray(res.X), np.asarray(ad.X))  # the input data travel along
    assert "true_dag" in res.varp


def test_output_uns_records_parameters_versions_and_run(solved):
    _, out, regs = solved
    res = anndata.read_h5ad(out)
    info = res.uns["gene_dag"]
    assert {"parameters", "versions", "run"} <= set(info)
    params = info["parameters"]
    assert params["lambda1"] == "auto" and params["w_threshold"] == "auto" and params["standardize"] is False
    # --no-standardize: the automatic values are the raw problem's fixed ones
    assert info["run"]["lambda1_selected"] == pytest.approx(0.02) and info["run"]["w_threshold_used"] == 0.3
    assert params["seed"] == 3 and params["device"] == "cpu"
    assert params["regulators"] == str(regs) and params["prior"] == "none" and params["layer"] == "X"
    assert params["max_time"] == "none"
    versions = info["versions"]
    for pkg in ("gene-dag", "torch", "numpy", "scipy", "anndata", "python"):
        assert isinstance(versions[pkg], str) and versions[pkg]
    run = info["run"]
    assert bool(run["converged"]) is True
    assert float(run["wall_time_s"]) > 0 and float(run["total_wall_time_s"]) >= float(run["wall_time_s"])
    assert np.isfinite(float(run["score"]))
    assert 0 <= float(run["final_h"]) < 1e-4
    assert int(run["n_edges"]) == res.varp["gene_dag"].nnz
    assert int(run["n_genes"]) == 30 and int(run["n_regulators"]) == 6 and int(run["n_cells"]) == 2000


def test_max_time_still_writes_a_dag_marked_not_converged(tmp_path):
    # 30-gene ER2 graph: the constrained stage alone takes a second or more here, so a
    # 0.01 s limit always cuts the run short
    write_data(tmp_path / "in.h5ad", d=30, n=500, graph_type="er", seed=4)
    out = tmp_path / "out.h5ad"
    assert (
        main(
            [
                "solve",
                str(tmp_path / "in.h5ad"),
                "--out",
                str(out),
                "--max-time",
                "0.01",
                "--device",
                "cpu",
                "--no-standardize",
            ]
        )
        == 0
    )
    res = anndata.read_h5ad(out)
    W = res.varp["gene_dag"]
    assert sp.issparse(W) and W.shape == (30, 30) and is_dag(W)
    run = res.uns["gene_dag"]["run"]
    assert bool(run["converged"]) is False
    assert bool(run["timed_out"]) is True
    assert float(res.uns["gene_dag"]["parameters"]["max_time"]) == pytest.approx(0.01)


# --------------------------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def small_h5ad(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "in.h5ad"
    write_data(path, d=8, n=100, graph_type="er", seed=0)
    return path


def _assert_one_line_error(err: str, *must_contain: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gene-dag solve: error:"), err
    for text in must_contain:
        assert text in lines[0], err


def test_missing_input_file(tmp_path, capsys):
    missing, out = tmp_path / "nope.h5ad", tmp_path / "out.h5ad"
    err = run_error(capsys, ["solve", str(missing), "--out", str(out)])
    _assert_one_line_error(err, str(missing), "not found")
    assert not out.exists()


def test_nan_in_expression(tmp_path, capsys):
    ad = simulate_adata(d=8, n=50, seed=0)
    ad.X[3, 2] = np.nan
    path, out = tmp_path / "nan.h5ad", tmp_path / "out.h5ad"
    ad.write_h5ad(path)
    err = run_error(capsys, ["solve", str(path), "--out", str(out)])
    _assert_one_line_error(err, str(path), "NaN", ad.var_names[2])
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_duplicate_gene_names(tmp_path, capsys):
    ad = simulate_adata(d=8, n=50, seed=0)
    names = list(ad.var_names)
    names[5] = names[1]
    ad.var_names = names
    path, out = tmp_path / "dup.h5ad", tmp_path / "out.h5ad"
    ad.write_h5ad(path)
    err = run_error(capsys, ["solve", str(path), "--out", str(out)])
    _assert_one_line_error(err, str(path), "duplicate", names[1])
    assert not out.exists()


def test_missing_regulators_file(small_h5ad, tmp_path, capsys):
    regs, out = tmp_path / "regs.txt", tmp_path / "out.h5ad"
    err = run_error(capsys, ["solve", str(small_h5ad), "--out", str(out), "--regulators", str(regs)])
    _assert_one_line_error(err, str(regs), "not found")
    assert not out.exists()


def test_malformed_prior_file(small_h5ad, tmp_path, capsys):
    prior, out = tmp_path / "prior.tsv", tmp_path / "out.h5ad"
    prior.write_text("source\ttarget\nG0000\tG0001\n")
    err = run_error(capsys, ["solve", str(small_h5ad), "--out", str(out), "--prior", str(prior)])
    _assert_one_line_error(err, str(prior), "column")
    assert not out.exists()


def test_regulator_list_naming_no_known_gene_fails(small_h5ad, tmp_path, capsys):
    regs, out = tmp_path / "regs.txt", tmp_path / "out.h5ad"
    regs.write_text("NOPE1\nNOPE2\n")
    err = run_error(capsys, ["solve", str(small_h5ad), "--out", str(out), "--regulators", str(regs)])
    _assert_one_line_error(err, "none of the 2 regulators is a gene of the data")
    assert not out.exists()


def test_regulator_list_naming_no_known_gene_names_the_file(small_h5ad, tmp_path, capsys):
    regs, out = tmp_path / "regs.txt", tmp_path / "out.h5ad"
    regs.write_text("NOPE1\nNOPE2\n")
    err = run_error(capsys, ["solve", str(small_h5ad), "--out", str(out), "--regulators", str(regs)])
    _assert_one_line_error(err, str(regs))


def test_edge_prior_naming_no_known_gene_fails(small_h5ad, tmp_path, capsys):
    prior, out = tmp_path / "prior.tsv", tmp_path / "out.h5ad"
    prior.write_text("source\ttarget\ttype\nNOPE1\tNOPE2\tforbidden\nNOPE3\tNOPE1\trequired\n")
    err = run_error(capsys, ["solve", str(small_h5ad), "--out", str(out), "--prior", str(prior)])
    _assert_one_line_error(err, str(prior))
    assert not out.exists()


def test_missing_input_via_console_script(tmp_path):
    # the installed command itself: exit 2, one line on stderr naming the file, no output
    missing, out = tmp_path / "nope.h5ad", tmp_path / "out.h5ad"
    proc = subprocess.run(
        [GENE_DAG, "solve", str(missing), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    _assert_one_line_error(proc.stderr, str(missing))
    assert not out.exists()


# ------------------------------------------------------------------------------- resume


def _solve_cmd(inp: Path, out: Path, ckpt: Path) -> list[str]:
    return [
        GENE_DAG,
        "-q",
        "solve",
        str(inp),
        "--out",
        str(out),
        "--checkpoint",
        str(ckpt),
        "--checkpoint-interval",
        "0",
        "--device",
        "cpu",
        "--no-standardize",
    ]


def test_killed_run_resumes_to_the_same_graph(tmp_path):
    # ER2 graph over 50 genes: one 50-gene constrained problem that takes several seconds
    # (measured ~6 s of a ~10 s command), while the first checkpoint is written ~0.2 s
    # into the solve, after the lasso stage; so a kill right after it appears lands mid-run
    inp = tmp_path / "in.h5ad"
    write_data(inp, d=50, n=2000, graph_type="er", seed=0)

    ref_out = tmp_path / "ref" / "out.h5ad"
    ref_out.parent.mkdir()
    ref = subprocess.run(_solve_cmd(inp, ref_out, tmp_path / "ref_ckpt"), capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    assert not (tmp_path / "ref_ckpt" / CHECKPOINT).exists()  # cleared after a successful write

    out_dir = tmp_path / "run"
    out_dir.mkdir()
    out, ckpt = out_dir / "out.h5ad", tmp_path / "ckpt"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(_solve_cmd(inp, out, ckpt), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while not (ckpt / CHECKPOINT).exists():
                assert proc.poll() is None, (
                    "solve ended before writing a checkpoint: " + (tmp_path / "killed.log").read_text()
                )
                assert time.monotonic() < deadline, "no checkpoint within 240 s"
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # the kill must have landed mid-run: no output (written atomically), checkpoint left
    assert not out.exists(), "the solve finished before the kill; the test problem is too small"
    assert list(out_dir.iterdir()) == [], "a partial output was left behind"
    assert (ckpt / CHECKPOINT).exists()
    import torch

    state = torch.load(ckpt / CHECKPOINT, map_location="cpu", weights_only=True)
    assert state["stage"] in ("lasso", "core") and "fingerprint" in state

    resumed = subprocess.run(_solve_cmd(inp, out, ckpt), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert not (ckpt / CHECKPOINT).exists()

    a, b = anndata.read_h5ad(ref_out), anndata.read_h5ad(out)
    assert bool(a.uns["gene_dag"]["run"]["resumed"]) is False
    assert bool(b.uns["gene_dag"]["run"]["resumed"]) is True  # it did pick up the checkpoint
    Wa, Wb = a.varp["gene_dag"], b.varp["gene_dag"]
    assert is_dag(Wb) and Wa.nnz > 0
    assert edges(Wa) == edges(Wb), sorted(edges(Wa) ^ edges(Wb))
    np.testing.assert_allclose(Wa.toarray(), Wb.toarray(), atol=1e-5)
    assert count_accuracy(a.varp["true_dag"], Wb)["shd"] <= 5


def test_checkpoint_of_another_problem_is_ignored(tmp_path, caplog):
    # a stale checkpoint (other data) must not be resumed: the run starts fresh and is right
    a = tmp_path / "a.h5ad"
    b = tmp_path / "b.h5ad"
    write_data(a, d=10, n=500, graph_type="er", edges_per_node=1.0, seed=0)
    ad_b = write_data(b, d=10, n=500, graph_type="er", edges_per_node=1.0, seed=1)
    ckpt = tmp_path / "ckpt"
    # leave a checkpoint of problem a behind: stop it by time, so the file is not cleared
    from gene_dag.solver.api import fit

    fit(anndata.read_h5ad(a), checkpoint=ckpt, checkpoint_interval=0, device="cpu", standardize=False, max_time=0.0)
    assert (ckpt / CHECKPOINT).exists()
    out = tmp_path / "out.h5ad"
    assert (
        main(["solve", str(b), "--out", str(out), "--checkpoint", str(ckpt), "--device", "cpu", "--no-standardize"])
        == 0
    )
    assert any("another problem" in r.getMessage() for r in caplog.records)
    res = anndata.read_h5ad(out)
    assert bool(res.uns["gene_dag"]["run"]["resumed"]) is False
    fresh = main(["solve", str(b), "--out", str(tmp_path / "fresh.h5ad"), "--device", "cpu", "--no-standardize"])
    assert fresh == 0
    assert edges(res.varp["gene_dag"]) == edges(anndata.read_h5ad(tmp_path / "fresh.h5ad").varp["gene_dag"])
    assert count_accuracy(ad_b.varp["true_dag"], res.varp["gene_dag"])["shd"] <= 2


def test_run_stopped_mid_path_resumes_at_its_last_stage(tmp_path, caplog):
    # max_time=0 stops the central path right after its first stage (the deadline is
    # checked between stages); the checkpoint must hold that stage, and the resumed run
    # must continue from it and end with the uninterrupted run's graph
    import logging

    import torch

    from gene_dag.solver.api import fit

    adata = write_data(tmp_path / "in.h5ad", d=30, n=1000, graph_type="er", seed=3)
    path = {"device": "cpu", "standardize": False, "tuning": {"core_order": "central_path"}}
    ref = fit(adata, **path)
    ckpt = tmp_path / "ckpt"
    stopped = fit(adata, checkpoint=ckpt, checkpoint_interval=0, max_time=0.0, return_result=True, **path)
    assert bool(stopped.info["run"]["converged"]) is False
    state = torch.load(ckpt / CHECKPOINT, map_location="cpu", weights_only=True)
    assert state["stage"] == "core" and int(state["path_stage"]) == 1 and state.get("bucket", 0) == 0
    with caplog.at_level(logging.INFO, logger="gene_dag"):
        resumed = fit(adata, checkpoint=ckpt, return_result=True, **path)
    assert any("resuming the central path" in r.getMessage() for r in caplog.records)
    assert bool(resumed.info["run"]["resumed"]) is True
    assert edges(resumed.adjacency) == edges(ref)
    np.testing.assert_allclose(resumed.adjacency.toarray(), ref.toarray(), atol=1e-5)
    assert count_accuracy(adata.varp["true_dag"], ref)["shd"] <= 3


def test_run_stopped_in_the_least_residual_core_resumes_to_the_same_graph(tmp_path):
    # raw equal-noise data: the core is solved in the least-residual order; a run whose
    # time runs out there must not fall back to the central path, but try again on resume
    import torch

    from gene_dag.solver.api import fit

    adata = write_data(tmp_path / "in.h5ad", d=30, n=1000, graph_type="er", seed=3)
    ref = fit(adata, device="cpu", standardize=False, return_result=True)
    assert ref.info["run"]["core_order"] == "least_residual"
    ckpt = tmp_path / "ckpt"
    stopped = fit(
        adata, checkpoint=ckpt, checkpoint_interval=0, device="cpu", standardize=False, max_time=0.0, return_result=True
    )
    assert bool(stopped.info["run"]["converged"]) is False
    state = torch.load(ckpt / CHECKPOINT, map_location="cpu", weights_only=True)
    assert state["stage"] == "core" and int(state["round"]) == 0 and "active" not in state
    resumed = fit(adata, checkpoint=ckpt, device="cpu", standardize=False, return_result=True)
    assert resumed.info["run"]["core_order"] == "least_residual"
    assert edges(resumed.adjacency) == edges(ref.adjacency)


def test_order_search_option_reaches_the_solver(tmp_path):
    # standardised linear SEM (the default scale): the search's network is kept under auto
    ad = write_data(tmp_path / "in.h5ad", d=20, n=2000, graph_type="er", edges_per_node=2.0, seed=2)
    truth = sp.csr_matrix(ad.varp["true_dag"]).toarray() != 0
    runs = {}
    for mode in ("auto", "never"):
        out = tmp_path / f"{mode}.h5ad"
        assert (
            main(["solve", str(tmp_path / "in.h5ad"), "--out", str(out), "--device", "cpu", "--order-search", mode])
            == 0
        )
        runs[mode] = anndata.read_h5ad(out)
    auto, never = (runs[m].uns["gene_dag"] for m in ("auto", "never"))
    assert auto["parameters"]["order_search"] == "auto" and never["parameters"]["order_search"] == "never"
    assert auto["run"]["refit_order"] == "bic_search" and bool(auto["run"]["order_search"]["kept"])
    assert "order_search" not in never["run"] and never["run"]["refit_order"] != "bic_search"
    shd = {m: count_accuracy(truth, runs[m].varp["gene_dag"])["shd"] for m in runs}
    assert shd["auto"] < shd["never"], shd
