"""Rule sharing_figure: memory held by the instances over time, per sharing variant."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.report.sharing import plot_sharing_memory
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    plot_sharing_memory([Path(p).parent for p in snakemake.input.run_json],
                        Path(snakemake.output.figure))
