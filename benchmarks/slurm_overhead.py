"""The tiny workflow of the SLURM test, run locally and through SLURM, timed in one invocation.

Needs a running SLURM (tests/slurm/start_slurm.sh). Both runs use the same data and config
(tests/test_workflow.py's two tissues, tests/test_slurm.py's GPU partition) and the SLURM
profile with the same command-line additions as the test. Prints the wall times and, per
SLURM job, the wait in the queue, the time in SLURM (start to end, 1 s resolution) and the
time of the command itself (Snakemake's benchmark files); writes the figures as JSON.

    python benchmarks/slurm_overhead.py [--out benchmarks/out/slurm_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_slurm import CLUSTER_ARGS, cluster_config, slurm_job, submitted  # noqa: E402
from test_workflow import output_of, prepare, snakemake  # noqa: E402


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def timed_run(workdir: Path, *args: str):
    workdir.mkdir()
    prepare(workdir)
    cluster_config(workdir)
    start = time.perf_counter()
    proc = snakemake(workdir, "--configfile", "config.yaml", *args, timeout=1800)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(output_of(proc))
    return proc, wall


def command_seconds(workdir: Path, rule: str, wildcards: str) -> float | None:
    """Snakemake's benchmark `s` of one job (rules that write one), from the job's log path."""
    parts = wildcards.split("_", 1)
    path = (
        workdir / "results" / parts[0] / "benchmarks" / (f"{rule}.tsv" if len(parts) == 1 else f"{rule}/{parts[1]}.tsv")
    )
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0]) if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/slurm_overhead.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _, local_wall = timed_run(Path(tmp) / "local")
        slurm_dir = Path(tmp) / "slurm"
        slurm_proc, slurm_wall = timed_run(slurm_dir, *CLUSTER_ARGS)
        text = slurm_proc.stdout + slurm_proc.stderr
        logs = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_\w+/(\S+)/\d+\.log", text))
        jobs = []
        for job_id, rule in submitted(slurm_proc).items():
            info = slurm_job(job_id)
            queued = seconds(info["StartTime"]) - seconds(info["SubmitTime"])
            in_slurm = seconds(info["EndTime"]) - seconds(info["StartTime"])
            jobs.append({"id": job_id, "rule": rule, "queued_s": queued, "in_slurm_s": in_slurm,
                         "command_s": command_seconds(slurm_dir, rule, logs[job_id])})  # fmt: skip
    timed = [j for j in jobs if j["command_s"] is not None]
    result = {
        "local_wall_s": round(local_wall, 2),
        "slurm_wall_s": round(slurm_wall, 2),
        "slurm_jobs": len(jobs),
        "extra_wall_per_slurm_job_s": round((slurm_wall - local_wall) / len(jobs), 2),
        "mean_queued_s": round(statistics.mean(j["queued_s"] for j in jobs), 2),
        "mean_in_slurm_s": round(statistics.mean(j["in_slurm_s"] for j in jobs), 2),
        "mean_in_slurm_minus_command_s": round(statistics.mean(j["in_slurm_s"] - j["command_s"] for j in timed), 2),
        "jobs_with_benchmark_files": len(timed),
        "jobs": jobs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        if key != "jobs":
            print(f"{key}: {value}")
    for job in jobs:
        print(f"  job {job['id']} {job['rule']}: queued {job['queued_s']:.0f} s, in SLURM {job['in_slurm_s']:.0f} s, "
              f"command {job['command_s'] if job['command_s'] is None else round(job['command_s'], 2)} s")  # fmt: skip


if __name__ == "__main__":
    main()
