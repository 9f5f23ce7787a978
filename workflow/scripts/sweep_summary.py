"""Rule sweep_summary: cold-start phases per model beside the read-bandwidth bounds."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.analysis.sweep import summarize_sweep, write_sweep_csv
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    rows = summarize_sweep(
        snakemake.params.models,
        [Path(p).parent for p in snakemake.input.run_json],
        [Path(p) for p in snakemake.input.bandwidth],
        [Path(p) for p in snakemake.input.models],
        [Path(p) for p in snakemake.input.page_cache],
    )
    write_sweep_csv(rows, Path(snakemake.output.summary))
    for row in rows:
        print(row)
