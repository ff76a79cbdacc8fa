"""gene-dag: causal gene regulatory networks (NOTEARS-family DAGs) from expression data."""

from gene_dag.solver.api import FitResult, fit

__all__ = ["FitResult", "fit"]
__version__ = "0.1.0"
