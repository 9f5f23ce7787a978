"""Rule sweep_figure: cold start against model size."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.report.figures import plot_size_sweep
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    plot_size_sweep(Path(snakemake.input.summary), Path(snakemake.output.figure))
