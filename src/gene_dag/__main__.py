import sys

from gene_dag.cli import main

sys.exit(main())
