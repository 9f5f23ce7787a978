"""Rule sharing_run: one measured run of a sharing variant (its deployments file)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.measure.runner import run_from_settings
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    run_from_settings(
        settings=snakemake.params.settings,
        model_path=Path(snakemake.input.models[0]),
        trace_path=Path(snakemake.input.trace),
        history_path=Path(snakemake.input.history),
        deployments_path=Path(snakemake.input.deployments),
        out_dir=Path(snakemake.output.run_json).parent,
        keep_failed_in=Path(snakemake.params.failed_dir),
    )
