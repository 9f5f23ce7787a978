"""Rule aggregate: summarize every run of one workload."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.analysis.aggregate import aggregate_workload
from scalezero.analysis.metrics import DEFAULT_SLO_SETS
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    written = aggregate_workload(
        [Path(p).parent for p in snakemake.input.run_json],
        Path(snakemake.output.summary).parent,
        snakemake.wildcards.workload,
        snakemake.params.slo_sets or DEFAULT_SLO_SETS,
    )
    for path in written.values():
        print(path)
