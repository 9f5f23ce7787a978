"""Rule validate_simulation: every run simulated on a profile fitted from the others."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd

from scalezero.simulate.validate import validate_workload, write_validation
from scalezero.system.workflow_io import logged
from scalezero.workload import read_history

with logged(snakemake.log[0]):
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)
    table = validate_workload(
        [Path(p).parent for p in snakemake.input.run_json],
        snakemake.wildcards.workload,
        summary=pd.read_csv(snakemake.input.summary),
        gateway=snakemake.params.gateway,
        history_s=read_history(Path(snakemake.input.history)),
    )
    print(write_validation(table, Path(snakemake.output.validation)))
