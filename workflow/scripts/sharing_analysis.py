"""Rule sharing_analysis: the sharing variants side by side, and per deployment."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.analysis.constants import projection_settings
from scalezero.analysis.sharing import analyze_sharing
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    written = analyze_sharing(
        [Path(p).parent for p in snakemake.input.run_json],
        Path(snakemake.input.trace),
        Path(snakemake.output.summary),
        Path(snakemake.output.per_deployment),
        projection_settings({"constants": snakemake.params.constants or None,
                             "projections": snakemake.params.projections or None}),
    )
    for path in written.values():
        print(path)
