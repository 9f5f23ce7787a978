"""Rule platform_comparison: the platforms side by side (results/summary/platforms.csv)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.analysis.platforms import compare_platforms
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    platforms = dict(snakemake.params.platforms)
    summaries = dict(zip(platforms, (Path(p) for p in snakemake.input.summaries), strict=True))
    table = compare_platforms(summaries, platforms)
    out = Path(snakemake.output.comparison)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(out)
