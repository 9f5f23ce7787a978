"""Rule tiers_summary: the goal checks of the tier and engine benches."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.measure.tiers import write_summary
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    out = write_summary(Path(snakemake.input.tiers), Path(snakemake.input.engines),
                        Path(snakemake.input.bandwidth), Path(snakemake.output.summary))
    print(out.read_text(encoding="utf-8"))
