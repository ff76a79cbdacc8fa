"""The NOTEARS-family solver on sufficient statistics (driver.py runs the stages; docs/design.md).

Names are imported on first use, so that importing a light module of the package (the
settings, the score) does not load every stage.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gene_dag.solver.driver import SolveResult, solve
    from gene_dag.solver.settings import SolverSettings, Tuning, resolve_device

__all__ = ["SolveResult", "SolverSettings", "Tuning", "resolve_device", "solve"]
_HOMES = {
    "SolveResult": "driver",
    "solve": "driver",
    "SolverSettings": "settings",
    "Tuning": "settings",
    "resolve_device": "settings",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
