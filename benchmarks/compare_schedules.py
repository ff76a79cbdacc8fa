"""Which constrained schedule and inner method reach the best SHD fastest (on the current code).

Runs gene_dag's solver with every combination of schedule (`path`: DAGMA's central path;
`al`: NOTEARS' augmented Lagrangian), inner method (`owlqn`: OWL-QN in torch, the
default; `lbfgs`: scipy's L-BFGS-B on the split variables; `prox`: accelerated proximal
gradient with backtracking) and acyclicity function, every other setting at its default
(200 inner iterations per stage or outer step, support refit, edge-reversal refinement), on ER2 graphs, raw data, n = 1000, same seeds, one thread. Each run is capped
by the solver's own --max-time, so slow combinations show as not converged.

    python benchmarks/compare_schedules.py --d 20 50 --seeds 0 1 2 --max-time 120
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--graph", default="er")
    ap.add_argument("--max-time", type=float, default=120.0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "schedules.json"))
    args = ap.parse_args()

    import torch
    from threadpoolctl import threadpool_limits

    from gene_dag.metrics import count_accuracy
    from gene_dag.prior import build_mask
    from gene_dag.simulate import simulate_graph, simulate_sem, simulate_weights
    from gene_dag.solver import SolverSettings, solve

    torch.set_num_threads(1)
    threadpool_limits(1)
    combos = [
        ("path", "owlqn", "logdet"),
        ("path", "lbfgs", "logdet"),
        ("path", "prox", "logdet"),
        ("path", "owlqn", "expm"),
        ("al", "owlqn", "expm"),
        ("al", "lbfgs", "expm"),
        ("al", "lbfgs", "logdet"),
        ("al", "prox", "logdet"),
    ]
    rows = []
    for d, seed in itertools.product(args.d, args.seeds):
        B, _ = simulate_graph(d, args.graph, edges_per_node=2.0, seed=seed)
        W = simulate_weights(B, seed=seed)
        X = simulate_sem(W, 1000, seed=seed).astype(np.float64)
        Xc = X - X.mean(0)
        C = Xc.T @ Xc / len(X)
        mask = build_mask([f"g{i}" for i in range(d)])
        for schedule, inner, acyclicity in combos:
            settings = SolverSettings(
                schedule=schedule, inner=inner, acyclicity=acyclicity, device="cpu", max_time=args.max_time
            )
            t = time.perf_counter()
            res = solve(C, np.diag(C), mask, settings)
            wall = time.perf_counter() - t
            m = count_accuracy(B, res.W)
            row = {
                "d": d,
                "seed": seed,
                "schedule": schedule,
                "inner": inner,
                "acyclicity": acyclicity,
                "shd": int(m["shd"]),
                "tpr": float(m["tpr"]),
                "fdr": float(m["fdr"]),
                "time_s": round(wall, 2),
                "converged": bool(res.info["converged"]),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print("\n| d | schedule | inner | h | mean SHD | mean time (s) | converged |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for d in args.d:
        for combo in combos:
            sel = [r for r in rows if r["d"] == d and (r["schedule"], r["inner"], r["acyclicity"]) == combo]
            print(
                f"| {d} | {combo[0]} | {combo[1]} | {combo[2]} | {np.mean([r['shd'] for r in sel]):.2f} | "
                f"{np.mean([r['time_s'] for r in sel]):.2f} | {sum(r['converged'] for r in sel)}/{len(sel)} |"
            )


if __name__ == "__main__":
    main()
