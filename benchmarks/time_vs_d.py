#!/usr/bin/env python
"""Time against d, next to the cost of one dense lasso sweep at this CPU's GEMM rate.

Reads the JSON figures of ``bench_scale.py`` runs (any d, with or without a regulator
list), measures the float32 dense-GEMM rate of this machine with torch (a k × k by
k × 1,024 product, the shape of one block of the lasso's gradient, best of 3), and
prints a markdown table: for each run the time of every stage, the flops of one sweep of
the batched lasso over all d columns (one gradient A V - B: 2 k² d), the seconds that
sweep takes at the measured rate, and each stage's time in such sweeps. A stage that
costs few sweeps runs near the hardware's limit for the work it must do; one that costs
many does many sweeps (iterations) or runs below the GEMM rate (small operations).

    python benchmarks/time_vs_d.py benchmarks/out/scale_er1000*.json benchmarks/out/scale_er2000*.json \
        --threads 2 --out benchmarks/out/time_vs_d.md
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

STAGES = [
    ("screen_time_s", "screen"),
    ("time_lambda_path_s", "λ path"),
    ("time_earlier_solves_s", "first solve"),
    ("time_lasso_s", "lasso"),
    ("time_core_s", "core"),
    ("time_refits_s", "refits"),
    ("time_completion_s", "completion"),
]


def gemm_rate(k: int, threads: int, cols: int = 1024, repeats: int = 3) -> float:
    """Return the best float32 flop rate of a k × k by k × cols product (flop/s)."""
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    A = torch.randn(k, k, generator=g)
    V = torch.randn(k, cols, generator=g)
    A @ V  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        A @ V
        best = min(best, time.perf_counter() - t)
    return 2.0 * k * k * cols / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("figures", nargs="+", help="bench_scale.py JSON files")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the GEMM measurement")
    ap.add_argument("--out", help="also write the table here (markdown)")
    args = ap.parse_args()

    runs = sorted((json.loads(Path(p).read_text()) | {"file": Path(p).name} for p in args.figures), key=_key)
    rates: dict[int, float] = {}
    lines = [
        f"GEMM rate measured with {args.threads} torch thread(s), load average before: {os.getloadavg()[0]:.2f}",
        "",
        "| d | k | data | wall s | SHD | "
        + " | ".join(name + " s" for _, name in STAGES)
        + " | one sweep GFLOP | GEMM GFLOP/s | one sweep s | stages in sweeps |",
        "| ---: | ---: | --- | ---: | ---: | " + " | ".join("---:" for _ in STAGES) + " | ---: | ---: | ---: | --- |",
    ]
    for r in runs:
        d = int(r["genes"])
        k = int(r["regulators"]) or d
        if k not in rates:
            rates[k] = gemm_rate(k, args.threads)
        flops = 2.0 * k * k * d
        sweep_s = flops / rates[k]
        stages = [float(r[key]) if key in r else None for key, _ in STAGES]
        in_sweeps = ", ".join(f"{name} {t / sweep_s:.1f}" for (_, name), t in zip(STAGES, stages, strict=True) if t)
        lines.append(
            f"| {d:,} | {k:,} | {_data(r)} | {r['wall_s']} | {r['shd']} | "
            + " | ".join("–" if t is None else f"{t:.2f}" for t in stages)
            + f" | {flops / 1e9:.1f} | {rates[k] / 1e9:.1f} | {sweep_s:.2f} | {in_sweeps} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


def _key(r: dict) -> tuple:
    return (int(r["regulators"]) > 0, int(r["genes"]), r["file"])


def _data(r: dict) -> str:
    raw = "no-standardize" in r.get("command", "")
    return f"{r['graph']}, {'raw' if raw else 'standardised'}, {'prior' if int(r['regulators']) else 'no prior'}"


if __name__ == "__main__":
    main()
