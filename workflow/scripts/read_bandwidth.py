"""Rule read_bandwidth: how fast this host reads one model file."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.measure.sweep import measure_read_bandwidth
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    result = measure_read_bandwidth(Path(snakemake.input.model))
    print(json.dumps(result, indent=2))
    Path(snakemake.output.bandwidth).write_text(json.dumps(result, indent=2) + "\n")
