"""Solve time against the number of regulators k: does it grow as the k³ and k²·d costs say?

For each k, a ``tf`` problem (d genes, k regulators that may all regulate each other, so the
cycle core is all k regulators and is solved whole) is simulated and solved with the
regulator list. The time of ``gene_dag.fit`` is printed next to k³ and k²·d, and next to
the time divided by the fitted cost model a·k³ + b·k²·d: a step that the model does not
explain shows up as a ratio far from 1.

``--load`` runs a second, single-threaded CPU-bound process (a matrix-product loop) for
the whole sweep, as another job on the other core of a 2-core machine would.

Usage (from the repository root)::

    python benchmarks/k_sweep.py --out benchmarks/out/k_sweep.json
    python benchmarks/k_sweep.py --load --out benchmarks/out/k_sweep_loaded.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BUSY_LOOP = (
    "import numpy as np\n"
    "a = np.random.default_rng(0).random((400, 400))\n"
    "while True:\n"
    "    a = a @ a; a /= np.abs(a).max()\n"
)


@contextlib.contextmanager
def second_job(enabled: bool):
    """A single-threaded CPU-bound process for the duration of the block."""
    if not enabled:
        yield
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], env=env)
    try:
        time.sleep(1.0)
        yield
    finally:
        proc.kill()
        proc.wait()


def run(ks: list[int], d: int, n: int, seed: int) -> list[dict]:
    import torch

    from gene_dag.metrics import count_accuracy
    from gene_dag.simulate import simulate_adata
    from gene_dag.solver.api import fit

    warm = simulate_adata(d=20, n=200, graph_type="tf", n_regulators=4, seed=0)
    fit(warm, device="cpu")
    rows = []
    for k in ks:
        adata = simulate_adata(d=d, n=n, graph_type="tf", n_regulators=k, seed=seed)
        regulators = list(adata.var_names[adata.var["is_regulator"].to_numpy()])
        start = time.perf_counter()
        result = fit(adata, regulators=regulators, device="cpu", return_result=True)
        elapsed = time.perf_counter() - start
        acc = count_accuracy(adata.varp["true_dag"], result.adjacency)
        rows.append(
            {
                "k": k,
                "d": d,
                "n": n,
                "time_s": elapsed,
                "shd": acc["shd"],
                "n_core": result.info["run"]["n_core"],
                "torch_threads": torch.get_num_threads(),
            }
        )
        print(f"k={k:4d}  {elapsed:7.2f} s  SHD {acc['shd']}", flush=True)
    return rows


def cost_model(rows: list[dict]) -> None:
    """Least-squares fit of time = a k³ + b k² d, and each run's ratio to it."""
    k = np.array([r["k"] for r in rows], dtype=float)
    d = np.array([r["d"] for r in rows], dtype=float)
    t = np.array([r["time_s"] for r in rows])
    X = np.stack([k**3, k**2 * d], axis=1)
    coef, *_ = np.linalg.lstsq(X / t[:, None], np.ones_like(t), rcond=None)  # relative errors
    model = X @ coef
    for r, m in zip(rows, model, strict=True):
        r["model_s"] = float(m)
        r["ratio"] = float(r["time_s"] / m)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k-min", type=int, default=100)
    parser.add_argument("--k-max", type=int, default=300)
    parser.add_argument("--k-step", type=int, default=10)
    parser.add_argument("--genes", type=int, default=400)
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load", action="store_true", help="run a second CPU-bound job meanwhile")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/k_sweep.json"))
    args = parser.parse_args()
    ks = list(range(args.k_min, args.k_max + 1, args.k_step))
    with second_job(args.load):
        rows = run(ks, args.genes, args.cells, args.seed)
    cost_model(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"load": args.load, "rows": rows}, indent=2))
    print(
        f"\n| k | time (s) | model a·k³ + b·k²·d (s) | time / model | SHD |  "
        f"({'with' if args.load else 'without'} a second job)\n| --- | --- | --- | --- | --- |"
    )
    for r in rows:
        print(f"| {r['k']} | {r['time_s']:.2f} | {r['model_s']:.2f} | {r['ratio']:.2f} | {r['shd']} |")


if __name__ == "__main__":
    main()
