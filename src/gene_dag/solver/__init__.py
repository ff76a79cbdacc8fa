"""The NOTEARS-family solver on sufficient statistics (see core.py for the stages)."""

from gene_dag.solver.core import SolveResult, SolverSettings, resolve_device, solve

__all__ = ["SolveResult", "SolverSettings", "resolve_device", "solve"]
