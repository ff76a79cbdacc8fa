"""The workflow on a real one-node SLURM cluster, through `--profile profiles/slurm`.

tests/slurm/start_slurm.sh starts the cluster (Debian's slurmctld, slurmd and munge; node
partitions `debug` and `gpu`, one GPU that is only a count). The tiny data of test_workflow
(tissues liver and lung) run once through SLURM and once locally with the same config:
solver.device auto with cluster.gpu_partition gpu, so each solve job asks SLURM for a GPU in
partition gpu (and, finding no CUDA device, solves on the CPU). The profile is adapted to a
cluster without an accounting database only on the command line (--slurm-status-command
squeue, a short first status poll), never by editing it.

The tests marked `slurm` are skipped, with the script's reason, only when SLURM cannot be
started here (not root, no apt); with GENE_DAG_REQUIRE_SLURM=1 (set by .ci/run) that is a
failure instead. The GPU-request dry runs and the conda environment check need no SLURM.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import anndata
import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from test_workflow import BIN, GROUPS, REPO, edge_set, output_of, prepare, snakemake

START_SLURM = REPO / "tests" / "slurm" / "start_slurm.sh"
PROFILE = REPO / "profiles" / "slurm"
GPU_PARTITION = "gpu"
# The profile as it is, plus what a cluster without slurmdbd needs: squeue instead of sacct
# (finished jobs stay in squeue for MinJobAge), and a first status poll after 5 s, not 40 s.
CLUSTER_ARGS = ["--profile", str(PROFILE), "--slurm-status-command", "squeue",
                "--slurm-init-seconds-before-status-checks", "5"]  # fmt: skip
RUN_TIMEOUT = 900  # seconds; the plugin waits forever on a job it has lost
STABILITY = {"resamples": 10, "per_job": 2}  # five stability jobs per group

pytestmark = pytest.mark.slow  # the SLURM tests are marked slurm too


class SlurmJobs(UserWarning):
    """Not a problem: the SLURM job ids a test saw, so that they show in the test output."""


@pytest.fixture(scope="module")
def slurm():
    """A running SLURM cluster (started by tests/slurm/start_slurm.sh, which returns at once if it is up)."""
    try:
        proc = subprocess.run([str(START_SLURM)], capture_output=True, text=True, timeout=400)
        problem = (
            None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        problem = str(error)
    if (
        problem is None
        and GPU_PARTITION
        not in subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True).stdout.split()
    ):
        problem = f"the running SLURM has no partition {GPU_PARTITION!r} (it was not started by {START_SLURM.name})"
    if problem is not None:
        if os.environ.get("GENE_DAG_REQUIRE_SLURM") == "1":
            pytest.fail(f"SLURM could not be started: {problem}")
        pytest.skip(f"SLURM could not be started here: {problem}")


def cluster_config(workdir: Path) -> None:
    """test_workflow's config, with a GPU partition: every solve (device auto) asks for a GPU."""
    path = workdir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["solver"]["device"] = "auto"
    config["solver"]["stability"] = STABILITY  # its resamples fan out as jobs of their own
    config["cluster"] = {"gpu_partition": GPU_PARTITION}
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def submitted(output: str | subprocess.CompletedProcess) -> dict[str, str]:
    """SLURM job id -> rule, from the 'submitted with SLURM jobid' lines of Snakemake's output."""
    if isinstance(output, subprocess.CompletedProcess):
        output = output.stdout + output.stderr
    return dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", output))


def snakemake_popen(workdir: Path, *args: str, log) -> subprocess.Popen:
    """test_workflow's `snakemake` command, started in the background with its output to LOG."""
    exe = BIN / "snakemake"
    exe = str(exe) if exe.exists() else shutil.which("snakemake")
    cmd = [exe, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2", *args]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


def slurm_job(job_id: str) -> dict[str, str]:
    """`scontrol show job -o ID` as a dict (JobState, ExitCode, Partition, TRES, WorkDir, ...)."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True)
    return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))


def tiny_run(workdir: Path, *args: str) -> tuple[Path, subprocess.CompletedProcess]:
    prepare(workdir)
    cluster_config(workdir)
    proc = snakemake(workdir, "--configfile", "config.yaml", *args, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, output_of(proc)
    return workdir, proc


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """(workdir, process) of the tiny config run locally."""
    return tiny_run(tmp_path_factory.mktemp("local"))


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory):
    """(workdir, process) of the same config run through SLURM."""
    return tiny_run(tmp_path_factory.mktemp("slurm"), *CLUSTER_ARGS)


@pytest.mark.slurm
def test_jobs_ran_as_slurm_jobs_and_completed(slurm_run):
    workdir, proc = slurm_run
    jobs = submitted(proc)
    warnings.warn(SlurmJobs("SLURM job ids: " + ", ".join(f"{i} ({rule})" for i, rule in jobs.items())), stacklevel=1)
    # Snakemake announces each job as "rule NAME:" or "checkpoint NAME:" (sent to the executor)
    # or as "localrule NAME:".
    started = re.findall(r"^(?:rule|checkpoint) (\w+):$", proc.stdout + proc.stderr, re.M)
    expected = {rule: started.count(rule) for rule in set(started)}
    assert expected.get("solve") == len(GROUPS) and expected.get("preprocess") == 1, output_of(proc)
    assert "localrule prior:" in proc.stdout + proc.stderr  # light steps stay on the submitting host
    counts = {rule: list(jobs.values()).count(rule) for rule in set(jobs.values())}
    assert counts == expected, output_of(proc)  # every cluster job went through sbatch, once

    states = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", ",".join(jobs)],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert dict(line.split() for line in states.splitlines()) == {i: "COMPLETED" for i in jobs}
    for job_id, rule in jobs.items():
        info = slurm_job(job_id)
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), info
        assert Path(info["WorkDir"]) == workdir
        if rule in ("solve", "stability_block"):  # device auto + cluster.gpu_partition: one GPU there
            assert info["Partition"] == GPU_PARTITION and info.get("TresPerJob") == "gres:gpu:1", info
        else:
            assert info["Partition"] != GPU_PARTITION and "gpu" not in info.get("TresPerJob", ""), info
    for slug in GROUPS.values():  # the GPU SLURM granted is only a count: the solver says it used the CPU
        assert "solving on cpu" in (workdir / "logs/toy" / slug / "solve.log").read_text()


@pytest.mark.slurm
def test_stability_resamples_fan_out_as_slurm_jobs_and_equal_the_in_process_frequencies(slurm_run):
    from gene_dag import tl

    workdir, proc = slurm_run
    jobs = submitted(proc)
    blocks = [i for i, rule in jobs.items() if rule == "stability_block"]
    assert len(blocks) == 5 * len(GROUPS) and len(set(blocks)) == len(blocks), jobs  # separate SLURM jobs
    for slug in GROUPS.values():
        base = workdir / "results/toy/groups" / slug
        assert sorted(p.name for p in (base / "stability").iterdir()) == [f"{i}-{i + 1}.npz" for i in (0, 2, 4, 6, 8)]
        network = anndata.read_h5ad(base / "network.h5ad")
        assert network.uns["gene_dag"]["run"]["stability_resamples"] == 10
        config = yaml.safe_load((workdir / "config.yaml").read_text())["solver"]
        adata = anndata.read_h5ad(base / "selected.h5ad")
        tl.learn_dag(adata, regulators=str(base / "prior/regulators.txt"), prior=str(base / "prior/prior_edges.tsv"),
                     lambda1=config["lambda1"], w_threshold=config["w_threshold"], device="cpu", seed=1,
                     stability_resamples=10)  # fmt: skip
        for key in ("gene_dag_selection", "gene_dag_orientation"):
            in_process = sp.csr_matrix(adata.varp[key]).toarray()
            assert in_process.max() > 0
            np.testing.assert_array_equal(sp.csr_matrix(network.varp[key]).toarray(), in_process)


@pytest.mark.slurm
def test_slurm_outputs_equal_the_local_run(slurm_run, local_run):
    (slurm_dir, _), (local_dir, _) = slurm_run, local_run
    for slug in GROUPS.values():
        base = Path("results/toy/groups") / slug
        cluster = anndata.read_h5ad(slurm_dir / base / "network.h5ad")
        local = anndata.read_h5ad(local_dir / base / "network.h5ad")
        assert list(cluster.var_names) == list(local.var_names)
        assert edge_set(cluster) == edge_set(local) and len(edge_set(local)) >= 3
        np.testing.assert_allclose(
            sp.csr_matrix(cluster.varp["gene_dag"]).toarray(),
            sp.csr_matrix(local.varp["gene_dag"]).toarray(),
            atol=1e-6,
        )
        metrics = [json.loads((d / base / "metrics.json").read_text()) for d in (slurm_dir, local_dir)]
        assert metrics[0] == metrics[1] and metrics[0]["tpr"] > 0
    assert (slurm_dir / "results/summary.tsv").read_text() == (local_dir / "results/summary.tsv").read_text()


@pytest.mark.slurm
def test_second_slurm_run_submits_nothing(slurm_run):
    workdir, _ = slurm_run
    proc = snakemake(workdir, "--configfile", "config.yaml", *CLUSTER_ARGS, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, output_of(proc)
    assert "Nothing to be done" in proc.stdout + proc.stderr, output_of(proc)
    assert submitted(proc) == {}


@pytest.mark.parametrize(
    ("device", "gpu_partition", "gpu", "partition"),
    [
        ("cpu", None, 0, None),
        ("auto", None, 0, None),
        ("cuda", None, 1, None),
        ("cpu", "gpu_a100", 0, None),
        ("auto", "gpu_a100", 1, "gpu_a100"),
        ("cuda", "gpu_a100", 1, "gpu_a100"),
    ],
)
def test_solve_asks_for_a_gpu_only_for_cuda_or_auto_with_a_gpu_partition(
    local_run, device, gpu_partition, gpu, partition
):
    """The resources of the solve jobs a dry run plans (no SLURM needed; the groups come from the local run)."""
    workdir, _ = local_run
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["solver"]["device"] = device
    config.pop("cluster")
    if gpu_partition:
        config["cluster"] = {"gpu_partition": gpu_partition}
    (workdir / "dry.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "--configfile", "dry.yaml", "--dry-run", "--forcerun", "solve")
    assert proc.returncode == 0, output_of(proc)
    plans = re.findall(r"rule solve:\n(?:    .*\n)*?    resources: (.*)\n", proc.stdout + proc.stderr)
    assert len(plans) == len(GROUPS), output_of(proc)
    for plan in plans:
        resources = dict(item.split("=", 1) for item in plan.split(", "))
        assert resources["gpu"] == str(gpu)
        assert resources.get("slurm_partition") == partition


# ----------------------------------------------------------------------------- preemption


# standardised, so that the core takes the central path (seconds) and the signal finds the
# solve running; on raw data this equal-noise core is solved in its order in a blink
PREEMPT_CONFIG = {
    "seed": 0,
    "solver": {"lambda1": 0.02, "w_threshold": 0.3, "standardize": True, "device": "cpu"},
    "datasets": [{"name": "sim", "simulate": {"genes": 100, "cells": 2000, "graph": "er", "edges_per_node": 2.0},
                  "values": "scaled", "genes": {"method": "all"}}],
}  # fmt: skip
SOLVED = "results/sim/groups/all/solved.h5ad"


@pytest.mark.slurm
def test_solve_sent_sigterm_through_slurm_checkpoints_and_the_rerun_resumes(slurm, tmp_path):
    """SIGTERM to the running solve job's step (what the profile's --signal=TERM@120 sends before
    the time limit): a checkpoint and no output; the rerun resumes and gives the uninterrupted edges."""
    from gene_dag.solver.checkpoint import FILENAME

    dirs = {}
    for name in ("reference", "preempted"):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        (dirs[name] / "config.yaml").write_text(yaml.safe_dump(PREEMPT_CONFIG))
    ref = snakemake(dirs["reference"], "--configfile", "config.yaml", timeout=RUN_TIMEOUT)
    assert ref.returncode == 0, output_of(ref)

    work = dirs["preempted"]
    checkpoint = work / "results/sim/groups/all/solve_checkpoint" / FILENAME
    solve_log = work / "logs/sim/all/solve.log"
    log = tmp_path / "snakemake.log"
    # --retries 0: this run stops at the signal, so that what it leaves can be looked at;
    # --verbose: the plugin logs each sbatch call.
    with open(log, "w") as fh:
        proc = snakemake_popen(
            work, "--configfile", "config.yaml", *CLUSTER_ARGS, "--retries", "0", "--verbose", log=fh
        )
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            job_id = None
            while job_id is None or not checkpoint.exists():
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the solve job wrote no checkpoint\n" + log.read_text()[-3000:]
                solve_jobs = [i for i, rule in submitted(log.read_text()).items() if rule == "solve"]
                job_id = solve_jobs[0] if solve_jobs else None
                time.sleep(0.05)
            time.sleep(0.5)  # into the central path
            assert slurm_job(job_id)["JobState"] == "RUNNING"
            subprocess.run(["scancel", "--signal=TERM", job_id], check=True)
            proc.wait(timeout=RUN_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
    warnings.warn(SlurmJobs(f"SLURM solve job sent SIGTERM: {job_id}"), stacklevel=1)
    output = log.read_text()
    assert proc.returncode != 0, output[-3000:]
    calls = [line for line in output.splitlines() if line.startswith("sbatch call:") and "rule_solve" in line]
    assert len(calls) == 1 and "--signal=TERM@120" in calls[0], calls  # the profile's warning before the limit
    assert slurm_job(job_id)["JobState"] in ("FAILED", "CANCELLED"), slurm_job(job_id)
    assert checkpoint.is_file()  # the checkpoint, and no output
    assert not (work / SOLVED).exists()
    assert [p.name for p in checkpoint.parent.iterdir()] == [FILENAME]
    text = solve_log.read_text()
    assert "interrupted by SIGTERM" in text and "run the same command again to resume" in text, text

    rerun = snakemake(work, "--configfile", "config.yaml", *CLUSTER_ARGS, timeout=RUN_TIMEOUT)
    assert rerun.returncode == 0, output_of(rerun)
    again = list(submitted(rerun).values())
    assert again.count("solve") == 1 and not {"simulate", "preprocess", "select"} & set(again), output_of(rerun)
    assert "resuming from checkpoint" in solve_log.read_text()
    result = anndata.read_h5ad(work / SOLVED)
    reference = anndata.read_h5ad(dirs["reference"] / SOLVED)
    assert bool(result.uns["gene_dag"]["run"]["resumed"]) is True
    assert edge_set(result) == edge_set(reference) and len(edge_set(reference)) > 0
    np.testing.assert_allclose(result.varp["gene_dag"].toarray(), reference.varp["gene_dag"].toarray(), atol=1e-5)


# ----------------------------------------------------------------------------- conda environments


def test_every_rule_names_a_pinned_conda_env_in_workflow_envs():
    """For `--sdm conda` (conda itself is not needed to check this): each rule's `conda:` file
    exists in workflow/envs/, every package there is pinned, and gene-dag comes from this tree."""
    rules_dir = REPO / "workflow" / "rules"
    used = set()
    for smk in sorted(rules_dir.glob("*.smk")):
        text = smk.read_text()
        rules = re.findall(r"^(?:rule|checkpoint) (\w+):", text, re.M)
        named = re.findall(r"^    conda:\n        \"([^\"]+)\"", text, re.M)
        assert len(named) == len(rules), f"{smk.name}: {len(rules)} rules, {len(named)} conda: directives"
        used |= {(rules_dir / path).resolve() for path in named}
    assert used == {p.resolve() for p in (REPO / "workflow" / "envs").glob("*.yaml")}
    for env in sorted(used):
        spec = yaml.safe_load(env.read_text())
        assert spec["channels"] == ["conda-forge", "nodefaults"], env.name
        pip = [dep for dep in spec["dependencies"] if isinstance(dep, dict)]
        conda = [dep for dep in spec["dependencies"] if isinstance(dep, str) and dep != "pip"]
        assert conda and all(re.fullmatch(r"[\w.-]+ =\d+(\.\d+)+", dep) for dep in conda), (env.name, conda)
        assert len(pip) == 1 and pip[0]["pip"][-1] == "-e ${GENE_DAG_SRC}", env.name
        assert all(re.fullmatch(r"[\w.-]+==\d+(\.\d+)+", dep) for dep in pip[0]["pip"][:-1]), env.name
