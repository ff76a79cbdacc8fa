"""Scale benchmark: simulate a tf graph, run the whole `gene-dag solve` under /usr/bin/time -v.

Reports wall time, peak RSS and accuracy (SHD, TPR, FDR) against the simulated truth.

    python benchmarks/bench_scale.py --genes 10000 --regulators 1000 --cells 5000
    python benchmarks/bench_scale.py --genes 20000 --regulators 2000 --cells 5000
    python benchmarks/bench_scale.py --genes 10000 --cells 5000 --no-prior --device cuda  # dense, GPU
    python benchmarks/bench_scale.py --graph er --genes 2000 --cells 2000 --no-prior --seed 3 \
        --solve-args=--no-standardize  # no regulator list: the candidate screen
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genes", type=int, default=10000)
    ap.add_argument("--regulators", type=int, default=1000)
    ap.add_argument("--cells", type=int, default=5000)
    ap.add_argument("--graph", default="tf")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-prior", action="store_true", help="dense: every gene may regulate")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--memory-gb", type=float, default=2.0)
    ap.add_argument("--workdir", default=str(HERE / "out"))
    ap.add_argument("--solve-args", default="", help="more `gene-dag solve` options, e.g. '--no-standardize'")
    ap.add_argument("--out", help="JSON file for the figures (default WORKDIR/scale_<genes>.json)")
    args = ap.parse_args()

    import anndata as ad
    import torch

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{args.graph}{args.genes}_k{args.regulators}_n{args.cells}_s{args.seed}"
    data = work / f"{tag}.h5ad"
    regs = work / f"{tag}_regulators.txt"
    variant = "_".join(a.strip("-") for a in args.solve_args.split())
    result = (
        work / f"{tag}_{'dense' if args.no_prior else 'prior'}_{args.device}{'_' + variant if variant else ''}_net.h5ad"
    )
    bindir = Path(sys.executable).parent
    if not data.exists():
        t = time.monotonic()
        subprocess.run(
            [
                str(bindir / "gene-dag"),
                "-q",
                "simulate",
                "--out",
                str(data),
                "--genes",
                str(args.genes),
                "--cells",
                str(args.cells),
                "--graph",
                args.graph,
                "--regulators",
                str(args.regulators),
                "--seed",
                str(args.seed),
            ],
            check=True,
        )
        print(f"simulated {data.name} in {time.monotonic() - t:.1f} s", flush=True)
    truth = ad.read_h5ad(data)
    regs.write_text("\n".join(truth.var_names[truth.var["is_regulator"].to_numpy()]) + "\n")

    cmd = [
        "/usr/bin/time",
        "-v",
        str(bindir / "gene-dag"),
        "solve",
        str(data),
        "--out",
        str(result),
        "--device",
        args.device,
        "--memory-gb",
        str(args.memory_gb),
        "--seed",
        str(args.seed),
    ]
    if not args.no_prior:
        cmd += ["--regulators", str(regs)]
    cmd += args.solve_args.split()
    print("running:", " ".join(cmd), flush=True)
    log_path = result.with_suffix(".log")
    t = time.monotonic()
    with open(log_path, "w") as log:  # the solver's progress, followed live with tail -f
        proc = subprocess.run(cmd, stderr=log, text=True)
    wall = time.monotonic() - t
    text = log_path.read_text()
    sys.stderr.write(text[-4000:])
    if proc.returncode:
        sys.exit(proc.returncode)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))

    from gene_dag.metrics import count_accuracy

    net = ad.read_h5ad(result)
    m = count_accuracy(truth.varp["true_dag"], net.varp["gene_dag"])
    run = dict(net.uns["gene_dag"]["run"])
    figures = {
        "command": " ".join(sys.argv),
        "genes": args.genes,
        "regulators": 0 if args.no_prior else args.regulators,
        "cells": args.cells,
        "graph": args.graph,
        "device": run.get("device"),
        "wall_s": round(wall, 2),
        "solver_wall_s": round(float(run["wall_time_s"]), 2),
        "peak_rss_gib": round(rss_kb / 2**20, 3),
        "shd": int(m["shd"]),
        "tpr": round(float(m["tpr"]), 4),
        "fdr": round(float(m["fdr"]), 4),
        "n_true": int(m["n_true"]),
        "n_predicted": int(m["n_predicted"]),
        "converged": bool(run["converged"]),
        **{k: run[k] for k in sorted(run) if k.startswith(("screen", "time_")) or k.endswith("_iterations")},
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        figures["gpu"] = torch.cuda.get_device_name(0)
    out = Path(args.out) if args.out else work / f"scale_{tag}_{'dense' if args.no_prior else 'prior'}.json"
    text = json.dumps(figures, indent=2, default=_plain)
    out.write_text(text)
    print(text)


def _plain(value):
    """JSON for the numpy values ``uns`` gives back (arrays, numpy scalars)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


if __name__ == "__main__":
    main()
