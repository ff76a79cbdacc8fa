#!/usr/bin/env python
"""DAGMA on the data set of a bench_scale.py run, under a wall-clock limit.

Reads the simulated .h5ad that ``bench_scale.py`` wrote (its ``varp["true_dag"]`` is the
truth), runs ``DagmaLinear(loss_type="l2").fit(X, lambda1=0.02)`` in a child process (the
harness of ``compare_published.py``: thread pools pinned, the child's process group
killed at the limit) and writes a JSON record: status (``ok``, ``timeout``, ``error``),
time, peak RSS and, when it finished, SHD, TPR and FDR.

    python benchmarks/dagma_peer.py benchmarks/out/er2000_k1000_n2000_s3.h5ad \
        --time-limit 7200 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_published  # noqa: E402  (stdlib-only at import)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="a bench_scale.py data set (.h5ad with varp['true_dag'])")
    ap.add_argument("--time-limit", type=float, default=7200.0, help="seconds before DAGMA is stopped")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads for DAGMA")
    ap.add_argument("--lambda1", type=float, default=compare_published.DAGMA_LAMBDA1)
    ap.add_argument("--out", help="JSON file (default: next to the data, <name>_dagma.json)")
    args = ap.parse_args()

    import anndata as ad
    import numpy as np

    data = ad.read_h5ad(args.data)
    X = np.asarray(data.X, dtype=np.float64)
    status, W, res = compare_published.run_in_subprocess("dagma", X, args.lambda1, args.threads, args.time_limit)
    record = {
        "command": " ".join(sys.argv),
        "data": Path(args.data).name,
        "genes": data.n_vars,
        "cells": data.n_obs,
        "solver": "dagma",
        "lambda1": args.lambda1,
        "threads": args.threads,
        "time_limit_s": args.time_limit,
        "status": status,
        **{k: v for k, v in res.items() if k != "error"},
    }
    if status == "ok":
        # DagmaLinear.fit returns its thresholded estimate (w_threshold 0.3)
        record.update(compare_published.evaluate(data.varp["true_dag"], compare_published.to_csr(W)))
    elif status == "error":
        record["error"] = res.get("error", "")[-500:]
    out = Path(args.out) if args.out else Path(args.data).with_name(Path(args.data).stem + "_dagma.json")
    text = json.dumps(record, indent=2, default=str)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
