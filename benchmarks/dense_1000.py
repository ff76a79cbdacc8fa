#!/usr/bin/env python
"""One dense run at d = 1000 genes (no prior: every gene may regulate every other).

ER2 graph (2 edges per node), weights ±[0.5, 2], Gaussian noise sd 1, n = 1000 cells,
raw data, simulated with ``gene_dag.simulate`` exactly as in ``compare_published.py``
(this script is that harness with other defaults, so the JSON / markdown have the same
format and resume the same way):

* gene-dag: ``gene_dag.fit(X)`` with its defaults (no regulators, no prior: dense);
  not time-capped.
* DAGMA: ``DagmaLinear(loss_type="l2").fit(X, lambda1=0.02)`` in a child process,
  killed after ``--time-limit`` seconds (default 3600) and then recorded as ``timeout``.
* NOTEARS is left out by default: at d = 1000 it optimises 2 million variables with a
  1000 x 1000 matrix exponential per function evaluation, hours to days on 2 cores. Add
  ``--solvers gene-dag dagma notears`` to try it anyway under the same time limit.

Usage::

    .venv/bin/python benchmarks/dense_1000.py                 # d=1000, n=1000, seed 0
    .venv/bin/python benchmarks/dense_1000.py --time-limit 7200 --threads 2

Every option of ``compare_published.py`` is accepted (``--d``, ``--n``, ``--seeds``,
``--graphs``, ``--solvers``, ``--threads``, ``--device``, ``--fresh``, ...); only the
defaults differ.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_published  # noqa: E402  (stdlib-only at import: thread settings still apply)

DEFAULTS = {
    "graphs": ["er"],
    "d": [1000],
    "n": 1000,
    "seeds": [0],
    "solvers": ["gene-dag", "dagma"],
    "time_limit": 3600.0,
    "out": os.path.join("benchmarks", "out", "dense_1000.json"),
    "markdown": os.path.join("benchmarks", "out", "dense_1000.md"),
}

if __name__ == "__main__":
    sys.exit(
        compare_published.main(
            defaults=DEFAULTS,
            description="One dense run (no prior) at d=1000 ER2, n=1000: gene-dag, and DAGMA "
            "under a time limit. Same options as compare_published.py; see benchmarks/README.md.",
        )
    )
