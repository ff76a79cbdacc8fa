"""rule report_index: one row per figure or table of a dataset (group, what, path)."""

from pathlib import Path

import pandas as pd

rows = []
for path in map(Path, snakemake.input):  # noqa: F821
    group = path.parent.parent.name
    rows.append({"group": group, "what": path.stem, "path": path.as_posix()})
table = pd.DataFrame(rows, columns=["group", "what", "path"])
table.to_csv(snakemake.output[0], sep="\t", index=False)  # noqa: F821
Path(snakemake.log[0]).write_text(f"{len(table)} figures and tables of {table['group'].nunique()} group(s)\n")  # noqa: F821
