"""Rule projections: per-run energy and cost, projection inputs and the traffic sweep."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.analysis.constants import projection_settings
from scalezero.analysis.projections import write_projections
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)
    settings = projection_settings({"constants": snakemake.params.constants,
                                    "projections": snakemake.params.projections})
    written = write_projections(
        Path(snakemake.input.summary),
        Path(snakemake.input.energy),
        [Path(p).parent for p in snakemake.input.run_json],
        settings,
        {key: Path(snakemake.output[key])
         for key in ("sweep", "model", "runs", "phases", "constants")},
    )
    for path in written.values():
        print(path)
