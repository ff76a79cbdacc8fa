"""gene-dag: causal gene regulatory networks (NOTEARS-family DAGs) from expression data.

``fit`` / ``FitResult`` (the solver), ``tl`` (tools: learn a network into an AnnData,
effects of interventions, knockouts, regulator ranking) and ``pl`` (plots) are imported
on first use, so that ``import gene_dag`` and ``gene-dag --help`` load no torch,
scanpy or matplotlib.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gene_dag import pl, tl
    from gene_dag.solver.api import FitResult, fit

__all__ = ["FitResult", "fit", "pl", "tl"]
__version__ = "0.1.0"

_LAZY_MODULES = ("tl", "pl")
_LAZY_NAMES = {"fit": "gene_dag.solver.api", "FitResult": "gene_dag.solver.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    if name in _LAZY_MODULES or (not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}")):
        return importlib.import_module(f"{__name__}.{name}")  # any submodule: gene_dag.io, gene_dag.solver, ...
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
