"""Stops and interruptions lose nothing: SIGTERM (a scheduler's time limit, preemption,
Snakemake's Ctrl-C) and ``--max-time`` leave a checkpoint that the next run resumes; a bad
checkpoint is a warning and a fresh start; every argument is checked before the solve."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import yaml

from gene_dag.cli import main
from gene_dag.simulate import simulate_adata
from gene_dag.solver.checkpoint import FILENAME

BIN = Path(sys.executable).parent
GENE_DAG = str(BIN / "gene-dag") if (BIN / "gene-dag").exists() else shutil.which("gene-dag")
REPO = Path(__file__).resolve().parents[1]


def write_data(path: Path, **kwargs) -> anndata.AnnData:
    adata = simulate_adata(**{"n": 2000, **kwargs})
    adata.write_h5ad(path)
    return adata


def edges(W: sp.spmatrix) -> set[tuple[int, int]]:
    coo = sp.coo_matrix(W)
    return set(zip(coo.row[coo.data != 0].tolist(), coo.col[coo.data != 0].tolist(), strict=True))


def solve_cmd(inp: Path, out: Path, *extra: str) -> list[str]:
    # standardised: the core takes the central path (seconds); on raw data an equal-noise
    # core is solved in its least-residual order in a fraction of a second, too fast to stop
    return [GENE_DAG, "solve", str(inp), "--out", str(out), "--device", "cpu", *extra]


def wait_for(path: Path, proc: subprocess.Popen, log: Path, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, f"ended before {path} appeared:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{path} did not appear within {limit} s"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def er50(tmp_path_factory):
    """A 50-gene ER2 problem (one constrained core that takes seconds) and its uninterrupted solve."""
    base = tmp_path_factory.mktemp("er50")
    inp = base / "in.h5ad"
    write_data(inp, d=50, graph_type="er", seed=0)
    ref = base / "ref.h5ad"
    proc = subprocess.run(solve_cmd(inp, ref), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return inp, anndata.read_h5ad(ref).varp["gene_dag"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_solve_checkpoints_and_the_rerun_resumes(er50, tmp_path, sig):
    inp, reference = er50
    out_dir, ckpt = tmp_path / "out", tmp_path / "ckpt"
    out_dir.mkdir()
    out = out_dir / "net.h5ad"
    cmd = solve_cmd(inp, out, "--checkpoint", str(ckpt), "--checkpoint-interval", "0")
    log = tmp_path / "stopped.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        try:
            wait_for(ckpt / FILENAME, proc, log)
            time.sleep(0.3)  # inside the central path
            proc.send_signal(sig)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert proc.returncode == 128 + sig, text
    assert f"interrupted by {signal.Signals(sig).name}" in text
    assert "run the same command again to resume" in text
    assert "Traceback" not in text
    # a checkpoint, no output, no temporary file anywhere
    assert list(out_dir.iterdir()) == [], "output or temporary left behind"
    assert [p.name for p in ckpt.iterdir()] == [FILENAME]
    state = torch.load(ckpt / FILENAME, map_location="cpu", weights_only=True)
    assert state["stage"] == "core"

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from checkpoint" in resumed.stderr
    result = anndata.read_h5ad(out)
    assert bool(result.uns["gene_dag"]["run"]["resumed"]) is True
    assert edges(result.varp["gene_dag"]) == edges(reference)
    np.testing.assert_allclose(result.varp["gene_dag"].toarray(), reference.toarray(), atol=1e-5)
    assert not (ckpt / FILENAME).exists()  # converged: cleared


def test_max_time_keeps_the_checkpoint_and_the_rerun_finishes(er50, tmp_path):
    inp, reference = er50
    out, ckpt = tmp_path / "net.h5ad", tmp_path / "ckpt"
    cmd = solve_cmd(inp, out, "--checkpoint", str(ckpt), "--checkpoint-interval", "0")
    stopped = subprocess.run([*cmd, "--max-time", "0"], capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 0, stopped.stderr
    assert "checkpoint" in stopped.stderr and "is kept" in stopped.stderr
    assert bool(anndata.read_h5ad(out).uns["gene_dag"]["run"]["converged"]) is False
    assert (ckpt / FILENAME).exists()
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    result = anndata.read_h5ad(out)
    assert bool(result.uns["gene_dag"]["run"]["converged"]) is True
    assert edges(result.varp["gene_dag"]) == edges(reference)
    assert not (ckpt / FILENAME).exists()


def test_a_lasso_cut_short_by_max_time_is_resumed_not_skipped(tmp_path):
    """A regulator-list problem whose lasso stage is stopped by the time limit continues it."""
    from gene_dag.solver.api import fit

    adata = simulate_adata(d=300, n=1000, graph_type="tf", n_regulators=30, seed=0)
    regulators = list(adata.var_names[adata.var["is_regulator"].to_numpy()])
    ref = fit(adata, regulators=regulators, device="cpu", standardize=False)
    ckpt = tmp_path / "ckpt"
    stopped = fit(
        adata,
        regulators=regulators,
        device="cpu",
        standardize=False,
        checkpoint=ckpt,
        checkpoint_interval=0,
        max_time=0.0,
        return_result=True,
    )
    assert bool(stopped.info["run"]["converged"]) is False
    state = torch.load(ckpt / FILENAME, map_location="cpu", weights_only=True)
    assert state["stage"] == "lasso"  # not marked done
    resumed = fit(adata, regulators=regulators, device="cpu", standardize=False, checkpoint=ckpt, return_result=True)
    assert bool(resumed.info["run"]["converged"]) is True
    assert edges(resumed.adjacency) == edges(ref)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_unreadable_checkpoint_is_a_warning_and_a_fresh_start(tmp_path, caplog, content):
    inp = tmp_path / "in.h5ad"
    adata = write_data(inp, d=10, graph_type="er", edges_per_node=1.0, seed=0)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / FILENAME).write_bytes(content)
    out = tmp_path / "net.h5ad"
    with caplog.at_level(logging.WARNING):
        assert (
            main(
                ["solve", str(inp), "--out", str(out), "--checkpoint", str(ckpt), "--device", "cpu", "--no-standardize"]
            )
            == 0
        )
    assert "cannot be read" in caplog.text and "starting fresh" in caplog.text
    result = anndata.read_h5ad(out)
    assert bool(result.uns["gene_dag"]["run"]["resumed"]) is False
    fresh = main(["solve", str(inp), "--out", str(tmp_path / "fresh.h5ad"), "--device", "cpu", "--no-standardize"])
    assert fresh == 0
    assert edges(result.varp["gene_dag"]) == edges(anndata.read_h5ad(tmp_path / "fresh.h5ad").varp["gene_dag"])
    assert edges(adata.varp["true_dag"]) == edges(result.varp["gene_dag"])


def test_checkpoint_of_the_wrong_shape_is_a_warning_and_a_fresh_start(tmp_path, caplog):
    from gene_dag.solver.api import fit

    adata = write_data(tmp_path / "in.h5ad", d=10, graph_type="er", edges_per_node=1.0, seed=0)
    ckpt = tmp_path / "ckpt"
    fit(adata, checkpoint=ckpt, checkpoint_interval=0, device="cpu", standardize=False, max_time=0.0)
    state = torch.load(ckpt / FILENAME, map_location="cpu", weights_only=True)
    state["V"] = torch.zeros(3, 4)  # same problem fingerprint, weights of another shape
    torch.save(state, ckpt / FILENAME)
    with caplog.at_level(logging.WARNING):
        result = fit(adata, checkpoint=ckpt, device="cpu", standardize=False, return_result=True)
    assert "does not fit this problem" in caplog.text
    assert bool(result.info["run"]["resumed"]) is False
    assert edges(result.adjacency) == edges(adata.varp["true_dag"])


def test_checkpoint_written_with_device_auto_resumes_with_device_cpu(tmp_path, caplog):
    if torch.cuda.is_available():
        pytest.skip("auto means cuda on this machine")
    from gene_dag.solver.api import fit

    adata = write_data(tmp_path / "in.h5ad", d=30, graph_type="er", seed=3)
    ckpt = tmp_path / "ckpt"
    fit(adata, checkpoint=ckpt, checkpoint_interval=0, device="auto", max_time=0.0, standardize=False)
    with caplog.at_level(logging.INFO, logger="gene_dag"):
        result = fit(adata, checkpoint=ckpt, device="cpu", standardize=False, return_result=True)
    assert "another problem" not in caplog.text
    assert bool(result.info["run"]["resumed"]) is True


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lambda1", "nan"], "argument --lambda1: 'nan' is not a finite number"),
        (["--lambda1", "inf"], "argument --lambda1: 'inf' is not a finite number"),
        (["--lambda1", "-0.1"], "argument --lambda1: -0.1 must be >= 0"),
        (["--w-threshold", "nan"], "argument --w-threshold: 'nan' is not a finite number"),
        (["--memory-gb", "0"], "argument --memory-gb: 0 must be > 0"),
        (["--max-time", "inf"], "argument --max-time: 'inf' is not a finite number"),
        (["--checkpoint-interval", "nan"], "argument --checkpoint-interval: 'nan' is not a finite number"),
        (["--seed", str(2**70)], "argument --seed:"),
        (["--seed", "-1"], "argument --seed:"),
    ],
)
def test_bad_numbers_are_refused_before_any_work(tmp_path, args, message):
    inp = tmp_path / "in.h5ad"
    write_data(inp, d=5, graph_type="er", seed=0)
    proc = subprocess.run(solve_cmd(inp, tmp_path / "net.h5ad", *args), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad"]


def test_paths_are_checked_before_the_solve(tmp_path, capsys):
    inp = tmp_path / "in.h5ad"
    write_data(inp, d=5, graph_type="er", seed=0)
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("precious\n")
    cases = [
        (["--out", str(a_dir)], f"{a_dir}: is a directory"),
        (["--out", str(inp)], "writing it would replace the input"),
        (["--out", str(tmp_path / "net.h5ad"), "--checkpoint", str(a_file)], "must name a directory"),
        (["--out", str(a_file / "net.h5ad")], "is not a directory"),
        (["--out", str(tmp_path / "net.h5ad"), "--regulators", str(tmp_path / "none.txt")], "file not found"),
    ]
    for args, message in cases:
        status = main(["solve", str(inp), "--device", "cpu", "--no-standardize", *args])
        err = capsys.readouterr().err
        assert status == 2, args
        assert message in err and err.count("\n") == 1, err
    assert a_file.read_text() == "precious\n"
    assert not (tmp_path / "net.h5ad").exists()


def test_cuda_without_a_gpu_is_refused_before_any_work(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    inp = tmp_path / "in.h5ad"
    write_data(inp, d=5, graph_type="er", seed=0)
    assert main(["solve", str(inp), "--out", str(tmp_path / "net.h5ad"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "torch sees no CUDA device" in err and "CUDA_VISIBLE_DEVICES" in err


# ------------------------------------------------------------------------------ through Snakemake


def _snakemake(workdir: Path, *args: str, **popen) -> list[str]:
    exe = str(BIN / "snakemake") if (BIN / "snakemake").exists() else shutil.which("snakemake")
    return [exe, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2", *args]


def _env() -> dict:
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.mark.slow
def test_interrupted_snakemake_run_resumes_the_solve(tmp_path):
    config = {
        "seed": 0,
        "solver": {"lambda1": 0.02, "w_threshold": 0.3, "device": "cpu"},
        "datasets": [
            {
                "name": "sim",
                "simulate": {"genes": 100, "cells": 2000, "graph": "er", "edges_per_node": 2.0},
                "values": "scaled",
                "genes": {"method": "all"},
            }
        ],
    }
    runs = {}
    for name in ("reference", "interrupted"):
        work = tmp_path / name
        work.mkdir()
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        runs[name] = work
    cfg = ("--configfile", "config.yaml")
    ref = subprocess.run(
        _snakemake(runs["reference"], *cfg),
        cwd=runs["reference"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ref.returncode == 0, ref.stderr[-3000:]

    work = runs["interrupted"]
    group = work / "results" / "sim" / "groups"
    log = tmp_path / "snakemake.log"
    with open(log, "w") as fh:
        # its own process group, as a terminal's foreground job: Ctrl-C signals the whole group
        proc = subprocess.Popen(
            _snakemake(work, *cfg), cwd=work, env=_env(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 600
            while not list(group.glob(f"*/solve_checkpoint/{FILENAME}")):
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the solve job wrote no checkpoint"
                time.sleep(0.01)
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    slug = next(group.glob(f"*/solve_checkpoint/{FILENAME}")).parents[1].name
    assert not (group / slug / "solved.h5ad").exists()
    solve_log = work / "logs" / "sim" / slug / "solve.log"
    assert "run the same command again to resume" in solve_log.read_text()

    rerun = subprocess.run(_snakemake(work, *cfg), cwd=work, env=_env(), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming from checkpoint" in solve_log.read_text()
    a = anndata.read_h5ad(runs["reference"] / "results" / "sim" / "groups" / slug / "network.h5ad")
    b = anndata.read_h5ad(group / slug / "network.h5ad")
    assert edges(a.varp["gene_dag"]) == edges(b.varp["gene_dag"])
    np.testing.assert_allclose(a.varp["gene_dag"].toarray(), b.varp["gene_dag"].toarray(), atol=1e-5)


def test_a_stop_signal_during_an_output_write_leaves_nothing(tmp_path):
    """Interrupted (what SIGTERM raises) unwinds through the atomic writers: no temporary, no output."""
    from gene_dag import io
    from gene_dag.signals import Interrupted

    target = tmp_path / "net.h5ad"
    with pytest.raises(Interrupted):
        with io.atomic_write(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise Interrupted(signal.SIGTERM)
    outdir = tmp_path / "groups"
    with pytest.raises(Interrupted):
        with io.atomic_output_dir(outdir) as tmp:
            (tmp / "a.h5ad").write_bytes(b"x")
            raise Interrupted(signal.SIGTERM)
    assert list(tmp_path.iterdir()) == []


def test_stop_signals_raise_interrupted_and_handlers_are_restored():
    from gene_dag.signals import Interrupted, stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info:
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts the sleep
    assert info.value.exit_status == 143 and "SIGTERM" in str(info.value)
    assert signal.getsignal(signal.SIGTERM) is before
