"""Rule sharing_simulate: the measured sharing runs against the shared-budget simulation."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.simulate.sharing_check import sharing_check, write_sharing_check
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    runs_dir = Path(snakemake.input.run_json[0]).parent.parent
    print(write_sharing_check(sharing_check(runs_dir), Path(snakemake.output.simulated)))
