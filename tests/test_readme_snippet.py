"""The README's copy-paste snippet that loads a result in scanpy runs as written.

The snippet is the first ```python block between ``<!-- snippet:load-network -->`` and
``<!-- /snippet:load-network -->`` in README.md. It reads a network at the path the
default workflow writes; the test puts a small exported network at that path in a
temporary directory and runs the snippet there, unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gene_dag.export import export_network

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- snippet:load-network -->", "<!-- /snippet:load-network -->"


def readme_snippet(text: str) -> str:
    # Missing markers fail the test: a skip would let the snippet vanish from the README unnoticed.
    assert BEGIN in text and END in text, f"README.md lacks the {BEGIN} ... {END} markers around the snippet"
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no ```python block between the {BEGIN} markers"
    return match.group(1)


def test_a_readme_without_the_markers_fails():
    with pytest.raises(AssertionError, match="README.md lacks the <!-- snippet:load-network -->"):
        readme_snippet("# gene-dag\n\n```python\nimport gene_dag\n```\n")
    with pytest.raises(AssertionError, match="no ```python block"):
        readme_snippet(f"{BEGIN}\n```bash\nls\n```\n{END}\n")


def test_readme_snippet_loads_a_network(tmp_path, monkeypatch, capsys):
    code = readme_snippet((REPO / "README.md").read_text(encoding="utf-8"))
    paths = re.findall(r"""read_h5ad\(\s*["']([^"']+\.h5ad)["']""", code)
    assert paths, "the snippet reads no network.h5ad"
    genes = ["SPI1", "IRF8", "LYZ", "CD14", "FCN1", "S100A8"]
    W = np.zeros((6, 6), dtype=np.float32)
    W[0, 2], W[0, 3], W[1, 4], W[0, 5], W[1, 2] = 0.9, 0.6, -0.7, 0.3, 0.2
    adata = anndata.AnnData(
        X=np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32), var=pd.DataFrame(index=genes)
    )
    adata.varp["gene_dag"] = sp.csr_matrix(W)
    adata.uns["gene_dag"] = {"parameters": {"lambda1": 0.05}, "run": {"converged": True, "n_edges": 5}}
    monkeypatch.chdir(tmp_path)
    for path in paths:
        export_network(adata.copy(), h5ad=path, extra={"dataset": "pbmc68k", "group": "CD14+ Monocyte"})

    namespace: dict = {}
    exec(compile(code, "README.md snippet", "exec"), namespace)
    out = capsys.readouterr().out
    assert "SPI1" in out and "LYZ" in out  # the strongest edge, SPI1 -> LYZ, is shown
    assert any(
        isinstance(v, pd.DataFrame) and {"source", "target", "weight"} <= set(v.columns) for v in namespace.values()
    )
