"""Do two versions of the solver give the same edges? Record them on fixed cases, then compare.

``record`` solves every case with ``gene_dag.fit`` (default settings, CPU) and writes the
edges (source, target, weight) of each to one JSON file; ``compare`` reads two such files
and reports, per case, whether the edge sets are identical and the largest weight change.

Cases: ER2 and SF2 at d = 20, 50, 100, 200 (n = 1,000, raw scale, seeds 0-2, the data of
``compare_published.py``); with ``--tf`` also the tf case d = 10,000, k = 1,000, n = 5,000
(several minutes); with ``--workflow`` also the default Snakemake workflow, every group's
``edges.tsv``.

Usage (from the repository root)::

    python benchmarks/compare_edges.py record --out benchmarks/out/edges_before.json --tf --workflow
    # ... change the code ...
    python benchmarks/compare_edges.py record --out benchmarks/out/edges_after.json --tf --workflow
    python benchmarks/compare_edges.py compare benchmarks/out/edges_before.json benchmarks/out/edges_after.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZES = (20, 50, 100, 200)
GRAPHS = ("er", "sf")
SEEDS = (0, 1, 2)


def _edge_list(W, genes) -> list[list]:
    import scipy.sparse as sp

    coo = sp.coo_matrix(W)
    order = np.lexsort((coo.col, coo.row))
    return [[str(genes[coo.row[i]]), str(genes[coo.col[i]]), float(coo.data[i])] for i in order if coo.data[i] != 0]


def _sem_cases(sizes=SIZES) -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from compare_published import simulate

    from gene_dag.solver.api import fit

    out = {}
    for graph in GRAPHS:
        for d in sizes:
            for seed in SEEDS:
                X = simulate(graph, d, 1000, seed)[2]
                start = time.perf_counter()
                W = fit(X, device="cpu")
                name = f"{graph}{d}_seed{seed}"
                out[name] = {"edges": _edge_list(W, [f"G{i}" for i in range(d)]), "time_s": time.perf_counter() - start}
                print(f"{name}: {len(out[name]['edges'])} edges, {out[name]['time_s']:.2f} s", flush=True)
    return out


def _tf_case() -> dict:
    from gene_dag.simulate import simulate_adata
    from gene_dag.solver.api import fit

    adata = simulate_adata(d=10000, n=5000, graph_type="tf", n_regulators=1000, seed=0)
    regulators = list(adata.var_names[adata.var["is_regulator"].to_numpy()])
    start = time.perf_counter()
    W = fit(adata, regulators=regulators, device="cpu")
    elapsed = time.perf_counter() - start
    print(f"tf10000: {W.nnz} edges, {elapsed:.1f} s", flush=True)
    return {"tf10000_k1000": {"edges": _edge_list(W, adata.var_names), "time_s": elapsed}}


def _workflow_case() -> dict:
    import pandas as pd

    work = Path(tempfile.mkdtemp(prefix="gene_dag_wf_"))
    try:
        for name in ("config",):
            shutil.copytree(REPO / name, work / name)
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        start = time.perf_counter()
        subprocess.run(
            [
                str(Path(sys.executable).parent / "snakemake"),
                "-s",
                str(REPO / "Snakefile"),
                "--directory",
                str(work),
                "--cores",
                "2",
                "-q",
            ],
            cwd=work,
            env=env,
            check=True,
        )
        elapsed = time.perf_counter() - start
        out = {}
        for path in sorted(work.glob("results/*/groups/*/edges.tsv")):
            table = pd.read_csv(path, sep="\t").sort_values(["source", "target"])
            name = f"workflow/{path.parts[-4]}/{path.parts[-2]}"
            out[name] = {"edges": table[["source", "target", "weight"]].values.tolist(), "time_s": elapsed}
            print(f"{name}: {len(table)} edges", flush=True)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def record(args: argparse.Namespace) -> None:
    cases = _sem_cases(tuple(args.sizes))
    if args.tf:
        cases.update(_tf_case())
    if args.workflow:
        cases.update(_workflow_case())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(cases))
    print(f"wrote {len(cases)} cases to {args.out}")


def compare(args: argparse.Namespace) -> int:
    before = json.loads(args.before.read_text())
    after = json.loads(args.after.read_text())
    differ = 0
    print(
        "| case | edges before | edges after | same edge set | max weight change | time before (s) | time after (s) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            print(
                f"| {name} | {'-' if name not in before else len(before[name]['edges'])} | "
                f"{'-' if name not in after else len(after[name]['edges'])} | only in one file | | | |"
            )
            differ += 1
            continue
        a = {(s, t): w for s, t, w in before[name]["edges"]}
        b = {(s, t): w for s, t, w in after[name]["edges"]}
        same = a.keys() == b.keys()
        change = max((abs(a[e] - b[e]) for e in a.keys() & b.keys()), default=0.0)
        differ += not same
        detail = "yes" if same else f"no ({len(a.keys() - b.keys())} lost, {len(b.keys() - a.keys())} new)"
        print(
            f"| {name} | {len(a)} | {len(b)} | {detail} | {change:.2e} | {before[name]['time_s']:.2f} | "
            f"{after[name]['time_s']:.2f} |"
        )
    print(f"\n{differ} case(s) differ")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="solve every case and write its edges")
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument("--tf", action="store_true", help="also the tf d = 10,000, k = 1,000 case")
    rec.add_argument("--workflow", action="store_true", help="also the default workflow")
    rec.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="ER/SF sizes d (default 20 50 100 200)")
    cmp = sub.add_parser("compare", help="compare two recordings")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        record(args)
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
