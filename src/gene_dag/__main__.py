"""``python -m gene_dag``: the ``gene-dag`` command line."""

import sys

from gene_dag.cli import main

sys.exit(main())
