"""Rule sweep_trace: evenly spaced requests for the size sweep."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.measure.sweep import write_sweep_trace
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    write_sweep_trace(Path(snakemake.output.trace), int(snakemake.params.requests),
                      float(snakemake.params.spacing_s), int(snakemake.params.max_tokens))
